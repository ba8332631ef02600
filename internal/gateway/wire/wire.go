// Package wire is the contract between the gateway and its upstream
// adapters: the OpenAI-shaped requests and answers every adapter translates
// to and from, the Provider interface each adapter implements, and a
// server-sent-events reader they share. It imports nothing of tenantgate.
package wire

import (
	"context"
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"strings"
)

// Op is the kind of call.
type Op string

// The operations the gateway relays.
const (
	OpChat       Op = "chat"       // POST /v1/chat/completions
	OpCompletion Op = "completion" // POST /v1/completions (legacy text completions)
	OpEmbedding  Op = "embedding"  // POST /v1/embeddings
)

// Usage is what one call consumed, in tokens.
type Usage struct {
	PromptTokens     int64 // input tokens, cached ones included
	CachedTokens     int64 // the part of PromptTokens served from a prompt cache
	CompletionTokens int64
}

// Target is where one attempt goes: the channel's endpoint and one of its keys.
type Target struct {
	BaseURL    string            // e.g. https://api.openai.com/v1, https://api.anthropic.com, https://x.openai.azure.com
	Key        string            // the upstream API key (plaintext, never logged)
	Model      string            // the upstream model name (after the channel's model mapping)
	Headers    map[string]string // extra headers configured on the channel
	APIVersion string            // Azure's api-version; Anthropic's anthropic-version (defaults apply when empty)
}

// Call is one client request, already validated by the gateway.
type Call struct {
	Op    Op
	Model string // the model name the client asked for (answers report this name)
	// Body is the client's JSON body exactly as sent. Pass-through adapters
	// (OpenAI-compatible) forward it with the model replaced; translating
	// adapters use the decoded form below.
	Body      []byte
	Chat      *ChatRequest      // set for OpChat (and OpCompletion turned into chat)
	Embedding *EmbeddingRequest // set for OpEmbedding
	Stream    bool
	// OutputCap, when above 0, is the output-token cap (per answer) the
	// gateway reserved for a call whose client set none. Adapters must send
	// it upstream as the provider's own cap, so no answer is longer than
	// what was reserved. (A cap the client set is in Body and Chat.)
	OutputCap int64
}

// CappedChat is Chat with OutputCap applied as max_tokens when the client
// set no cap: a shallow copy, Chat itself is not changed.
func (c *Call) CappedChat() *ChatRequest {
	if c.Chat == nil || c.OutputCap <= 0 || c.Chat.MaxTokens != nil || c.Chat.MaxCompletionTokens != nil {
		return c.Chat
	}
	r := *c.Chat
	n := c.OutputCap
	r.MaxTokens = &n
	return &r
}

// Result is a non-streaming answer in OpenAI's shape.
type Result struct {
	Body     []byte // the JSON the client receives
	Usage    Usage
	HasUsage bool // false when upstream reported no usage (the gateway then counts locally)
}

// Emit receives one OpenAI chat.completion.chunk (the JSON that follows
// "data: "). usageOnly marks the final chunk that carries only usage and no
// choices: the gateway forwards it only when the client asked for it with
// stream_options.include_usage.
type Emit func(chunk []byte, usageOnly bool) error

// Provider adapts one upstream wire format. Implementations are stateless
// and safe for concurrent use.
type Provider interface {
	// Supports says whether the upstream serves op (the gateway turns
	// completions into chat calls for providers that only speak chat).
	Supports(op Op) bool
	// NewRequest builds the upstream HTTP request for c.
	NewRequest(ctx context.Context, t *Target, c *Call) (*http.Request, error)
	// Decode turns a successful (2xx) non-streaming upstream body into the
	// OpenAI answer.
	Decode(c *Call, t *Target, body []byte) (*Result, error)
	// Stream reads a successful streaming upstream body and emits OpenAI
	// chunks as they arrive, never buffering the whole answer. It returns
	// the usage upstream reported (ok false when it reported none, or the
	// stream ended before it did). An error from emit stops the stream and
	// is returned as is.
	Stream(c *Call, t *Target, body io.Reader, emit Emit) (u Usage, ok bool, err error)
	// ErrorMessage extracts the human-readable message from an upstream
	// error body ("" when there is none).
	ErrorMessage(body []byte) string
}

// ChatRequest is OpenAI's chat completion request, as far as translating
// adapters need it. Unknown fields are ignored by translators and kept by
// pass-through adapters (which forward Call.Body).
type ChatRequest struct {
	Model               string          `json:"model"`
	Messages            []Message       `json:"messages"`
	MaxTokens           *int64          `json:"max_tokens,omitempty"`
	MaxCompletionTokens *int64          `json:"max_completion_tokens,omitempty"`
	Temperature         *float64        `json:"temperature,omitempty"`
	TopP                *float64        `json:"top_p,omitempty"`
	N                   *int            `json:"n,omitempty"`
	Stop                json.RawMessage `json:"stop,omitempty"` // a string or an array of strings
	Stream              bool            `json:"stream,omitempty"`
	StreamOptions       *StreamOptions  `json:"stream_options,omitempty"`
	Tools               []Tool          `json:"tools,omitempty"`
	ToolChoice          json.RawMessage `json:"tool_choice,omitempty"` // "none" | "auto" | "required" | {"type":"function","function":{"name":…}}
	ResponseFormat      json.RawMessage `json:"response_format,omitempty"`
	PresencePenalty     *float64        `json:"presence_penalty,omitempty"`
	FrequencyPenalty    *float64        `json:"frequency_penalty,omitempty"`
	Seed                *int64          `json:"seed,omitempty"`
	User                string          `json:"user,omitempty"`
}

// MaxOutput is the output-token cap the client set (max_completion_tokens,
// else max_tokens), or 0.
func (r *ChatRequest) MaxOutput() int64 {
	if r.MaxCompletionTokens != nil {
		return *r.MaxCompletionTokens
	}
	if r.MaxTokens != nil {
		return *r.MaxTokens
	}
	return 0
}

// StopList returns the stop sequences (stop may be a string or an array).
func (r *ChatRequest) StopList() []string {
	if len(r.Stop) == 0 || string(r.Stop) == "null" {
		return nil
	}
	var one string
	if json.Unmarshal(r.Stop, &one) == nil {
		return []string{one}
	}
	var many []string
	_ = json.Unmarshal(r.Stop, &many)
	return many
}

// StreamOptions is OpenAI's stream_options.
type StreamOptions struct {
	IncludeUsage bool `json:"include_usage"`
}

// Message is one chat message. Content is a string, an array of parts, or null.
type Message struct {
	Role       string          `json:"role"` // system | developer | user | assistant | tool
	Content    json.RawMessage `json:"content,omitempty"`
	Name       string          `json:"name,omitempty"`
	ToolCalls  []ToolCall      `json:"tool_calls,omitempty"`
	ToolCallID string          `json:"tool_call_id,omitempty"`
}

// ContentPart is one part of a multi-part message.
type ContentPart struct {
	Type     string    `json:"type"` // text | image_url
	Text     string    `json:"text,omitempty"`
	ImageURL *ImageURL `json:"image_url,omitempty"`
}

// ImageURL is an image part: an https URL or a data: URL.
type ImageURL struct {
	URL    string `json:"url"`
	Detail string `json:"detail,omitempty"`
}

// ErrBadContent is returned for message content that is neither a string,
// an array of parts, nor null.
var ErrBadContent = errors.New("content must be a string, an array of content parts, or null")

// Parts returns the content as parts: a string becomes one text part, null none.
func (m *Message) Parts() ([]ContentPart, error) {
	c := m.Content
	if len(c) == 0 || string(c) == "null" {
		return nil, nil
	}
	switch c[0] {
	case '"':
		var s string
		if err := json.Unmarshal(c, &s); err != nil {
			return nil, ErrBadContent
		}
		return []ContentPart{{Type: "text", Text: s}}, nil
	case '[':
		var ps []ContentPart
		if err := json.Unmarshal(c, &ps); err != nil {
			return nil, ErrBadContent
		}
		return ps, nil
	}
	return nil, ErrBadContent
}

// Text returns the message's text parts joined (images left out).
func (m *Message) Text() string {
	ps, _ := m.Parts()
	var b strings.Builder
	for _, p := range ps {
		if p.Type == "text" {
			b.WriteString(p.Text)
		}
	}
	return b.String()
}

// TextContent makes a string content value.
func TextContent(s string) json.RawMessage {
	b, _ := json.Marshal(s)
	return b
}

// Tool is a function the model may call.
type Tool struct {
	Type     string      `json:"type"` // function
	Function FunctionDef `json:"function"`
}

// FunctionDef declares a function.
type FunctionDef struct {
	Name        string          `json:"name"`
	Description string          `json:"description,omitempty"`
	Parameters  json.RawMessage `json:"parameters,omitempty"` // JSON Schema
}

// ToolCall is a function call the model made. Index is set in stream deltas.
type ToolCall struct {
	Index    *int         `json:"index,omitempty"`
	ID       string       `json:"id,omitempty"`
	Type     string       `json:"type,omitempty"` // function
	Function FunctionCall `json:"function"`
}

// FunctionCall names the function and its JSON-encoded arguments.
type FunctionCall struct {
	Name      string `json:"name,omitempty"`
	Arguments string `json:"arguments"`
}

// ChatResponse is OpenAI's chat.completion object.
type ChatResponse struct {
	ID                string       `json:"id"`
	Object            string       `json:"object"` // chat.completion
	Created           int64        `json:"created"`
	Model             string       `json:"model"`
	Choices           []Choice     `json:"choices"`
	Usage             *UsageObject `json:"usage,omitempty"`
	SystemFingerprint string       `json:"system_fingerprint,omitempty"`
}

// Choice is one answer of a chat completion.
type Choice struct {
	Index        int             `json:"index"`
	Message      ResponseMessage `json:"message"`
	FinishReason string          `json:"finish_reason"` // stop | length | tool_calls | content_filter
	Logprobs     json.RawMessage `json:"logprobs"`      // null unless upstream gives them
}

// ResponseMessage is the assistant's message in an answer; content is null
// when the model only called tools.
type ResponseMessage struct {
	Role      string     `json:"role"`
	Content   *string    `json:"content"`
	Refusal   *string    `json:"refusal"`
	ToolCalls []ToolCall `json:"tool_calls,omitempty"`
}

// ChatChunk is OpenAI's chat.completion.chunk.
type ChatChunk struct {
	ID                string        `json:"id"`
	Object            string        `json:"object"` // chat.completion.chunk
	Created           int64         `json:"created"`
	Model             string        `json:"model"`
	Choices           []ChunkChoice `json:"choices"` // empty (not null) in the usage-only chunk
	Usage             *UsageObject  `json:"usage,omitempty"`
	SystemFingerprint string        `json:"system_fingerprint,omitempty"`
}

// ChunkChoice is one choice's delta in a chunk.
type ChunkChoice struct {
	Index        int             `json:"index"`
	Delta        Delta           `json:"delta"`
	FinishReason *string         `json:"finish_reason"`
	Logprobs     json.RawMessage `json:"logprobs,omitempty"`
}

// Delta is the new part of a streamed message.
type Delta struct {
	Role      string     `json:"role,omitempty"`
	Content   *string    `json:"content,omitempty"`
	ToolCalls []ToolCall `json:"tool_calls,omitempty"`
}

// UsageObject is OpenAI's usage object.
type UsageObject struct {
	PromptTokens        int64                `json:"prompt_tokens"`
	CompletionTokens    int64                `json:"completion_tokens"`
	TotalTokens         int64                `json:"total_tokens"`
	PromptTokensDetails *PromptTokensDetails `json:"prompt_tokens_details,omitempty"`
}

// PromptTokensDetails carries cached prompt tokens.
type PromptTokensDetails struct {
	CachedTokens int64 `json:"cached_tokens"`
}

// Object returns u as OpenAI's usage object.
func (u Usage) Object() *UsageObject {
	o := &UsageObject{PromptTokens: u.PromptTokens, CompletionTokens: u.CompletionTokens, TotalTokens: u.PromptTokens + u.CompletionTokens}
	if u.CachedTokens > 0 {
		o.PromptTokensDetails = &PromptTokensDetails{CachedTokens: u.CachedTokens}
	}
	return o
}

// Usage returns o as Usage (nil gives zero).
func (o *UsageObject) Usage() Usage {
	if o == nil {
		return Usage{}
	}
	u := Usage{PromptTokens: o.PromptTokens, CompletionTokens: o.CompletionTokens}
	if o.PromptTokensDetails != nil {
		u.CachedTokens = o.PromptTokensDetails.CachedTokens
	}
	return u
}

// EmbeddingRequest is OpenAI's embeddings request.
type EmbeddingRequest struct {
	Model          string          `json:"model"`
	Input          json.RawMessage `json:"input"`                     // a string, an array of strings, or token arrays
	EncodingFormat string          `json:"encoding_format,omitempty"` // float | base64
	Dimensions     *int            `json:"dimensions,omitempty"`
	User           string          `json:"user,omitempty"`
}

// Inputs returns the inputs as strings (a string is one input); token
// arrays give ok false, since translators cannot carry them.
func (r *EmbeddingRequest) Inputs() (in []string, ok bool) {
	var one string
	if json.Unmarshal(r.Input, &one) == nil {
		return []string{one}, true
	}
	if json.Unmarshal(r.Input, &in) == nil {
		return in, true
	}
	return nil, false
}

// EmbeddingResponse is OpenAI's embeddings answer.
type EmbeddingResponse struct {
	Object string         `json:"object"` // list
	Data   []Embedding    `json:"data"`
	Model  string         `json:"model"`
	Usage  EmbeddingUsage `json:"usage"`
}

// Embedding is one vector.
type Embedding struct {
	Object    string    `json:"object"` // embedding
	Index     int       `json:"index"`
	Embedding []float64 `json:"embedding"`
}

// EmbeddingUsage is the usage of an embeddings call.
type EmbeddingUsage struct {
	PromptTokens int64 `json:"prompt_tokens"`
	TotalTokens  int64 `json:"total_tokens"`
}
