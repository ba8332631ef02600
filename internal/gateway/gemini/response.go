package gemini

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/tenantgate/tenantgate/internal/gateway/wire"
)

// generateResponse is Gemini's GenerateContentResponse (also each event of
// a stream). Error is set when upstream sent an error object instead.
type generateResponse struct {
	Candidates     []candidate     `json:"candidates"`
	PromptFeedback *promptFeedback `json:"promptFeedback"`
	UsageMetadata  *usageMetadata  `json:"usageMetadata"`
	ModelVersion   string          `json:"modelVersion"`
	ResponseID     string          `json:"responseId"`
	Error          *apiError       `json:"error"`
}

type candidate struct {
	Content      *content `json:"content"`
	FinishReason string   `json:"finishReason"`
	Index        *int     `json:"index"` // omitted for 0 by some backends
}

// index is the candidate's index, its position when upstream left it out.
func (c *candidate) index(pos int) int {
	if c.Index != nil {
		return *c.Index
	}
	return pos
}

type promptFeedback struct {
	BlockReason string `json:"blockReason"`
}

type usageMetadata struct {
	PromptTokenCount        *int64 `json:"promptTokenCount"`
	CachedContentTokenCount *int64 `json:"cachedContentTokenCount"`
	CandidatesTokenCount    *int64 `json:"candidatesTokenCount"`
	ThoughtsTokenCount      *int64 `json:"thoughtsTokenCount"`
	TotalTokenCount         *int64 `json:"totalTokenCount"`
}

// counted says whether m carries any token count (some backends send a
// usageMetadata holding only a traffic type on intermediate events).
func (m *usageMetadata) counted() bool {
	return m != nil && (m.PromptTokenCount != nil || m.CachedContentTokenCount != nil ||
		m.CandidatesTokenCount != nil || m.ThoughtsTokenCount != nil || m.TotalTokenCount != nil)
}

// usage is m in the gateway's terms: thinking tokens are billed as output.
func (m *usageMetadata) usage() wire.Usage {
	n := func(p *int64) int64 {
		if p == nil {
			return 0
		}
		return *p
	}
	return wire.Usage{
		PromptTokens:     n(m.PromptTokenCount),
		CachedTokens:     n(m.CachedContentTokenCount),
		CompletionTokens: n(m.CandidatesTokenCount) + n(m.ThoughtsTokenCount),
	}
}

// finishReason maps Gemini's finish reason to OpenAI's; calls says the
// candidate called functions.
func finishReason(reason string, calls bool) string {
	switch reason {
	case "MAX_TOKENS":
		return "length"
	case "SAFETY", "RECITATION", "BLOCKLIST", "PROHIBITED_CONTENT", "SPII", "IMAGE_SAFETY":
		return "content_filter"
	}
	if calls {
		return "tool_calls"
	}
	return "stop"
}

// Decode turns a generateContent or batchEmbedContents answer into
// OpenAI's chat.completion or embeddings list.
func (*Provider) Decode(c *wire.Call, _ *wire.Target, body []byte) (*wire.Result, error) {
	if c.Op == wire.OpEmbedding {
		return decodeEmbeddings(c, body)
	}
	return decodeChat(c, body)
}

func decodeChat(c *wire.Call, body []byte) (*wire.Result, error) {
	var r generateResponse
	if err := json.Unmarshal(body, &r); err != nil {
		if e := parseError(body); e != nil {
			return nil, e
		}
		return nil, fmt.Errorf("gemini: decoding the generateContent answer: %w", err)
	}
	if r.Error != nil {
		return nil, r.Error
	}
	resp := wire.ChatResponse{
		ID:      chatID(r.ResponseID),
		Object:  "chat.completion",
		Created: time.Now().Unix(),
		Model:   c.Model,
		Choices: make([]wire.Choice, 0, len(r.Candidates)),
	}
	for i := range r.Candidates {
		resp.Choices = append(resp.Choices, choice(i, &r.Candidates[i]))
	}
	if len(r.Candidates) == 0 {
		if r.PromptFeedback == nil || r.PromptFeedback.BlockReason == "" {
			return nil, errors.New("gemini: the answer has no candidates")
		}
		resp.Choices = append(resp.Choices, wire.Choice{
			Message:      wire.ResponseMessage{Role: "assistant"},
			FinishReason: "content_filter",
			Logprobs:     json.RawMessage("null"),
		})
	}
	res := &wire.Result{}
	if r.UsageMetadata != nil {
		res.Usage = r.UsageMetadata.usage()
		res.HasUsage = true
		resp.Usage = res.Usage.Object()
	}
	var err error
	if res.Body, err = json.Marshal(resp); err != nil {
		return nil, fmt.Errorf("gemini: encoding the answer: %w", err)
	}
	return res, nil
}

// choice translates one candidate: its text (thoughts left out) and its
// function calls.
func choice(pos int, cand *candidate) wire.Choice {
	var (
		text    strings.Builder
		hasText bool
		calls   []wire.ToolCall
	)
	if cand.Content != nil {
		for _, p := range cand.Content.Parts {
			switch {
			case p.Thought:
			case p.FunctionCall != nil:
				calls = append(calls, toolCall(p.FunctionCall, p.ThoughtSignature))
			case p.Text != "":
				text.WriteString(p.Text)
				hasText = true
			}
		}
	}
	ch := wire.Choice{
		Index:        cand.index(pos),
		Message:      wire.ResponseMessage{Role: "assistant", ToolCalls: calls},
		FinishReason: finishReason(cand.FinishReason, len(calls) > 0),
		Logprobs:     json.RawMessage("null"),
	}
	if hasText || (len(calls) == 0 && ch.FinishReason != "content_filter") {
		s := text.String()
		ch.Message.Content = &s
	}
	return ch
}

// toolCall is a Gemini function call as an OpenAI tool call; its id
// carries the part's thought signature, if any.
func toolCall(fc *functionCall, signature string) wire.ToolCall {
	return wire.ToolCall{
		ID:       callID(signature),
		Type:     "function",
		Function: wire.FunctionCall{Name: fc.Name, Arguments: compactArgs(fc.Args)},
	}
}

// compactArgs is a function call's args as compact JSON ({} when absent).
func compactArgs(args json.RawMessage) string {
	var b bytes.Buffer
	if len(bytes.TrimSpace(args)) == 0 || string(bytes.TrimSpace(args)) == "null" || json.Compact(&b, args) != nil {
		return "{}"
	}
	return b.String()
}

func decodeEmbeddings(c *wire.Call, body []byte) (*wire.Result, error) {
	var r struct {
		Embeddings []struct {
			Values []float64 `json:"values"`
		} `json:"embeddings"`
		Error *apiError `json:"error"`
	}
	if err := json.Unmarshal(body, &r); err != nil {
		return nil, fmt.Errorf("gemini: decoding the batchEmbedContents answer: %w", err)
	}
	if r.Error != nil {
		return nil, r.Error
	}
	resp := wire.EmbeddingResponse{Object: "list", Data: make([]wire.Embedding, 0, len(r.Embeddings)), Model: c.Model}
	for i, e := range r.Embeddings {
		v := e.Values
		if v == nil {
			v = []float64{}
		}
		resp.Data = append(resp.Data, wire.Embedding{Object: "embedding", Index: i, Embedding: v})
	}
	b, err := json.Marshal(resp)
	if err != nil {
		return nil, fmt.Errorf("gemini: encoding the embeddings answer: %w", err)
	}
	return &wire.Result{Body: b}, nil
}
