// Package openai relays to upstreams that speak OpenAI's own API: OpenAI
// itself, Azure OpenAI, and OpenAI-compatible servers (vLLM, Ollama, LM
// Studio, …). The client's body is forwarded as sent, with only the model
// replaced and, for streams, usage requested, so fields the gateway does not
// know still reach the upstream.
package openai

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strconv"
	"strings"

	"github.com/tenantgate/tenantgate/internal/gateway/wire"
)

// Flavor tells the upstreams apart.
type Flavor int

// The flavours.
const (
	OpenAI     Flavor = iota // api.openai.com: Authorization: Bearer
	Azure                    // Azure OpenAI: deployments in the path, api-key header, api-version query
	Compatible               // any OpenAI-compatible server; the key is optional
)

// DefaultAzureAPIVersion is used when a channel sets none.
const DefaultAzureAPIVersion = "2024-10-21"

// Provider is one flavour of OpenAI upstream.
type Provider struct{ flavor Flavor }

var _ wire.Provider = (*Provider)(nil)

// New returns the adapter for a flavour.
func New(f Flavor) *Provider { return &Provider{flavor: f} }

// Passthrough marks adapters whose upstream errors are already in OpenAI's
// shape, so the gateway forwards them as they are.
func (p *Provider) Passthrough() {}

// Supports implements wire.Provider: every operation.
func (p *Provider) Supports(wire.Op) bool { return true }

var paths = map[wire.Op]string{wire.OpChat: "/chat/completions", wire.OpCompletion: "/completions", wire.OpEmbedding: "/embeddings"}

// NewRequest implements wire.Provider.
func (p *Provider) NewRequest(ctx context.Context, t *wire.Target, c *wire.Call) (*http.Request, error) {
	path, ok := paths[c.Op]
	if !ok {
		return nil, fmt.Errorf("unsupported operation %q", c.Op)
	}
	body, err := rewrite(c.Body, t.Model, c.Stream && c.Op != wire.OpEmbedding, p.capField(c.Op, t.APIVersion), c.OutputCap, c.Op == wire.OpChat && p.flavor == Compatible)
	if err != nil {
		return nil, err
	}
	base := strings.TrimRight(t.BaseURL, "/")
	var u string
	switch p.flavor {
	case Azure:
		v := t.APIVersion
		if v == "" {
			v = DefaultAzureAPIVersion
		}
		u = base + "/openai/deployments/" + url.PathEscape(t.Model) + path + "?api-version=" + url.QueryEscape(v)
	default:
		if base == "" {
			base = "https://api.openai.com/v1"
		}
		u = base + path
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, u, bytes.NewReader(body))
	if err != nil {
		return nil, err
	}
	req.Header.Set("Content-Type", "application/json")
	if c.Stream {
		req.Header.Set("Accept", "text/event-stream")
	}
	switch {
	case p.flavor == Azure:
		req.Header.Set("api-key", t.Key)
	case t.Key != "":
		req.Header.Set("Authorization", "Bearer "+t.Key)
	}
	for k, v := range t.Headers {
		req.Header.Set(k, v)
	}
	return req, nil
}

// capField is the field an output cap is sent in: max_completion_tokens for
// OpenAI's and Azure's chat (their reasoning models refuse max_tokens; Azure
// knows it from api-version 2024-09-01), max_tokens for completions and for
// compatible servers (which all know it).
func (p *Provider) capField(op wire.Op, apiVersion string) string {
	switch {
	case op == wire.OpEmbedding:
		return ""
	case op != wire.OpChat || p.flavor == Compatible:
		return "max_tokens"
	case p.flavor == Azure && apiVersion != "" && apiVersion < "2024-09-01":
		return "max_tokens"
	}
	return "max_completion_tokens"
}

// rewrite replaces the model, caps the output at outputCap (in capField)
// when the client set no cap (mirror: a chat cap the client set only as
// max_completion_tokens is also sent as max_tokens), and for streams asks for usage in the stream,
// leaving every other field exactly as the client sent it.
func rewrite(body []byte, model string, stream bool, capField string, outputCap int64, mirror bool) ([]byte, error) {
	var m map[string]json.RawMessage
	if err := json.Unmarshal(body, &m); err != nil {
		return nil, fmt.Errorf("the body is not a JSON object: %w", err)
	}
	mb, _ := json.Marshal(model)
	m["model"] = mb
	isSet := func(k string) bool { v, ok := m[k]; return ok && string(v) != "null" }
	switch {
	case capField == "":
	case outputCap > 0: // the gateway found no cap the client set: send the one it reserved
		m[capField] = json.RawMessage(strconv.FormatInt(outputCap, 10))
	case mirror && isSet("max_completion_tokens") && !isSet("max_tokens"):
		// A compatible server may know only max_tokens: send the client's cap there too.
		m["max_tokens"] = m["max_completion_tokens"]
	}
	if stream {
		opts := map[string]json.RawMessage{}
		if raw, ok := m["stream_options"]; ok && string(raw) != "null" {
			if err := json.Unmarshal(raw, &opts); err != nil {
				return nil, fmt.Errorf("stream_options must be an object")
			}
		}
		opts["include_usage"] = json.RawMessage("true")
		m["stream_options"], _ = json.Marshal(opts)
	}
	return json.Marshal(m)
}

type usageOnly struct {
	Choices []json.RawMessage `json:"choices"`
	Usage   *wire.UsageObject `json:"usage"`
	Data    []json.RawMessage `json:"data"` // embeddings
	Error   *upstreamError    `json:"error"`
}

type upstreamError struct {
	Message string `json:"message"`
}

// Decode implements wire.Provider: the body is the client's answer as is.
func (p *Provider) Decode(c *wire.Call, _ *wire.Target, body []byte) (*wire.Result, error) {
	var u usageOnly
	if err := json.Unmarshal(body, &u); err != nil {
		return nil, fmt.Errorf("upstream answered with invalid JSON: %w", err)
	}
	if u.Error != nil {
		return nil, fmt.Errorf("upstream error: %s", u.Error.Message)
	}
	return &wire.Result{Body: body, Usage: u.Usage.Usage(), HasUsage: u.Usage != nil}, nil
}

// Stream implements wire.Provider: chunks pass through unchanged; the final
// usage chunk (no choices) is marked so the gateway can drop it for clients
// that did not ask for it.
func (p *Provider) Stream(_ *wire.Call, _ *wire.Target, body io.Reader, emit wire.Emit) (wire.Usage, bool, error) {
	var (
		usage wire.Usage
		seen  bool
		done  = fmt.Errorf("done")
	)
	err := wire.ReadSSE(body, func(_ string, data []byte) error {
		data = bytes.TrimSpace(data)
		if len(data) == 0 {
			return nil
		}
		if string(data) == "[DONE]" {
			return done
		}
		only := false
		if hasObject(data, `"usage"`) || bytes.Contains(data, []byte(`"error"`)) {
			var u usageOnly
			if err := json.Unmarshal(data, &u); err != nil {
				return fmt.Errorf("upstream sent an invalid chunk: %w", err)
			}
			if u.Error != nil {
				return fmt.Errorf("upstream error mid-stream: %s", u.Error.Message)
			}
			if u.Usage != nil {
				usage, seen = u.Usage.Usage(), true
				only = len(u.Choices) == 0
			}
		}
		return emit(bytes.Clone(data), only)
	})
	if err == done {
		err = nil
	}
	return usage, seen, err
}

// hasObject reports whether key is followed by an object (not null) in
// data: chunks of a stream with include_usage carry "usage":null until the
// last, and only that one needs decoding.
func hasObject(data []byte, key string) bool {
	for rest := data; ; {
		i := bytes.Index(rest, []byte(key))
		if i < 0 {
			return false
		}
		rest = rest[i+len(key):]
		v := bytes.TrimLeft(rest, " \t\r\n")
		if len(v) > 0 && v[0] == ':' {
			if v = bytes.TrimLeft(v[1:], " \t\r\n"); len(v) > 0 && v[0] == '{' {
				return true
			}
		}
	}
}

// ErrorMessage implements wire.Provider.
func (p *Provider) ErrorMessage(body []byte) string {
	var e struct {
		Error json.RawMessage `json:"error"`
	}
	if json.Unmarshal(body, &e) != nil || len(e.Error) == 0 {
		return ""
	}
	var obj upstreamError
	if json.Unmarshal(e.Error, &obj) == nil && obj.Message != "" {
		return obj.Message
	}
	var s string // some compatible servers answer {"error": "text"}
	_ = json.Unmarshal(e.Error, &s)
	return s
}
