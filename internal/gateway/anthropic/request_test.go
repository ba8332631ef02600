package anthropic

import (
	"net/http"
	"testing"

	"github.com/google/go-cmp/cmp"
	"github.com/google/go-cmp/cmp/cmpopts"
	"github.com/tenantgate/tenantgate/internal/gateway/wire"
)

func TestSupports(t *testing.T) {
	p := New()
	for _, tc := range []struct {
		op   wire.Op
		want bool
	}{
		{wire.OpChat, true},
		{wire.OpCompletion, false},
		{wire.OpEmbedding, false},
	} {
		if got := p.Supports(tc.op); got != tc.want {
			t.Errorf("Supports(%q) = %v, want %v", tc.op, got, tc.want)
		}
	}
}

func TestNewRequestURLAndHeaders(t *testing.T) {
	tests := []struct {
		name    string
		target  wire.Target
		stream  bool
		wantURL string
		want    map[string]string // headers; "" means absent
	}{
		{
			name:    "defaults",
			target:  wire.Target{Key: "sk-1", Model: "m"},
			wantURL: "https://api.anthropic.com/v1/messages",
			want:    map[string]string{"X-Api-Key": "sk-1", "Anthropic-Version": "2023-06-01", "Content-Type": "application/json", "Accept": ""},
		},
		{
			name:    "trailing slash, streaming",
			target:  wire.Target{BaseURL: "https://proxy.example/", Key: "sk-2", Model: "m"},
			stream:  true,
			wantURL: "https://proxy.example/v1/messages",
			want:    map[string]string{"X-Api-Key": "sk-2", "Accept": "text/event-stream"},
		},
		{
			name:    "base ends in /v1",
			target:  wire.Target{BaseURL: "https://proxy.example/anthropic/v1", Key: "k", Model: "m"},
			wantURL: "https://proxy.example/anthropic/v1/messages",
		},
		{
			name:    "base ends in /v1/",
			target:  wire.Target{BaseURL: "https://proxy.example/v1/", Key: "k", Model: "m"},
			wantURL: "https://proxy.example/v1/messages",
		},
		{
			name: "version and channel headers",
			target: wire.Target{Key: "k", Model: "m", APIVersion: "2024-01-01",
				Headers: map[string]string{"anthropic-beta": "prompt-caching-2024-07-31", "x-api-key": "override"}},
			wantURL: "https://api.anthropic.com/v1/messages",
			want:    map[string]string{"Anthropic-Version": "2024-01-01", "Anthropic-Beta": "prompt-caching-2024-07-31", "X-Api-Key": "override"},
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			c := chatCall(t, `{"model":"claude","messages":[{"role":"user","content":"hi"}]}`)
			c.Stream = tc.stream
			req, err := New().NewRequest(t.Context(), &tc.target, c)
			if err != nil {
				t.Fatalf("NewRequest: %v", err)
			}
			if got := req.Method; got != http.MethodPost {
				t.Errorf("method = %q, want POST", got)
			}
			if diff := cmp.Diff(req.URL.String(), tc.wantURL); diff != "" {
				t.Errorf("URL (-got +want):\n%s", diff)
			}
			got := map[string]string{}
			for k := range tc.want {
				got[k] = req.Header.Get(k)
			}
			if diff := cmp.Diff(got, tc.want, cmpopts.EquateEmpty()); diff != "" {
				t.Errorf("headers (-got +want):\n%s", diff)
			}
		})
	}
}

// The translation of a request that uses every translated feature.
func TestNewRequestRichTranslation(t *testing.T) {
	client := `{
		"model": "claude",
		"messages": [
			{"role": "system", "content": "You are terse."},
			{"role": "user", "content": "Hi"},
			{"role": "developer", "content": [{"type": "text", "text": "Answer in French."}]},
			{"role": "user", "content": [
				{"type": "text", "text": "What is in these?"},
				{"type": "image_url", "image_url": {"url": "data:image/png;base64,iVBORw0KGgo="}},
				{"type": "image_url", "image_url": {"url": "https://example.com/cat.jpg", "detail": "high"}}
			]},
			{"role": "assistant", "content": null, "tool_calls": [
				{"id": "call_1", "type": "function", "function": {"name": "get_weather", "arguments": "{\"city\": \"Paris\"}"}},
				{"id": "call_2", "type": "function", "function": {"name": "get_time", "arguments": ""}},
				{"id": "call_3", "type": "function", "function": {"name": "get_time", "arguments": "not json"}}
			]},
			{"role": "tool", "tool_call_id": "call_1", "content": "18°C"},
			{"role": "tool", "tool_call_id": "call_2", "content": [{"type": "text", "text": "12:00"}]},
			{"role": "tool", "tool_call_id": "call_3", "content": "13:00"},
			{"role": "user", "content": "Thanks"},
			{"role": "assistant", "content": "De rien."}
		],
		"max_tokens": 300,
		"temperature": 1.5,
		"top_p": 0.9,
		"stop": "END",
		"user": "user-42",
		"stream": true,
		"tools": [
			{"type": "function", "function": {"name": "get_weather", "description": "Weather of a city",
				"parameters": {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]}}},
			{"type": "function", "function": {"name": "get_time"}}
		],
		"tool_choice": "required",
		"presence_penalty": 0.5,
		"seed": 7
	}`
	want := `{
		"model": "claude-sonnet-4-5",
		"system": "You are terse.\n\nAnswer in French.",
		"messages": [
			{"role": "user", "content": [
				{"type": "text", "text": "Hi"},
				{"type": "text", "text": "What is in these?"},
				{"type": "image", "source": {"type": "base64", "media_type": "image/png", "data": "iVBORw0KGgo="}},
				{"type": "image", "source": {"type": "url", "url": "https://example.com/cat.jpg"}}
			]},
			{"role": "assistant", "content": [
				{"type": "tool_use", "id": "call_1", "name": "get_weather", "input": {"city": "Paris"}},
				{"type": "tool_use", "id": "call_2", "name": "get_time", "input": {}},
				{"type": "tool_use", "id": "call_3", "name": "get_time", "input": {}}
			]},
			{"role": "user", "content": [
				{"type": "tool_result", "tool_use_id": "call_1", "content": "18°C"},
				{"type": "tool_result", "tool_use_id": "call_2", "content": "12:00"},
				{"type": "tool_result", "tool_use_id": "call_3", "content": "13:00"},
				{"type": "text", "text": "Thanks"}
			]},
			{"role": "assistant", "content": [{"type": "text", "text": "De rien."}]}
		],
		"max_tokens": 300,
		"temperature": 1,
		"top_p": 0.9,
		"stop_sequences": ["END"],
		"metadata": {"user_id": "user-42"},
		"stream": true,
		"tools": [
			{"name": "get_weather", "description": "Weather of a city",
				"input_schema": {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]}},
			{"name": "get_time", "input_schema": {"type": "object", "properties": {}}}
		],
		"tool_choice": {"type": "any"}
	}`
	req, err := New().NewRequest(t.Context(), testTarget(""), chatCall(t, client))
	if err != nil {
		t.Fatalf("NewRequest: %v", err)
	}
	if diff := cmp.Diff(requestBody(t, req), parseJSON(t, want)); diff != "" {
		t.Errorf("body (-got +want):\n%s", diff)
	}
}

// One feature at a time: the listed top-level fields of the body.
func TestNewRequestFields(t *testing.T) {
	const tools = `"tools":[{"type":"function","function":{"name":"f"}}]`
	const msgs = `"messages":[{"role":"user","content":"hi"}]`
	tests := []struct {
		name   string
		client string
		fields []string
		want   string // the fields present in the body
	}{
		{"max_tokens default", `{` + msgs + `}`, []string{"max_tokens", "temperature", "stream"}, `{"max_tokens":4096}`},
		{"max_tokens", `{` + msgs + `,"max_tokens":100}`, []string{"max_tokens"}, `{"max_tokens":100}`},
		{"max_completion_tokens first", `{` + msgs + `,"max_tokens":100,"max_completion_tokens":200}`, []string{"max_tokens"}, `{"max_tokens":200}`},
		{"temperature above 1", `{` + msgs + `,"temperature":2}`, []string{"temperature"}, `{"temperature":1}`},
		{"temperature below 0", `{` + msgs + `,"temperature":-0.5}`, []string{"temperature"}, `{"temperature":0}`},
		{"temperature in range", `{` + msgs + `,"temperature":0.3}`, []string{"temperature"}, `{"temperature":0.3}`},
		{"temperature 0", `{` + msgs + `,"temperature":0}`, []string{"temperature"}, `{"temperature":0}`},
		{"stop string", `{` + msgs + `,"stop":"\n\nHuman:"}`, []string{"stop_sequences"}, `{"stop_sequences":["\n\nHuman:"]}`},
		{"stop array", `{` + msgs + `,"stop":["a","","b"]}`, []string{"stop_sequences"}, `{"stop_sequences":["a","b"]}`},
		{"stop null", `{` + msgs + `,"stop":null}`, []string{"stop_sequences"}, `{}`},
		{"no system, no metadata", `{` + msgs + `}`, []string{"system", "metadata", "tools", "tool_choice"}, `{}`},
		{"tool_choice auto", `{` + msgs + `,` + tools + `,"tool_choice":"auto"}`, []string{"tool_choice"}, `{"tool_choice":{"type":"auto"}}`},
		{"tool_choice required", `{` + msgs + `,` + tools + `,"tool_choice":"required"}`, []string{"tool_choice"}, `{"tool_choice":{"type":"any"}}`},
		{"tool_choice none", `{` + msgs + `,` + tools + `,"tool_choice":"none"}`, []string{"tool_choice"}, `{"tool_choice":{"type":"none"}}`},
		{"tool_choice function", `{` + msgs + `,` + tools + `,"tool_choice":{"type":"function","function":{"name":"f"}}}`, []string{"tool_choice"}, `{"tool_choice":{"type":"tool","name":"f"}}`},
		{"tool_choice absent", `{` + msgs + `,` + tools + `}`, []string{"tool_choice"}, `{}`},
		{"tool_choice auto without tools", `{` + msgs + `,"tool_choice":"auto"}`, []string{"tool_choice", "tools"}, `{}`},
		{"system only at the end", `{"messages":[{"role":"user","content":"hi"},{"role":"system","content":"late"}]}`, []string{"system"}, `{"system":"late"}`},
		{"url-encoded data URL", `{"messages":[{"role":"user","content":[{"type":"image_url","image_url":{"url":"data:image/svg+xml,%3Csvg%2F%3E"}}]}]}`,
			[]string{"messages"}, `{"messages":[{"role":"user","content":[{"type":"image","source":{"type":"base64","media_type":"image/svg+xml","data":"PHN2Zy8+"}}]}]}`},
		{"empty assistant left out", `{"messages":[{"role":"user","content":"a"},{"role":"assistant","content":""},{"role":"user","content":"b"}]}`,
			[]string{"messages"}, `{"messages":[{"role":"user","content":[{"type":"text","text":"a"},{"type":"text","text":"b"}]}]}`},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			req, err := New().NewRequest(t.Context(), testTarget(""), chatCall(t, tc.client))
			if err != nil {
				t.Fatalf("NewRequest: %v", err)
			}
			body := requestBody(t, req).(map[string]any)
			got := map[string]any{}
			for _, f := range tc.fields {
				if v, ok := body[f]; ok {
					got[f] = v
				}
			}
			if diff := cmp.Diff(got, parseJSON(t, tc.want)); diff != "" {
				t.Errorf("fields %v (-got +want):\n%s", tc.fields, diff)
			}
		})
	}
}

func TestNewRequestRefusals(t *testing.T) {
	const user = `{"role":"user","content":"hi"}`
	tests := []struct {
		name   string
		client string
		want   string
	}{
		{"n > 1", `{"messages":[` + user + `],"n":2}`, "n > 1 is not supported by Anthropic models"},
		{"content a number", `{"messages":[{"role":"user","content":42}]}`, "messages[0]: " + wire.ErrBadContent.Error()},
		{"content an object", `{"messages":[` + user + `,{"role":"assistant","content":{"text":"x"}}]}`, "messages[1]: " + wire.ErrBadContent.Error()},
		{"only system messages", `{"messages":[{"role":"system","content":"be nice"},{"role":"developer","content":"really"}]}`,
			"Anthropic models need at least one user or assistant message besides system messages"},
		{"no messages", `{"messages":[]}`, "Anthropic models need at least one user or assistant message besides system messages"},
		{"unknown role", `{"messages":[{"role":"function","content":"x"}]}`, `messages[0]: role "function" is not supported by Anthropic models`},
		{"audio part", `{"messages":[{"role":"user","content":[{"type":"input_audio"}]}]}`, `messages[0]: content part type "input_audio" is not supported by Anthropic models`},
		{"image in system", `{"messages":[{"role":"system","content":[{"type":"image_url","image_url":{"url":"https://x/y.png"}}]},` + user + `]}`,
			`messages[0]: system messages can only contain text for Anthropic models, not "image_url" parts`},
		{"ftp image", `{"messages":[{"role":"user","content":[{"type":"image_url","image_url":{"url":"ftp://x/y.png"}}]}]}`,
			"messages[0]: image_url must be an http(s) URL or a data: URL"},
		{"data URL without media type", `{"messages":[{"role":"user","content":[{"type":"image_url","image_url":{"url":"data:;base64,AAAA"}}]}]}`,
			"messages[0]: image data URL has no media type"},
		{"tool without id", `{"messages":[` + user + `,{"role":"tool","content":"x"}]}`, "messages[1]: tool message without tool_call_id"},
		{"bad tool_choice", `{"messages":[` + user + `],"tools":[{"type":"function","function":{"name":"f"}}],"tool_choice":"sometimes"}`,
			`tool_choice must be "none", "auto", "required" or {"type":"function","function":{"name":"…"}}`},
		{"required without tools", `{"messages":[` + user + `],"tool_choice":"required"}`, "tool_choice requires tools"},
		{"non-function tool", `{"messages":[` + user + `],"tools":[{"type":"custom","function":{"name":"f"}}]}`, `tools[0]: tool type "custom" is not supported by Anthropic models`},
		{"negative max_tokens", `{"messages":[` + user + `],"max_tokens":-1}`, "max_tokens must be positive"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			req, err := New().NewRequest(t.Context(), testTarget(""), chatCall(t, tc.client))
			if err == nil {
				t.Fatalf("NewRequest gave a request for %s, want error %q", req.URL, tc.want)
			}
			if diff := cmp.Diff(err.Error(), tc.want); diff != "" {
				t.Errorf("error (-got +want):\n%s", diff)
			}
		})
	}
	t.Run("no chat", func(t *testing.T) {
		_, err := New().NewRequest(t.Context(), testTarget(""), &wire.Call{Op: wire.OpEmbedding, Embedding: &wire.EmbeddingRequest{}})
		if err == nil {
			t.Fatal("NewRequest accepted an embeddings call")
		}
	})
}

// The gateway's output cap replaces the adapter's own default when the
// client set none, and never a cap the client set.
func TestNewRequestOutputCap(t *testing.T) {
	const msgs = `"messages":[{"role":"user","content":"hi"}]`
	for _, tc := range []struct {
		name      string
		client    string
		outputCap int64
		want      float64
	}{
		{"gateway cap", `{` + msgs + `}`, 1000, 1000},
		{"client cap wins", `{` + msgs + `,"max_tokens":7}`, 1000, 7},
		{"no cap at all", `{` + msgs + `}`, 0, 4096},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c := chatCall(t, tc.client)
			c.OutputCap = tc.outputCap
			req, err := New().NewRequest(t.Context(), testTarget(""), c)
			if err != nil {
				t.Fatal(err)
			}
			got := requestBody(t, req).(map[string]any)["max_tokens"]
			if got != tc.want {
				t.Errorf("max_tokens %v, want %v", got, tc.want)
			}
			if c.Chat.MaxTokens != nil && tc.client == `{`+msgs+`}` {
				t.Error("the call's own request was changed")
			}
		})
	}
}
