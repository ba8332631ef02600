package anthropic

import (
	"bytes"
	"encoding/json"
	"fmt"
	"strings"

	"github.com/tenantgate/tenantgate/internal/gateway/wire"
)

// response is a Messages API answer (a "message" object).
type response struct {
	ID         string          `json:"id"`
	Type       string          `json:"type"` // message (error for an error body)
	Content    []responseBlock `json:"content"`
	StopReason string          `json:"stop_reason"`
	Usage      *usage          `json:"usage"`
	Error      *apiError       `json:"error"`
}

// responseBlock is one content block of an answer; only text and tool_use
// blocks are translated (thinking and server tool blocks are left out).
type responseBlock struct {
	Type  string          `json:"type"`
	Text  string          `json:"text"`
	ID    string          `json:"id"`
	Name  string          `json:"name"`
	Input json.RawMessage `json:"input"`
}

// usage is Anthropic's usage object. input_tokens excludes the cached
// parts, which are counted apart. The input fields are pointers to tell
// a streamed message_delta that leaves them out.
type usage struct {
	InputTokens              *int64 `json:"input_tokens"`
	OutputTokens             int64  `json:"output_tokens"`
	CacheCreationInputTokens *int64 `json:"cache_creation_input_tokens"`
	CacheReadInputTokens     *int64 `json:"cache_read_input_tokens"`
}

type apiError struct {
	Type    string `json:"type"`
	Message string `json:"message"`
}

// errorBody is Anthropic's error answer.
type errorBody struct {
	Error *apiError `json:"error"`
}

func val(p *int64) int64 {
	if p == nil {
		return 0
	}
	return *p
}

func (u *usage) wire() wire.Usage {
	read := val(u.CacheReadInputTokens)
	return wire.Usage{
		PromptTokens:     val(u.InputTokens) + read + val(u.CacheCreationInputTokens),
		CachedTokens:     read,
		CompletionTokens: u.OutputTokens,
	}
}

// finishReason maps a stop_reason to OpenAI's finish_reason.
func finishReason(stop string) string {
	switch stop {
	case "max_tokens", "model_context_window_exceeded":
		return "length"
	case "tool_use":
		return "tool_calls"
	case "refusal":
		return "content_filter"
	}
	return "stop" // end_turn, stop_sequence, pause_turn
}

// Decode turns a Messages API answer into an OpenAI chat.completion.
func (*Provider) Decode(c *wire.Call, t *wire.Target, body []byte) (*wire.Result, error) {
	var r response
	if err := json.Unmarshal(body, &r); err != nil {
		return nil, fmt.Errorf("decoding the Anthropic answer: %w", err)
	}
	if r.Type == "error" || (r.Type == "" && r.Error != nil) {
		msg := ""
		if r.Error != nil {
			msg = r.Error.Message
		}
		return nil, &upstreamError{msg: msg}
	}
	if r.Type != "message" && r.Type != "" {
		return nil, fmt.Errorf("the Anthropic answer is a %q, not a message", r.Type)
	}
	msg := wire.ResponseMessage{Role: "assistant"}
	var text strings.Builder
	hasText := false
	for _, b := range r.Content {
		switch b.Type {
		case "text":
			text.WriteString(b.Text)
			hasText = true
		case "tool_use":
			msg.ToolCalls = append(msg.ToolCalls, wire.ToolCall{
				ID:       b.ID,
				Type:     "function",
				Function: wire.FunctionCall{Name: b.Name, Arguments: compactJSON(b.Input)},
			})
		}
	}
	if hasText {
		s := text.String()
		msg.Content = &s
	}
	out := wire.ChatResponse{
		ID:      "chatcmpl-" + r.ID,
		Object:  "chat.completion",
		Created: now().Unix(),
		Model:   c.Model,
		Choices: []wire.Choice{{
			Index:        0,
			Message:      msg,
			FinishReason: finishReason(r.StopReason),
			Logprobs:     json.RawMessage("null"),
		}},
	}
	res := &wire.Result{}
	if r.Usage != nil {
		res.Usage = r.Usage.wire()
		res.HasUsage = true
		out.Usage = res.Usage.Object()
	}
	b, err := json.Marshal(out)
	if err != nil {
		return nil, fmt.Errorf("encoding the answer: %w", err)
	}
	res.Body = b
	return res, nil
}

// compactJSON gives a tool_use input as OpenAI arguments ("{}" for none).
func compactJSON(raw json.RawMessage) string {
	var b bytes.Buffer
	if len(raw) == 0 || string(raw) == "null" || json.Compact(&b, raw) != nil {
		return "{}"
	}
	return b.String()
}

// ErrorMessage extracts the message of an Anthropic error body.
func (*Provider) ErrorMessage(body []byte) string {
	var e errorBody
	if json.Unmarshal(body, &e) != nil || e.Error == nil {
		return ""
	}
	return e.Error.Message
}

// upstreamError is an error Anthropic reported: in a 2xx body, or as an
// error event of a stream.
type upstreamError struct {
	typ, msg string
}

func (e *upstreamError) Error() string {
	switch {
	case e.msg == "" && e.typ == "":
		return "Anthropic reported an error"
	case e.typ == "":
		return "Anthropic error: " + e.msg
	case e.msg == "":
		return "Anthropic error: " + e.typ
	}
	return "Anthropic error (" + e.typ + "): " + e.msg
}
