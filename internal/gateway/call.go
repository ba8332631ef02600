package gateway

import (
	"bytes"
	"encoding/json"
	"fmt"
	"reflect"
	"slices"
	"strings"
	"sync"

	"github.com/tiktoken-go/tokenizer"

	"github.com/tenantgate/tenantgate/internal/errs"
	"github.com/tenantgate/tenantgate/internal/gateway/wire"
)

// completionRequest is OpenAI's legacy completions request.
type completionRequest struct {
	Model         string              `json:"model"`
	Prompt        json.RawMessage     `json:"prompt"`
	MaxTokens     *int64              `json:"max_tokens,omitempty"`
	Temperature   *float64            `json:"temperature,omitempty"`
	TopP          *float64            `json:"top_p,omitempty"`
	N             *int                `json:"n,omitempty"`
	BestOf        *int                `json:"best_of,omitempty"`
	Stop          json.RawMessage     `json:"stop,omitempty"`
	Stream        bool                `json:"stream,omitempty"`
	StreamOptions *wire.StreamOptions `json:"stream_options,omitempty"`
	User          string              `json:"user,omitempty"`
}

func badBody(field, problem string) error {
	return errs.Invalid("the request has invalid fields", map[string]string{field: problem})
}

// Ranges of the numbers a /v1 body may carry.
const (
	// MaxOutputTokens bounds max_tokens and max_completion_tokens.
	MaxOutputTokens = 1_000_000
	// MaxChoices bounds n and best_of.
	MaxChoices = 128
)

// bodyType is the Go type a body of op is decoded into.
var bodyType = map[wire.Op]reflect.Type{
	wire.OpChat:       reflect.TypeFor[wire.ChatRequest](),
	wire.OpCompletion: reflect.TypeFor[completionRequest](),
	wire.OpEmbedding:  reflect.TypeFor[wire.EmbeddingRequest](),
}

// caseVariant finds a key of the JSON value b (valid JSON, decoded into Go
// type t) that matches one of t's fields only when case is ignored: Go's
// decoder reads "MAX_TOKENS" (or "max_\u212Aokens", with the Kelvin sign) as
// max_tokens, an upstream does not, so the gateway would price one request
// and forward another. It walks into every object and array the decoder
// fills from b (messages, tool calls, stream_options, …) and returns the
// path of the first such key and the field's name. It scans the bytes in
// place: a call allocates nothing here unless a key is unknown.
func caseVariant(b []byte, t reflect.Type) (at, field string) {
	var hit *jsonPath
	hit, field = walkCase(b, t, nil)
	if hit == nil {
		return "", ""
	}
	return hit.String(), field
}

// jsonPath is where a key was found, built only when one is.
type jsonPath struct {
	parent *jsonPath
	key    []byte // the raw key (still escaped), or nil for an array index
	idx    int
}

func (p *jsonPath) String() string {
	if p == nil {
		return ""
	}
	s := p.parent.String()
	if p.key == nil {
		return fmt.Sprintf("%s[%d]", s, p.idx)
	}
	k := unescapeKey(p.key, bytes.IndexByte(p.key, '\\') >= 0)
	if s == "" {
		return k
	}
	return s + "." + k
}

func walkCase(b []byte, t reflect.Type, path *jsonPath) (*jsonPath, string) {
	for t.Kind() == reflect.Pointer {
		t = t.Elem()
	}
	i := skipSpace(b, 0)
	if i >= len(b) {
		return nil, ""
	}
	switch {
	case t.Kind() == reflect.Struct && b[i] == '{':
		fields := jsonFields(t)
		for i = skipSpace(b, i+1); i < len(b) && b[i] == '"'; {
			end, escaped := stringEnd(b, i)
			raw := b[i+1 : end-1]
			i = skipSpace(b, skipSpace(b, end)+1) // past the colon
			vend := valueEnd(b, i)
			ft, ok := fields.types[string(raw)] // no allocation: a map index
			key := ""
			if !ok {
				key = unescapeKey(raw, escaped)
				ft, ok = fields.types[key]
			}
			if ok {
				if hasObjects(ft) {
					if hit, f := walkCase(b[i:vend], ft, &jsonPath{parent: path, key: raw}); hit != nil {
						return hit, f
					}
				}
			} else {
				for _, name := range fields.names {
					if strings.EqualFold(key, name) {
						return &jsonPath{parent: path, key: raw}, name
					}
				}
			}
			if i = skipSpace(b, vend); i < len(b) && b[i] == ',' {
				i = skipSpace(b, i+1)
			}
		}
	case t.Kind() == reflect.Slice && t != rawMessageType && b[i] == '[' && hasObjects(t.Elem()):
		for n, i := 0, skipSpace(b, i+1); i < len(b) && b[i] != ']'; n++ {
			vend := valueEnd(b, i)
			if hit, f := walkCase(b[i:vend], t.Elem(), &jsonPath{parent: path, idx: n}); hit != nil {
				return hit, f
			}
			if i = skipSpace(b, vend); i < len(b) && b[i] == ',' {
				i = skipSpace(b, i+1)
			}
		}
	}
	return nil, ""
}

// unescapeKey is a raw object key as the decoder reads it.
func unescapeKey(raw []byte, escaped bool) string {
	if !escaped {
		return string(raw)
	}
	var k string
	if json.Unmarshal(append(append([]byte{'"'}, raw...), '"'), &k) != nil {
		return string(raw)
	}
	return k
}

func skipSpace(b []byte, i int) int {
	for i < len(b) && (b[i] == ' ' || b[i] == '\t' || b[i] == '\n' || b[i] == '\r') {
		i++
	}
	return i
}

// stringEnd returns the index after the string that starts at b[i] (a
// quote), and whether it holds an escape.
func stringEnd(b []byte, i int) (int, bool) {
	escaped := false
	for j := i + 1; j < len(b); j++ {
		switch b[j] {
		case '\\':
			escaped = true
			j++
		case '"':
			return j + 1, escaped
		}
	}
	return len(b), escaped
}

// valueEnd returns the index after the JSON value that starts at b[i].
func valueEnd(b []byte, i int) int {
	switch b[i] {
	case '"':
		end, _ := stringEnd(b, i)
		return end
	case '{', '[':
		depth := 0
		for j := i; j < len(b); j++ {
			switch b[j] {
			case '"':
				end, _ := stringEnd(b, j)
				j = end - 1
			case '{', '[':
				depth++
			case '}', ']':
				if depth--; depth == 0 {
					return j + 1
				}
			}
		}
		return len(b)
	}
	j := i
	for j < len(b) && b[j] != ',' && b[j] != '}' && b[j] != ']' && b[j] != ' ' && b[j] != '\t' && b[j] != '\n' && b[j] != '\r' {
		j++
	}
	return j
}

var (
	rawMessageType = reflect.TypeFor[json.RawMessage]()
	fieldsCache    sync.Map // reflect.Type → *structFields
)

// hasObjects reports whether values of t are decoded from JSON objects
// (structs, or slices and pointers of them), so caseVariant must look inside.
func hasObjects(t reflect.Type) bool {
	for t.Kind() == reflect.Pointer || (t.Kind() == reflect.Slice && t != rawMessageType) {
		t = t.Elem()
	}
	return t.Kind() == reflect.Struct
}

type structFields struct {
	types map[string]reflect.Type // JSON name → field type
	names []string
}

// jsonFields lists a struct's JSON field names and their types.
func jsonFields(t reflect.Type) *structFields {
	if f, ok := fieldsCache.Load(t); ok {
		return f.(*structFields)
	}
	out := &structFields{types: map[string]reflect.Type{}}
	for f := range t.Fields() {
		name, _, _ := strings.Cut(f.Tag.Get("json"), ",")
		switch {
		case name == "-" || !f.IsExported():
			continue
		case name == "":
			name = f.Name
		}
		out.types[name] = f.Type
		out.names = append(out.names, name)
	}
	slices.Sort(out.names)
	fieldsCache.Store(t, out)
	return out
}

// checkCount bounds an optional count from the body to 1..hi.
func checkCount(field string, v *int64, hi int64) error {
	if v != nil && (*v < 1 || *v > hi) {
		return badBody(field, fmt.Sprintf("must be from 1 to %d", hi))
	}
	return nil
}

// parseCall reads and checks the client's body for op.
func parseCall(op wire.Op, body []byte) (call, error) {
	cl := call{Call: wire.Call{Op: op, Body: body}, choices: 1}
	if !json.Valid(body) || len(bytes.TrimSpace(body)) == 0 || bytes.TrimSpace(body)[0] != '{' {
		return cl, errs.Invalid("the body must be a JSON object", nil)
	}
	// What is priced must be what leaves: a key only a case-insensitive
	// reading maps onto a field would be priced here and ignored upstream.
	if at, field := caseVariant(body, bodyType[op]); at != "" {
		return cl, badBody(at, "the field is spelt "+field+" (names are case-sensitive)")
	}
	switch op {
	case wire.OpChat:
		var r wire.ChatRequest
		if err := json.Unmarshal(body, &r); err != nil {
			return cl, mismatch("the body does not match the chat completions request: ", err)
		}
		if len(r.Messages) == 0 {
			return cl, badBody("messages", "is required: at least one message")
		}
		for i, m := range r.Messages {
			switch m.Role {
			case "system", "developer", "user", "assistant", "tool", "function":
			default:
				return cl, badBody(fmt.Sprintf("messages[%d].role", i), "must be system, developer, user, assistant or tool")
			}
			if _, err := m.Parts(); err != nil {
				return cl, badBody(fmt.Sprintf("messages[%d].content", i), err.Error())
			}
		}
		for _, c := range []struct {
			field string
			v     *int64
		}{{"max_tokens", r.MaxTokens}, {"max_completion_tokens", r.MaxCompletionTokens}} {
			if err := checkCount(c.field, c.v, MaxOutputTokens); err != nil {
				return cl, err
			}
		}
		if err := checkCount("n", intPtr64(r.N), MaxChoices); err != nil {
			return cl, err
		}
		cl.Chat, cl.Model, cl.Stream = &r, r.Model, r.Stream
		cl.includeUsage = r.Stream && r.StreamOptions != nil && r.StreamOptions.IncludeUsage
		// Reserve for the larger of the two caps: upstreams differ in which one wins.
		cl.maxOut = max(deref(r.MaxTokens), deref(r.MaxCompletionTokens))
		if r.N != nil {
			cl.choices = *r.N
		}
	case wire.OpCompletion:
		var r completionRequest
		if err := json.Unmarshal(body, &r); err != nil {
			return cl, mismatch("the body does not match the completions request: ", err)
		}
		if len(r.Prompt) == 0 || string(r.Prompt) == "null" {
			return cl, badBody("prompt", "is required")
		}
		if err := checkCount("max_tokens", r.MaxTokens, MaxOutputTokens); err != nil {
			return cl, err
		}
		if err := checkCount("n", intPtr64(r.N), MaxChoices); err != nil {
			return cl, err
		}
		if err := checkCount("best_of", intPtr64(r.BestOf), MaxChoices); err != nil {
			return cl, err
		}
		cl.completion, cl.Model, cl.Stream = &r, r.Model, r.Stream
		if r.N != nil {
			cl.choices = *r.N
		}
		if r.BestOf != nil && *r.BestOf > cl.choices {
			cl.choices = *r.BestOf
		}
		cl.includeUsage = r.Stream && r.StreamOptions != nil && r.StreamOptions.IncludeUsage
		if r.MaxTokens != nil {
			cl.maxOut = *r.MaxTokens
		} else {
			// OpenAI's default for completions; sent upstream, since other
			// servers' defaults differ.
			cl.maxOut, cl.OutputCap = 16, 16
		}
		// For providers that speak only chat: the same call as one user message.
		// (A prompt array of several prompts has no chat form: cl.Chat stays nil.)
		var prompt string
		if json.Unmarshal(r.Prompt, &prompt) != nil {
			var one []string
			if json.Unmarshal(r.Prompt, &one) != nil || len(one) != 1 {
				break
			}
			prompt = one[0]
		}
		cl.Chat = &wire.ChatRequest{Model: r.Model, Messages: []wire.Message{{Role: "user", Content: wire.TextContent(prompt)}},
			MaxTokens: &cl.maxOut, Temperature: r.Temperature, TopP: r.TopP, N: r.N, Stop: r.Stop, Stream: r.Stream, StreamOptions: r.StreamOptions, User: r.User}
	case wire.OpEmbedding:
		var r wire.EmbeddingRequest
		if err := json.Unmarshal(body, &r); err != nil {
			return cl, mismatch("the body does not match the embeddings request: ", err)
		}
		if len(r.Input) == 0 || string(r.Input) == "null" {
			return cl, badBody("input", "is required: a string or an array of strings")
		}
		cl.Embedding, cl.Model = &r, r.Model
	}
	if cl.Model == "" {
		return cl, badBody("model", "is required")
	}
	if !ValidModel(cl.Model) {
		return cl, badBody("model", "is not a model name")
	}
	return cl, nil
}

func intPtr64(p *int) *int64 {
	if p == nil {
		return nil
	}
	v := int64(*p)
	return &v
}

func deref(p *int64) int64 {
	if p == nil {
		return 0
	}
	return *p
}

// mismatch is the 400 for a body the decoder refused, naming the field
// when the decoder says which (a number too large for it, a wrong type).
func mismatch(what string, err error) error {
	var te *json.UnmarshalTypeError
	if asType(err, &te) && te.Field != "" {
		problem := "must be " + jsonType(te.Type.String())
		switch te.Field {
		case "max_tokens", "max_completion_tokens":
			problem = fmt.Sprintf("must be from 1 to %d", MaxOutputTokens)
		case "n", "best_of":
			problem = fmt.Sprintf("must be from 1 to %d", MaxChoices)
		}
		return errs.Invalid(what+jsonProblem(err), map[string]string{te.Field: problem})
	}
	return errs.Invalid(what+jsonProblem(err), nil)
}

// jsonType names a Go type as a client knows it.
func jsonType(goType string) string {
	switch goType {
	case "int", "int64", "*int", "*int64":
		return "an integer that fits 64 bits"
	case "float64", "*float64":
		return "a number"
	case "bool":
		return "true or false"
	case "string":
		return "a string"
	}
	return "a " + goType
}

func jsonProblem(err error) string {
	var te *json.UnmarshalTypeError
	if ok := asType(err, &te); ok && te.Field != "" {
		return fmt.Sprintf("%s must be %s", te.Field, te.Type.String())
	}
	return err.Error()
}

func asType[T any](err error, target *T) bool {
	t, ok := err.(T)
	if ok {
		*target = t
	}
	return ok
}

// redact masks the tenant's patterns in every prompt text before the call
// leaves, in the body forwarded as is and in the decoded form.
func (g *Service) redact(cl *call, set *Settings) error {
	if set == nil || len(set.compiled) == 0 {
		return nil
	}
	var m map[string]json.RawMessage
	if err := json.Unmarshal(cl.Body, &m); err != nil {
		return errs.Invalid("the body must be a JSON object", nil)
	}
	// Keys that differ from a field only in case were refused by parseCall,
	// so "messages", "prompt" and "input" here are what the decoder read.
	redactValue := func(raw json.RawMessage) json.RawMessage {
		var v any
		if json.Unmarshal(raw, &v) != nil {
			return raw
		}
		return mustJSON(redactAny(v, set))
	}
	switch cl.Op {
	case wire.OpChat:
		var msgs []map[string]json.RawMessage
		if err := json.Unmarshal(m["messages"], &msgs); err != nil {
			return errs.Invalid("messages must be an array of objects", nil)
		}
		for i := range msgs {
			if c, ok := msgs[i]["content"]; ok {
				msgs[i]["content"] = redactValue(c)
			}
		}
		if len(msgs) != len(cl.Chat.Messages) {
			return badBody("messages", "must be an array of message objects")
		}
		m["messages"] = mustJSON(msgs)
		for i := range cl.Chat.Messages {
			cl.Chat.Messages[i].Content = msgs[i]["content"]
		}
	case wire.OpCompletion:
		m["prompt"] = redactValue(m["prompt"])
		cl.completion.Prompt = m["prompt"]
		if cl.Chat != nil {
			cl.Chat.Messages[0].Content = redactValue(cl.Chat.Messages[0].Content)
		}
	case wire.OpEmbedding:
		m["input"] = redactValue(m["input"])
		cl.Embedding.Input = m["input"]
	}
	cl.Body = mustJSON(m)
	return nil
}

// redactAny masks strings, and the "text" of content parts, throughout v.
func redactAny(v any, set *Settings) any {
	switch x := v.(type) {
	case string:
		return set.redact(x)
	case []any:
		for i := range x {
			x[i] = redactAny(x[i], set)
		}
	case map[string]any:
		if t, ok := x["text"].(string); ok {
			x["text"] = set.redact(t)
		}
	}
	return v
}

// estimateTokens is a cheap upper-bound guess of a body's tokens (about four
// bytes a token), for reservations and token-rate limits; exact counts come
// from upstream or the tokenizer afterwards.
func estimateTokens(body []byte) int64 { return int64(len(body))/4 + 1 }

// promptText is the text a call sends (for local counting and storage).
func promptText(cl *call) string {
	switch cl.Op {
	case wire.OpEmbedding:
		in, _ := cl.Embedding.Inputs()
		return strings.Join(in, "\n")
	case wire.OpCompletion:
		var one string
		if json.Unmarshal(cl.completion.Prompt, &one) == nil {
			return one
		}
		var many []string
		_ = json.Unmarshal(cl.completion.Prompt, &many)
		return strings.Join(many, "\n")
	}
	var b strings.Builder
	if cl.Chat != nil {
		for _, m := range cl.Chat.Messages {
			b.WriteString(m.Role)
			b.WriteString(": ")
			writeGenerated(&b, m.Text(), nil, m.ToolCalls)
			b.WriteString("\n")
		}
	}
	return b.String()
}

// answerText is the generated text of a non-streaming answer.
func answerText(op wire.Op, body []byte) string {
	var r struct {
		Choices []struct {
			Text    string               `json:"text"`
			Message wire.ResponseMessage `json:"message"`
		} `json:"choices"`
	}
	if op == wire.OpEmbedding || json.Unmarshal(body, &r) != nil {
		return ""
	}
	var b strings.Builder
	for _, c := range r.Choices {
		writeGenerated(&b, c.Text, c.Message.Content, c.Message.ToolCalls)
	}
	return b.String()
}

// writeGenerated adds what a choice (or a chunk's delta) generated: text,
// content, and the names and arguments of the tools it called.
func writeGenerated(b *strings.Builder, text string, content *string, calls []wire.ToolCall) {
	b.WriteString(text)
	if content != nil {
		b.WriteString(*content)
	}
	for _, tc := range calls {
		b.WriteString(tc.Function.Name)
		b.WriteString(tc.Function.Arguments)
	}
}

// streamText is the generated text of the chunks a stream produced (one
// chunk a line).
func streamText(chunks []byte) string {
	var b strings.Builder
	for line := range bytes.SplitSeq(chunks, []byte("\n")) {
		if len(line) == 0 {
			continue
		}
		var c struct {
			Choices []struct {
				Text  string     `json:"text"`
				Delta wire.Delta `json:"delta"`
			} `json:"choices"`
		}
		if json.Unmarshal(line, &c) != nil {
			continue
		}
		for _, ch := range c.Choices {
			writeGenerated(&b, ch.Text, ch.Delta.Content, ch.Delta.ToolCalls)
		}
	}
	return b.String()
}

// tokens counts text with OpenAI's o200k_base encoding (loaded on first
// use: most calls never need it). Other vendors' tokenizers differ a little,
// which is why locally counted rows are marked estimated.
type tokens struct {
	once  sync.Once
	codec tokenizer.Codec
}

func (t *tokens) count(text string) int64 {
	if text == "" {
		return 0
	}
	t.once.Do(func() { t.codec, _ = tokenizer.Get(tokenizer.O200kBase) })
	codec := t.codec
	if codec == nil {
		return int64(len(text))/4 + 1
	}
	n, err := codec.Count(text)
	if err != nil {
		return int64(len(text))/4 + 1
	}
	return int64(n)
}

// countLocally counts a call's usage when upstream reported none.
func (g *Service) countLocally(cl *call, answer string) wire.Usage {
	prompt := g.tokens.count(promptText(cl))
	if cl.Op == wire.OpChat && cl.Chat != nil {
		prompt += 3*int64(len(cl.Chat.Messages)) + 3 // the per-message framing OpenAI counts
	}
	return wire.Usage{PromptTokens: prompt, CompletionTokens: g.tokens.count(answer)}
}

// textCompletion is OpenAI's text_completion object (and stream chunk).
type textCompletion struct {
	ID      string             `json:"id"`
	Object  string             `json:"object"`
	Created int64              `json:"created"`
	Model   string             `json:"model"`
	Choices []completionChoice `json:"choices"`
	Usage   *wire.UsageObject  `json:"usage,omitempty"`
}

type completionChoice struct {
	Text         string          `json:"text"`
	Index        int             `json:"index"`
	Logprobs     json.RawMessage `json:"logprobs"`
	FinishReason any             `json:"finish_reason"` // a string; null in stream chunks until the end
}

func newTextCompletion(id string, created int64, model string, u *wire.UsageObject) textCompletion {
	return textCompletion{ID: strings.Replace(id, "chatcmpl-", "cmpl-", 1), Object: "text_completion", Created: created, Model: model,
		Usage: u, Choices: []completionChoice{}}
}

func textOf(p *string) string {
	if p == nil {
		return ""
	}
	return *p
}

// chatToCompletion turns a chat.completion answer into a text_completion.
func chatToCompletion(body []byte) ([]byte, error) {
	var c wire.ChatResponse
	if err := json.Unmarshal(body, &c); err != nil {
		return nil, err
	}
	out := newTextCompletion(c.ID, c.Created, c.Model, c.Usage)
	for _, ch := range c.Choices {
		out.Choices = append(out.Choices, completionChoice{Text: textOf(ch.Message.Content), Index: ch.Index, Logprobs: json.RawMessage("null"),
			FinishReason: ch.FinishReason})
	}
	return json.Marshal(out)
}

// chatChunkToCompletion turns a chat.completion.chunk into a text_completion chunk.
func chatChunkToCompletion(chunk []byte) ([]byte, error) {
	var c wire.ChatChunk
	if err := json.Unmarshal(chunk, &c); err != nil {
		return nil, err
	}
	out := newTextCompletion(c.ID, c.Created, c.Model, c.Usage)
	for _, ch := range c.Choices {
		out.Choices = append(out.Choices, completionChoice{Text: textOf(ch.Delta.Content), Index: ch.Index, Logprobs: json.RawMessage("null"),
			FinishReason: ch.FinishReason})
	}
	return json.Marshal(out)
}
