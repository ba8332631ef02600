// Package anthropic is the gateway's upstream adapter for Anthropic's
// Messages API (POST /v1/messages). It translates OpenAI chat completion
// requests into Messages requests and Anthropic's answers, streamed or not,
// back into OpenAI chat.completion and chat.completion.chunk objects.
package anthropic

import (
	"bytes"
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"strings"
	"time"

	"github.com/tenantgate/tenantgate/internal/gateway/wire"
)

const (
	defaultBaseURL   = "https://api.anthropic.com"
	defaultVersion   = "2023-06-01"
	defaultMaxTokens = 4096
)

// now is the clock answers are stamped with (tests replace it).
var now = time.Now

// Provider is the Anthropic adapter. It is stateless and safe for
// concurrent use.
type Provider struct{}

var _ wire.Provider = (*Provider)(nil)

// New returns the Anthropic adapter.
func New() *Provider { return &Provider{} }

// Supports reports whether op is served: Anthropic only speaks chat.
func (*Provider) Supports(op wire.Op) bool { return op == wire.OpChat }

// NewRequest builds the Messages API request for c. Its errors are
// meant for the API client (the gateway answers them with a 400).
func (*Provider) NewRequest(ctx context.Context, t *wire.Target, c *wire.Call) (*http.Request, error) {
	if c.Chat == nil {
		return nil, errors.New("only chat completions are supported by Anthropic models")
	}
	body, err := translateRequest(t.Model, c.CappedChat(), c.Stream)
	if err != nil {
		return nil, err
	}
	b, err := json.Marshal(body)
	if err != nil {
		return nil, fmt.Errorf("encoding the Anthropic request: %w", err)
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, endpoint(t.BaseURL), bytes.NewReader(b))
	if err != nil {
		return nil, err
	}
	version := t.APIVersion
	if version == "" {
		version = defaultVersion
	}
	req.Header.Set("x-api-key", t.Key)
	req.Header.Set("anthropic-version", version)
	req.Header.Set("content-type", "application/json")
	if c.Stream {
		req.Header.Set("accept", "text/event-stream")
	}
	for k, v := range t.Headers {
		req.Header.Set(k, v)
	}
	return req, nil
}

// endpoint is {base}/v1/messages, base defaulting to Anthropic's API and
// a base that already ends in /v1 not getting a second one.
func endpoint(base string) string {
	base = strings.TrimRight(base, "/")
	if base == "" {
		base = defaultBaseURL
	}
	if strings.HasSuffix(base, "/v1") {
		return base + "/messages"
	}
	return base + "/v1/messages"
}

// request is the Messages API request body.
type request struct {
	Model         string      `json:"model"`
	System        string      `json:"system,omitempty"`
	Messages      []message   `json:"messages"`
	MaxTokens     int64       `json:"max_tokens"`
	Temperature   *float64    `json:"temperature,omitempty"`
	TopP          *float64    `json:"top_p,omitempty"`
	StopSequences []string    `json:"stop_sequences,omitempty"`
	Stream        bool        `json:"stream,omitempty"`
	Metadata      *metadata   `json:"metadata,omitempty"`
	Tools         []tool      `json:"tools,omitempty"`
	ToolChoice    *toolChoice `json:"tool_choice,omitempty"`
}

type metadata struct {
	UserID string `json:"user_id"`
}

type message struct {
	Role    string  `json:"role"` // user | assistant
	Content []block `json:"content"`
}

// block is one content block of a request message: text, image, tool_use
// or tool_result (the fields of the other kinds stay empty).
type block struct {
	Type      string          `json:"type"`
	Text      string          `json:"text,omitempty"`
	Source    *imageSource    `json:"source,omitempty"`
	ID        string          `json:"id,omitempty"`
	Name      string          `json:"name,omitempty"`
	Input     json.RawMessage `json:"input,omitempty"`
	ToolUseID string          `json:"tool_use_id,omitempty"`
	Content   string          `json:"content,omitempty"`
}

type imageSource struct {
	Type      string `json:"type"` // base64 | url
	MediaType string `json:"media_type,omitempty"`
	Data      string `json:"data,omitempty"`
	URL       string `json:"url,omitempty"`
}

type tool struct {
	Name        string          `json:"name"`
	Description string          `json:"description,omitempty"`
	InputSchema json.RawMessage `json:"input_schema"`
}

type toolChoice struct {
	Type string `json:"type"` // auto | any | none | tool
	Name string `json:"name,omitempty"`
}

var emptySchema = json.RawMessage(`{"type":"object","properties":{}}`)

func translateRequest(model string, r *wire.ChatRequest, stream bool) (*request, error) {
	if r.N != nil && *r.N > 1 {
		return nil, errors.New("n > 1 is not supported by Anthropic models")
	}
	system, msgs, err := translateMessages(r.Messages)
	if err != nil {
		return nil, err
	}
	if len(msgs) == 0 {
		return nil, errors.New("Anthropic models need at least one user or assistant message besides system messages")
	}
	out := &request{Model: model, System: system, Messages: msgs, Stream: stream, TopP: r.TopP}

	switch n := r.MaxOutput(); {
	case n == 0:
		out.MaxTokens = defaultMaxTokens
	case n < 0:
		return nil, errors.New("max_tokens must be positive")
	default:
		out.MaxTokens = n
	}
	if r.Temperature != nil {
		// OpenAI accepts 0 to 2, Anthropic 0 to 1.
		t := min(max(*r.Temperature, 0), 1)
		out.Temperature = &t
	}
	for _, s := range r.StopList() {
		if s != "" {
			out.StopSequences = append(out.StopSequences, s)
		}
	}
	if r.User != "" {
		out.Metadata = &metadata{UserID: r.User}
	}
	for i, t := range r.Tools {
		if t.Type != "" && t.Type != "function" {
			return nil, fmt.Errorf("tools[%d]: tool type %q is not supported by Anthropic models", i, t.Type)
		}
		schema := t.Function.Parameters
		if len(schema) == 0 || string(schema) == "null" {
			schema = emptySchema
		}
		out.Tools = append(out.Tools, tool{Name: t.Function.Name, Description: t.Function.Description, InputSchema: schema})
	}
	if out.ToolChoice, err = translateToolChoice(r.ToolChoice, len(out.Tools) > 0); err != nil {
		return nil, err
	}
	return out, nil
}

// translateMessages moves system and developer messages to the system
// prompt and the rest into alternating user and assistant messages:
// tool results become tool_result blocks of a user message, and
// consecutive messages of one role are merged.
func translateMessages(in []wire.Message) (system string, out []message, err error) {
	var sys []string
	for i := range in {
		m := &in[i]
		parts, err := m.Parts()
		if err != nil {
			return "", nil, fmt.Errorf("messages[%d]: %w", i, err)
		}
		switch m.Role {
		case "system", "developer":
			s, err := textOnly(parts)
			if err != nil {
				return "", nil, fmt.Errorf("messages[%d]: %s messages %w", i, m.Role, err)
			}
			if s != "" {
				sys = append(sys, s)
			}
		case "user":
			blocks, err := contentBlocks(parts)
			if err != nil {
				return "", nil, fmt.Errorf("messages[%d]: %w", i, err)
			}
			out = appendMessage(out, "user", blocks)
		case "assistant":
			blocks, err := contentBlocks(parts)
			if err != nil {
				return "", nil, fmt.Errorf("messages[%d]: %w", i, err)
			}
			for _, tc := range m.ToolCalls {
				blocks = append(blocks, block{Type: "tool_use", ID: tc.ID, Name: tc.Function.Name, Input: argumentsObject(tc.Function.Arguments)})
			}
			out = appendMessage(out, "assistant", blocks)
		case "tool":
			if m.ToolCallID == "" {
				return "", nil, fmt.Errorf("messages[%d]: tool message without tool_call_id", i)
			}
			s, err := textOnly(parts)
			if err != nil {
				return "", nil, fmt.Errorf("messages[%d]: tool messages %w", i, err)
			}
			out = appendMessage(out, "user", []block{{Type: "tool_result", ToolUseID: m.ToolCallID, Content: s}})
		default:
			return "", nil, fmt.Errorf("messages[%d]: role %q is not supported by Anthropic models", i, m.Role)
		}
	}
	return strings.Join(sys, "\n\n"), out, nil
}

// appendMessage adds blocks as a message of role, merged into the last
// message when it has the same role; empty messages are left out.
func appendMessage(out []message, role string, blocks []block) []message {
	if len(blocks) == 0 {
		return out
	}
	if n := len(out); n > 0 && out[n-1].Role == role {
		out[n-1].Content = append(out[n-1].Content, blocks...)
		return out
	}
	return append(out, message{Role: role, Content: blocks})
}

func textOnly(parts []wire.ContentPart) (string, error) {
	var b strings.Builder
	for _, p := range parts {
		if p.Type != "text" {
			return "", fmt.Errorf("can only contain text for Anthropic models, not %q parts", p.Type)
		}
		b.WriteString(p.Text)
	}
	return b.String(), nil
}

func contentBlocks(parts []wire.ContentPart) ([]block, error) {
	var blocks []block
	for _, p := range parts {
		switch p.Type {
		case "text":
			if p.Text != "" { // Anthropic rejects empty text blocks
				blocks = append(blocks, block{Type: "text", Text: p.Text})
			}
		case "image_url":
			if p.ImageURL == nil {
				return nil, errors.New("image_url part without image_url")
			}
			src, err := imageSourceOf(p.ImageURL.URL)
			if err != nil {
				return nil, err
			}
			blocks = append(blocks, block{Type: "image", Source: src})
		default:
			return nil, fmt.Errorf("content part type %q is not supported by Anthropic models", p.Type)
		}
	}
	return blocks, nil
}

func imageSourceOf(u string) (*imageSource, error) {
	scheme, _, _ := strings.Cut(u, ":")
	switch strings.ToLower(scheme) {
	case "data":
		meta, data, ok := strings.Cut(u[len("data:"):], ",")
		if !ok {
			return nil, errors.New("image data URL has no data")
		}
		params := strings.Split(meta, ";")
		mediaType := strings.TrimSpace(params[0])
		if mediaType == "" {
			return nil, errors.New("image data URL has no media type")
		}
		if params[len(params)-1] != "base64" {
			raw, err := url.PathUnescape(data)
			if err != nil {
				return nil, errors.New("image data URL is not properly encoded")
			}
			data = base64.StdEncoding.EncodeToString([]byte(raw))
		}
		return &imageSource{Type: "base64", MediaType: mediaType, Data: data}, nil
	case "http", "https":
		return &imageSource{Type: "url", URL: u}, nil
	}
	return nil, errors.New("image_url must be an http(s) URL or a data: URL")
}

// argumentsObject turns a tool call's JSON arguments into tool_use input,
// which must be an object: anything else becomes {}.
func argumentsObject(args string) json.RawMessage {
	s := strings.TrimSpace(args)
	if !strings.HasPrefix(s, "{") || !json.Valid([]byte(s)) {
		return json.RawMessage("{}")
	}
	var b bytes.Buffer
	if json.Compact(&b, []byte(s)) != nil {
		return json.RawMessage("{}")
	}
	return b.Bytes()
}

const toolChoiceForms = `tool_choice must be "none", "auto", "required" or {"type":"function","function":{"name":"…"}}`

func translateToolChoice(raw json.RawMessage, hasTools bool) (*toolChoice, error) {
	if len(raw) == 0 || string(raw) == "null" {
		return nil, nil
	}
	var tc toolChoice
	var s string
	if json.Unmarshal(raw, &s) == nil {
		switch s {
		case "auto":
			tc.Type = "auto"
		case "required":
			tc.Type = "any"
		case "none":
			tc.Type = "none"
		default:
			return nil, errors.New(toolChoiceForms)
		}
	} else {
		var o struct {
			Type     string `json:"type"`
			Function struct {
				Name string `json:"name"`
			} `json:"function"`
		}
		if json.Unmarshal(raw, &o) != nil || o.Type != "function" || o.Function.Name == "" {
			return nil, errors.New(toolChoiceForms)
		}
		tc = toolChoice{Type: "tool", Name: o.Function.Name}
	}
	if !hasTools {
		if tc.Type == "auto" || tc.Type == "none" {
			return nil, nil // Anthropic wants no tool_choice without tools
		}
		return nil, errors.New("tool_choice requires tools")
	}
	return &tc, nil
}
