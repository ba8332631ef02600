// Package gemini is the upstream adapter for Google's Gemini API (the
// generativelanguage REST API, v1beta): it translates the gateway's
// OpenAI-shaped chat completion and embedding calls into generateContent,
// streamGenerateContent (server-sent events) and batchEmbedContents
// requests, and Gemini's answers back into OpenAI's shape.
package gemini

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"strings"

	"github.com/tenantgate/tenantgate/internal/gateway/wire"
)

// defaultBaseURL is used when the channel configures no base URL.
const defaultBaseURL = "https://generativelanguage.googleapis.com"

// Provider speaks Gemini's wire format. It is stateless and safe for
// concurrent use.
type Provider struct{}

var _ wire.Provider = (*Provider)(nil)

// New returns the Gemini adapter.
func New() *Provider { return &Provider{} }

// Supports reports chat and embeddings; Gemini has no legacy completions
// endpoint (the gateway turns those into chat calls).
func (*Provider) Supports(op wire.Op) bool {
	return op == wire.OpChat || op == wire.OpEmbedding
}

// NewRequest builds the generateContent, streamGenerateContent or
// batchEmbedContents request for c. Its errors describe what the client
// sent that Gemini cannot carry.
func (*Provider) NewRequest(ctx context.Context, t *wire.Target, c *wire.Call) (*http.Request, error) {
	model := strings.TrimPrefix(strings.TrimSpace(t.Model), "models/")
	if model == "" {
		return nil, errors.New("the Gemini channel has no upstream model name")
	}
	var (
		body   any
		method string
		err    error
	)
	switch {
	case c.Op == wire.OpEmbedding:
		if c.Embedding == nil {
			return nil, errors.New("missing embeddings request")
		}
		body, err = embedBody(model, c.Embedding)
		method = "batchEmbedContents"
	case c.Chat != nil:
		body, err = chatBody(c.CappedChat())
		method = "generateContent"
		if c.Stream {
			method = "streamGenerateContent"
		}
	default:
		return nil, fmt.Errorf("the Gemini adapter does not serve %q calls", c.Op)
	}
	if err != nil {
		return nil, err
	}
	raw, err := marshal(body)
	if err != nil {
		return nil, fmt.Errorf("gemini: encoding the request: %w", err)
	}
	u := endpoint(t.BaseURL, model, method)
	if method == "streamGenerateContent" {
		u += "?alt=sse"
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, u, bytes.NewReader(raw))
	if err != nil {
		return nil, fmt.Errorf("gemini: building the request: %w", err)
	}
	req.Header.Set("x-goog-api-key", t.Key)
	req.Header.Set("content-type", "application/json")
	for k, v := range t.Headers {
		req.Header.Set(k, v)
	}
	return req, nil
}

// endpoint is {base}[/v1beta]/models/{model}:{method}.
func endpoint(base, model, method string) string {
	base = strings.TrimRight(strings.TrimSpace(base), "/")
	if base == "" {
		base = defaultBaseURL
	}
	if !strings.HasSuffix(base, "/v1beta") && !strings.HasSuffix(base, "/v1") {
		base += "/v1beta"
	}
	return base + "/models/" + url.PathEscape(model) + ":" + method
}

// marshal encodes v without escaping <, > and & (the upstream receives the
// client's text as written).
func marshal(v any) ([]byte, error) {
	var b bytes.Buffer
	enc := json.NewEncoder(&b)
	enc.SetEscapeHTML(false)
	if err := enc.Encode(v); err != nil {
		return nil, err
	}
	return bytes.TrimRight(b.Bytes(), "\n"), nil
}

// ErrorMessage returns the message of a Gemini error body,
// {"error":{"code":…,"message":…,"status":…}}, also when it comes wrapped
// in a one-element array; "" when there is none.
func (*Provider) ErrorMessage(body []byte) string {
	if e := parseError(body); e != nil {
		return e.Message
	}
	return ""
}

// apiError is Gemini's error object.
type apiError struct {
	Code    int    `json:"code"`
	Message string `json:"message"`
	Status  string `json:"status"`
}

func (e *apiError) Error() string {
	var b strings.Builder
	b.WriteString("Gemini error")
	if e.Code != 0 {
		fmt.Fprintf(&b, " %d", e.Code)
	}
	if e.Status != "" {
		b.WriteString(" " + e.Status)
	}
	if e.Message != "" {
		b.WriteString(": " + e.Message)
	}
	return b.String()
}

type errorBody struct {
	Error *apiError `json:"error"`
}

// parseError finds the error object of body, or nil.
func parseError(body []byte) *apiError {
	body = bytes.TrimSpace(body)
	if len(body) == 0 {
		return nil
	}
	if body[0] == '[' {
		var many []errorBody
		if json.Unmarshal(body, &many) != nil || len(many) == 0 {
			return nil
		}
		return many[0].Error
	}
	var one errorBody
	if json.Unmarshal(body, &one) != nil {
		return nil
	}
	return one.Error
}

// randomHex is 24 random hex digits, for answer and tool call ids.
func randomHex() string {
	var b [12]byte
	_, _ = rand.Read(b[:])
	return hex.EncodeToString(b[:])
}

// chatID is the OpenAI id of an answer: Gemini's responseId when it sent one.
func chatID(responseID string) string {
	if responseID != "" {
		return "chatcmpl-" + responseID
	}
	return "chatcmpl-" + randomHex()
}
