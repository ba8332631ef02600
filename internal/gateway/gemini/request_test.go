package gemini

import (
	"context"
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"

	"github.com/tenantgate/tenantgate/internal/gateway/wire"
)

// chatCall decodes an OpenAI chat request body into a Call.
func chatCall(t *testing.T, body string, stream bool) *wire.Call {
	t.Helper()
	var r wire.ChatRequest
	if err := json.Unmarshal([]byte(body), &r); err != nil {
		t.Fatalf("bad test request: %v", err)
	}
	return &wire.Call{Op: wire.OpChat, Model: "gpt-4o", Body: []byte(body), Chat: &r, Stream: stream}
}

// embedCall decodes an OpenAI embeddings request body into a Call.
func embedCall(t *testing.T, body string) *wire.Call {
	t.Helper()
	var r wire.EmbeddingRequest
	if err := json.Unmarshal([]byte(body), &r); err != nil {
		t.Fatalf("bad test request: %v", err)
	}
	return &wire.Call{Op: wire.OpEmbedding, Model: "text-embedding-3-small", Body: []byte(body), Embedding: &r}
}

// generic decodes JSON for comparison (key order and spacing do not matter).
func generic(t *testing.T, b []byte) any {
	t.Helper()
	var v any
	if err := json.Unmarshal(b, &v); err != nil {
		t.Fatalf("not JSON: %v\n%s", err, b)
	}
	return v
}

func requestBody(t *testing.T, req *http.Request) []byte {
	t.Helper()
	b, err := io.ReadAll(req.Body)
	if err != nil {
		t.Fatalf("reading the request body: %v", err)
	}
	return b
}

var target = &wire.Target{Key: "AIza-secret", Model: "gemini-2.5-flash"}

func TestNewRequestRichChat(t *testing.T) {
	c := chatCall(t, `{
		"model": "gpt-4o",
		"messages": [
			{"role": "system", "content": "Be brief."},
			{"role": "developer", "content": [{"type": "text", "text": "Answer in French."}]},
			{"role": "user", "content": [
				{"type": "text", "text": "What is in these pictures? <b>&</b>"},
				{"type": "image_url", "image_url": {"url": "data:image/png;base64,iVBORw0KGgo="}},
				{"type": "image_url", "image_url": {"url": "https://example.com/cat.webp?size=large"}},
				{"type": "image_url", "image_url": {"url": "https://example.com/photo", "detail": "high"}}
			]},
			{"role": "assistant", "content": "Let me check.", "tool_calls": [
				{"id": "call_w", "type": "function", "function": {"name": "get_weather", "arguments": "{\"city\": \"Paris\", \"days\": [1, 2]}"}},
				{"id": "call_t", "type": "function", "function": {"name": "get_time", "arguments": ""}},
				{"id": "call_x", "type": "function", "function": {"name": "get_news", "arguments": "not json"}}
			]},
			{"role": "tool", "tool_call_id": "call_t", "content": "12:00"},
			{"role": "tool", "tool_call_id": "call_w", "content": "{\"temp\": 21, \"sky\": \"clear\"}"},
			{"role": "tool", "tool_call_id": "call_x", "content": [{"type": "text", "text": "[1,2]"}]},
			{"role": "assistant", "content": "Il fait beau."},
			{"role": "assistant", "content": null},
			{"role": "user", "content": "Merci"},
			{"role": "user", "content": "Et demain ?"}
		],
		"temperature": 0.5,
		"top_p": 0.9,
		"max_tokens": 100,
		"max_completion_tokens": 200,
		"stop": ["END", "STOP"],
		"n": 2,
		"presence_penalty": 0.1,
		"frequency_penalty": 0.2,
		"seed": 42,
		"tools": [
			{"type": "function", "function": {"name": "get_weather", "description": "Weather for a city", "parameters": {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]}}},
			{"type": "function", "function": {"name": "get_time"}}
		],
		"tool_choice": "auto",
		"response_format": {"type": "json_object"}
	}`, false)
	req, err := New().NewRequest(context.Background(), target, c)
	if err != nil {
		t.Fatalf("NewRequest: %v", err)
	}
	if got, want := req.Method+" "+req.URL.String(), "POST https://generativelanguage.googleapis.com/v1beta/models/gemini-2.5-flash:generateContent"; got != want {
		t.Errorf("request line: got %q, want %q", got, want)
	}
	want := `{
		"systemInstruction": {"parts": [{"text": "Be brief.\n\nAnswer in French."}]},
		"contents": [
			{"role": "user", "parts": [
				{"text": "What is in these pictures? <b>&</b>"},
				{"inlineData": {"mimeType": "image/png", "data": "iVBORw0KGgo="}},
				{"fileData": {"mimeType": "image/webp", "fileUri": "https://example.com/cat.webp?size=large"}},
				{"fileData": {"mimeType": "image/jpeg", "fileUri": "https://example.com/photo"}}
			]},
			{"role": "model", "parts": [
				{"text": "Let me check."},
				{"functionCall": {"name": "get_weather", "args": {"city": "Paris", "days": [1, 2]}}},
				{"functionCall": {"name": "get_time", "args": {}}},
				{"functionCall": {"name": "get_news", "args": {}}}
			]},
			{"role": "user", "parts": [
				{"functionResponse": {"name": "get_time", "response": {"content": "12:00"}}},
				{"functionResponse": {"name": "get_weather", "response": {"temp": 21, "sky": "clear"}}},
				{"functionResponse": {"name": "get_news", "response": {"content": "[1,2]"}}}
			]},
			{"role": "model", "parts": [{"text": "Il fait beau."}]},
			{"role": "user", "parts": [{"text": "Merci"}, {"text": "Et demain ?"}]}
		],
		"generationConfig": {
			"temperature": 0.5,
			"topP": 0.9,
			"maxOutputTokens": 200,
			"stopSequences": ["END", "STOP"],
			"candidateCount": 2,
			"presencePenalty": 0.1,
			"frequencyPenalty": 0.2,
			"seed": 42,
			"responseMimeType": "application/json"
		},
		"tools": [{"functionDeclarations": [
			{"name": "get_weather", "description": "Weather for a city", "parameters": {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]}},
			{"name": "get_time"}
		]}],
		"toolConfig": {"functionCallingConfig": {"mode": "AUTO"}}
	}`
	body := requestBody(t, req)
	if diff := cmp.Diff(generic(t, body), generic(t, []byte(want))); diff != "" {
		t.Errorf("body (-got +want):\n%s", diff)
	}
	if strings.Contains(string(body), `\u003c`) {
		t.Errorf("body escapes HTML: %s", body)
	}
}

func TestNewRequestOptions(t *testing.T) {
	// Each case adds fields to a one-message request and checks the parts
	// of the Gemini body they produce.
	for _, tc := range []struct {
		name  string
		msgs  string // the messages ("" for one user message)
		extra string // JSON fields after "messages"
		keys  []string
		want  string // those keys of the body
	}{
		{"no options", ``, ``, []string{"generationConfig", "toolConfig", "tools", "systemInstruction"},
			`{}`},
		{"max_tokens alone", ``, `, "max_tokens": 64, "stop": "\n\n"`, []string{"generationConfig"},
			`{"generationConfig": {"maxOutputTokens": 64, "stopSequences": ["\n\n"]}}`},
		{"zero max tokens is left out", ``, `, "max_tokens": 0, "temperature": 0`, []string{"generationConfig"},
			`{"generationConfig": {"temperature": 0}}`},
		{"tool_choice none", ``, `, "tool_choice": "none"`, []string{"toolConfig"},
			`{"toolConfig": {"functionCallingConfig": {"mode": "NONE"}}}`},
		{"tool_choice required", ``, `, "tool_choice": "required"`, []string{"toolConfig"},
			`{"toolConfig": {"functionCallingConfig": {"mode": "ANY"}}}`},
		{"tool_choice named", ``, `, "tool_choice": {"type": "function", "function": {"name": "get_weather"}}`, []string{"toolConfig"},
			`{"toolConfig": {"functionCallingConfig": {"mode": "ANY", "allowedFunctionNames": ["get_weather"]}}}`},
		{"response_format text", ``, `, "response_format": {"type": "text"}`, []string{"generationConfig"},
			`{}`},
		{"response_format json_schema", ``, `, "response_format": {"type": "json_schema", "json_schema": {"name": "answer", "strict": true, "schema": {"type": "object", "properties": {"n": {"type": "integer"}}}}}`, []string{"generationConfig"},
			`{"generationConfig": {"responseMimeType": "application/json", "responseSchema": {"type": "object", "properties": {"n": {"type": "integer"}}}}}`},
		{"response_format json_schema without schema", ``, `, "response_format": {"type": "json_schema", "json_schema": {"name": "answer"}}`, []string{"generationConfig"},
			`{"generationConfig": {"responseMimeType": "application/json"}}`},
		{"data URL not base64", `[{"role": "user", "content": [{"type": "text", "text": "hi"}, {"type": "image_url", "image_url": {"url": "data:image/svg+xml;charset=utf-8,%3Csvg%2F%3E"}}]}]`, ``, []string{"contents"},
			`{"contents": [{"role": "user", "parts": [{"text": "hi"}, {"inlineData": {"mimeType": "image/svg+xml", "data": "PHN2Zy8+"}}]}]}`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			msgs := tc.msgs
			if msgs == "" {
				msgs = `[{"role": "user", "content": "hi"}]`
			}
			req, err := New().NewRequest(context.Background(), target, chatCall(t, `{"model": "m", "messages": `+msgs+tc.extra+`}`, false))
			if err != nil {
				t.Fatalf("NewRequest: %v", err)
			}
			all := generic(t, requestBody(t, req)).(map[string]any)
			got := map[string]any{}
			for _, k := range tc.keys {
				if v, ok := all[k]; ok {
					got[k] = v
				}
			}
			if diff := cmp.Diff(got, generic(t, []byte(tc.want))); diff != "" {
				t.Errorf("body (-got +want):\n%s", diff)
			}
		})
	}
}

func TestNewRequestURLAndHeaders(t *testing.T) {
	for _, tc := range []struct {
		name    string
		base    string
		model   string
		stream  bool
		wantURL string
	}{
		{"default base", "", "gemini-2.5-flash", false,
			"https://generativelanguage.googleapis.com/v1beta/models/gemini-2.5-flash:generateContent"},
		{"models/ prefix", "", "models/gemini-2.5-flash", false,
			"https://generativelanguage.googleapis.com/v1beta/models/gemini-2.5-flash:generateContent"},
		{"trailing slash", "https://proxy.example.com/google/", "gemini-2.5-pro", false,
			"https://proxy.example.com/google/v1beta/models/gemini-2.5-pro:generateContent"},
		{"base with v1beta", "https://proxy.example.com/v1beta/", "gemini-2.5-pro", false,
			"https://proxy.example.com/v1beta/models/gemini-2.5-pro:generateContent"},
		{"base with v1", "https://proxy.example.com/v1", "gemini-2.5-pro", false,
			"https://proxy.example.com/v1/models/gemini-2.5-pro:generateContent"},
		{"streaming", "", "gemini-2.5-flash", true,
			"https://generativelanguage.googleapis.com/v1beta/models/gemini-2.5-flash:streamGenerateContent?alt=sse"},
		{"escaped model", "", "my model/v2", false,
			"https://generativelanguage.googleapis.com/v1beta/models/my%20model%2Fv2:generateContent"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			tg := &wire.Target{BaseURL: tc.base, Key: "AIza-secret", Model: tc.model,
				Headers: map[string]string{"X-Tenant": "acme", "Content-Type": "application/json; charset=utf-8"}}
			req, err := New().NewRequest(context.Background(), tg, chatCall(t, `{"model": "m", "messages": [{"role": "user", "content": "hi"}]}`, tc.stream))
			if err != nil {
				t.Fatalf("NewRequest: %v", err)
			}
			if got := req.URL.String(); got != tc.wantURL {
				t.Errorf("URL: got %q, want %q", got, tc.wantURL)
			}
			got := map[string]string{
				"X-Goog-Api-Key": req.Header.Get("x-goog-api-key"),
				"Content-Type":   req.Header.Get("content-type"),
				"X-Tenant":       req.Header.Get("x-tenant"),
				"Authorization":  req.Header.Get("authorization"),
			}
			want := map[string]string{
				"X-Goog-Api-Key": "AIza-secret",
				"Content-Type":   "application/json; charset=utf-8", // the channel's headers come last
				"X-Tenant":       "acme",
				"Authorization":  "",
			}
			if diff := cmp.Diff(got, want); diff != "" {
				t.Errorf("headers (-got +want):\n%s", diff)
			}
			if strings.Contains(req.URL.String(), "secret") {
				t.Errorf("the key is in the URL: %s", req.URL)
			}
		})
	}
}

func TestNewRequestEmbeddings(t *testing.T) {
	for _, tc := range []struct {
		name, body, want string
	}{
		{"one string", `{"model": "e", "input": "hello"}`,
			`{"requests": [{"model": "models/gemini-embedding-001", "content": {"parts": [{"text": "hello"}]}}]}`},
		{"several with dimensions", `{"model": "e", "input": ["a", "b"], "dimensions": 768, "encoding_format": "float"}`,
			`{"requests": [
				{"model": "models/gemini-embedding-001", "content": {"parts": [{"text": "a"}]}, "outputDimensionality": 768},
				{"model": "models/gemini-embedding-001", "content": {"parts": [{"text": "b"}]}, "outputDimensionality": 768}
			]}`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			tg := &wire.Target{Key: "k", Model: "models/gemini-embedding-001"}
			req, err := New().NewRequest(context.Background(), tg, embedCall(t, tc.body))
			if err != nil {
				t.Fatalf("NewRequest: %v", err)
			}
			if got, want := req.URL.String(), "https://generativelanguage.googleapis.com/v1beta/models/gemini-embedding-001:batchEmbedContents"; got != want {
				t.Errorf("URL: got %q, want %q", got, want)
			}
			if diff := cmp.Diff(generic(t, requestBody(t, req)), generic(t, []byte(tc.want))); diff != "" {
				t.Errorf("body (-got +want):\n%s", diff)
			}
		})
	}
}

func TestNewRequestRefusals(t *testing.T) {
	chat := func(messages string, extra ...string) string {
		return `{"model": "m", "messages": ` + messages + strings.Join(extra, "") + `}`
	}
	user := `[{"role": "user", "content": "hi"}]`
	for _, tc := range []struct {
		name    string
		call    func(t *testing.T) *wire.Call
		model   string
		wantErr string
		wantIs  error
	}{
		{"content not string or parts", func(t *testing.T) *wire.Call {
			return chatCall(t, chat(`[{"role": "user", "content": 42}]`), false)
		}, "", "messages[0]: content must be a string", wire.ErrBadContent},
		{"only system messages", func(t *testing.T) *wire.Call {
			return chatCall(t, chat(`[{"role": "system", "content": "You are helpful."}]`), false)
		}, "", "at least one non-empty user, assistant or tool message", nil},
		{"no messages", func(t *testing.T) *wire.Call {
			return chatCall(t, chat(`[]`), false)
		}, "", "at least one non-empty", nil},
		{"image in system message", func(t *testing.T) *wire.Call {
			return chatCall(t, chat(`[{"role": "system", "content": [{"type": "image_url", "image_url": {"url": "https://x.example/a.png"}}]}, {"role": "user", "content": "hi"}]`), false)
		}, "", "messages[0].content[0]: system messages may only contain text parts", nil},
		{"audio part", func(t *testing.T) *wire.Call {
			return chatCall(t, chat(`[{"role": "user", "content": [{"type": "input_audio", "input_audio": {"data": "AAA", "format": "wav"}}]}]`), false)
		}, "", `messages[0].content[0]: content part type "input_audio" is not supported by Gemini`, nil},
		{"ftp image", func(t *testing.T) *wire.Call {
			return chatCall(t, chat(`[{"role": "user", "content": [{"type": "image_url", "image_url": {"url": "ftp://x.example/a.png"}}]}]`), false)
		}, "", "image_url must be an http(s) URL or a data: URL", nil},
		{"malformed data URL", func(t *testing.T) *wire.Call {
			return chatCall(t, chat(`[{"role": "user", "content": [{"type": "image_url", "image_url": {"url": "data:image/png;base64"}}]}]`), false)
		}, "", "malformed data: URL", nil},
		{"data URL without media type", func(t *testing.T) *wire.Call {
			return chatCall(t, chat(`[{"role": "user", "content": [{"type": "image_url", "image_url": {"url": "data:;base64,AAAA"}}]}]`), false)
		}, "", "has no media type", nil},
		{"tool result for an unknown call", func(t *testing.T) *wire.Call {
			return chatCall(t, chat(`[{"role": "user", "content": "hi"}, {"role": "tool", "tool_call_id": "call_404", "content": "x"}]`), false)
		}, "", `messages[1]: tool_call_id "call_404" matches no tool call`, nil},
		{"unknown role", func(t *testing.T) *wire.Call {
			return chatCall(t, chat(`[{"role": "critic", "content": "hi"}]`), false)
		}, "", `messages[0]: role "critic" is not supported`, nil},
		{"response_format type", func(t *testing.T) *wire.Call {
			return chatCall(t, chat(user, `, "response_format": {"type": "xml"}`), false)
		}, "", `response_format type "xml" is not supported`, nil},
		{"tool_choice string", func(t *testing.T) *wire.Call {
			return chatCall(t, chat(user, `, "tool_choice": "sometimes"`), false)
		}, "", `tool_choice "sometimes" is not supported`, nil},
		{"tool_choice object", func(t *testing.T) *wire.Call {
			return chatCall(t, chat(user, `, "tool_choice": {"type": "function"}`), false)
		}, "", `tool_choice must be`, nil},
		{"non-function tool", func(t *testing.T) *wire.Call {
			return chatCall(t, chat(user, `, "tools": [{"type": "code_interpreter", "function": {"name": "x"}}]`), false)
		}, "", `tools[0]: tool type "code_interpreter" is not supported`, nil},
		{"token array embeddings", func(t *testing.T) *wire.Call {
			return embedCall(t, `{"model": "e", "input": [[1, 2, 3]]}`)
		}, "", "token arrays are not supported by Gemini embedding models", nil},
		{"base64 embeddings", func(t *testing.T) *wire.Call {
			return embedCall(t, `{"model": "e", "input": "x", "encoding_format": "base64"}`)
		}, "", `encoding_format "base64" is not supported`, nil},
		{"empty embeddings input", func(t *testing.T) *wire.Call {
			return embedCall(t, `{"model": "e", "input": []}`)
		}, "", "input must not be empty", nil},
		{"empty string embeddings input", func(t *testing.T) *wire.Call {
			return embedCall(t, `{"model": "e", "input": ["a", ""]}`)
		}, "", "input[1] must not be an empty string", nil},
		{"no upstream model", func(t *testing.T) *wire.Call {
			return chatCall(t, chat(user), false)
		}, "models/", "no upstream model name", nil},
		{"legacy completion without chat", func(t *testing.T) *wire.Call {
			return &wire.Call{Op: wire.OpCompletion, Model: "m", Body: []byte(`{}`)}
		}, "", `does not serve "completion" calls`, nil},
	} {
		t.Run(tc.name, func(t *testing.T) {
			tg := *target
			if tc.model != "" {
				tg.Model = tc.model
			}
			req, err := New().NewRequest(context.Background(), &tg, tc.call(t))
			if err == nil {
				t.Fatalf("NewRequest: got a request for %s, want an error containing %q", req.URL, tc.wantErr)
			}
			if !strings.Contains(err.Error(), tc.wantErr) {
				t.Errorf("error: got %q, want it to contain %q", err, tc.wantErr)
			}
			if tc.wantIs != nil && !errors.Is(err, tc.wantIs) {
				t.Errorf("error: got %v, want it to wrap %v", err, tc.wantIs)
			}
		})
	}
}

func TestSupports(t *testing.T) {
	got := map[wire.Op]bool{}
	for _, op := range []wire.Op{wire.OpChat, wire.OpCompletion, wire.OpEmbedding} {
		got[op] = New().Supports(op)
	}
	want := map[wire.Op]bool{wire.OpChat: true, wire.OpCompletion: false, wire.OpEmbedding: true}
	if diff := cmp.Diff(got, want); diff != "" {
		t.Errorf("Supports (-got +want):\n%s", diff)
	}
}

// The gateway's output cap becomes maxOutputTokens when the client set none.
func TestNewRequestOutputCap(t *testing.T) {
	const msgs = `"messages":[{"role":"user","content":"hi"}]`
	for _, tc := range []struct {
		name      string
		client    string
		outputCap int64
		want      any
	}{
		{"gateway cap", `{` + msgs + `}`, 1000, 1000.0},
		{"client cap wins", `{` + msgs + `,"max_completion_tokens":7}`, 1000, 7.0},
		{"no cap", `{` + msgs + `}`, 0, nil},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c := chatCall(t, tc.client, false)
			c.OutputCap = tc.outputCap
			req, err := New().NewRequest(t.Context(), target, c)
			if err != nil {
				t.Fatal(err)
			}
			body, _ := generic(t, requestBody(t, req)).(map[string]any)
			gc, _ := body["generationConfig"].(map[string]any)
			if got := gc["maxOutputTokens"]; got != tc.want {
				t.Errorf("maxOutputTokens %v, want %v", got, tc.want)
			}
		})
	}
}
