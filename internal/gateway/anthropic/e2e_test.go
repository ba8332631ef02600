package anthropic

import (
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/tenantgate/tenantgate/internal/gateway/wire"
)

// received is what the fake Anthropic saw of a request.
type received struct {
	Method, Path string
	Headers      map[string]string
	Body         any
}

var checkedHeaders = []string{"X-Api-Key", "Anthropic-Version", "Content-Type", "Accept", "Anthropic-Beta"}

// fakeAnthropic records each request on got, then answers with answer.
func fakeAnthropic(t *testing.T, answer func(w http.ResponseWriter)) (*httptest.Server, <-chan received) {
	t.Helper()
	got := make(chan received, 1)
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		b, err := io.ReadAll(r.Body)
		var body any
		if err == nil {
			err = json.Unmarshal(b, &body)
		}
		if err != nil {
			body = "unreadable body: " + err.Error()
		}
		h := map[string]string{}
		for _, k := range checkedHeaders {
			h[k] = r.Header.Get(k)
		}
		got <- received{Method: r.Method, Path: r.URL.Path, Headers: h, Body: body}
		answer(w)
	}))
	t.Cleanup(srv.Close)
	return srv, got
}

const e2eClient = `{
	"model": "claude",
	"messages": [
		{"role": "system", "content": "Use tools when useful."},
		{"role": "user", "content": "What is the weather like in San Francisco?"}
	],
	"tools": [{"type": "function", "function": {"name": "get_weather", "description": "Get the current weather in a given location",
		"parameters": {"type": "object", "properties": {"location": {"type": "string"}}, "required": ["location"]}}}],
	"tool_choice": "auto",
	"max_tokens": 1024%s
}`

func e2eWantBody(stream bool) any {
	m := map[string]any{
		"model":      "claude-sonnet-4-5",
		"system":     "Use tools when useful.",
		"max_tokens": 1024.0,
		"messages": []any{map[string]any{"role": "user", "content": []any{
			map[string]any{"type": "text", "text": "What is the weather like in San Francisco?"}}}},
		"tools": []any{map[string]any{"name": "get_weather", "description": "Get the current weather in a given location",
			"input_schema": map[string]any{"type": "object", "properties": map[string]any{"location": map[string]any{"type": "string"}}, "required": []any{"location"}}}},
		"tool_choice": map[string]any{"type": "auto"},
	}
	if stream {
		m["stream"] = true
	}
	return m
}

func TestEndToEndNonStreaming(t *testing.T) {
	const answer = `{"id":"msg_01Aq9w938a90dw8q","type":"message","role":"assistant","model":"claude-sonnet-4-5-20250929",
		"content":[{"type":"text","text":"I'll check the weather."},
			{"type":"tool_use","id":"toolu_01A09q90qw90lq917835lq9","name":"get_weather","input":{"location":"San Francisco, CA"}}],
		"stop_reason":"tool_use","stop_sequence":null,
		"usage":{"input_tokens":12,"cache_creation_input_tokens":0,"cache_read_input_tokens":400,"output_tokens":30}}`
	srv, got := fakeAnthropic(t, func(w http.ResponseWriter) {
		w.Header().Set("content-type", "application/json")
		io.WriteString(w, answer)
	})

	p := New()
	target := &wire.Target{BaseURL: srv.URL + "/v1/", Key: "sk-ant-e2e", Model: "claude-sonnet-4-5",
		Headers: map[string]string{"anthropic-beta": "token-efficient-tools-2025-02-19"}}
	c := chatCall(t, strings.Replace(e2eClient, "%s", "", 1))
	req, err := p.NewRequest(t.Context(), target, c)
	if err != nil {
		t.Fatalf("NewRequest: %v", err)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatalf("sending: %v", err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatalf("reading: %v", err)
	}

	want := received{Method: "POST", Path: "/v1/messages", Headers: map[string]string{
		"X-Api-Key": "sk-ant-e2e", "Anthropic-Version": "2023-06-01", "Content-Type": "application/json",
		"Accept": "", "Anthropic-Beta": "token-efficient-tools-2025-02-19"}, Body: e2eWantBody(false)}
	if diff := cmp.Diff(<-got, want); diff != "" {
		t.Errorf("Anthropic received (-got +want):\n%s", diff)
	}

	res, err := p.Decode(c, target, body)
	if err != nil {
		t.Fatalf("Decode: %v", err)
	}
	wantAnswer := `{"id":"chatcmpl-msg_01Aq9w938a90dw8q","object":"chat.completion","created":1700000000,"model":"claude",
		"choices":[{"index":0,"message":{"role":"assistant","content":"I'll check the weather.","refusal":null,"tool_calls":[
			{"id":"toolu_01A09q90qw90lq917835lq9","type":"function","function":{"name":"get_weather","arguments":"{\"location\":\"San Francisco, CA\"}"}}]},
			"finish_reason":"tool_calls","logprobs":null}],
		"usage":{"prompt_tokens":412,"completion_tokens":30,"total_tokens":442,"prompt_tokens_details":{"cached_tokens":400}}}`
	if diff := cmp.Diff(parseJSON(t, string(res.Body)), parseJSON(t, wantAnswer)); diff != "" {
		t.Errorf("answer (-got +want):\n%s", diff)
	}
	if diff := cmp.Diff(*res, wire.Result{Body: res.Body, Usage: wire.Usage{PromptTokens: 412, CachedTokens: 400, CompletionTokens: 30}, HasUsage: true}); diff != "" {
		t.Errorf("result (-got +want):\n%s", diff)
	}
}

// writeInPieces sends s in small flushed writes, cutting lines and events.
func writeInPieces(w http.ResponseWriter, s string) {
	f := w.(http.Flusher)
	for len(s) > 0 {
		n := min(len(s), 173)
		io.WriteString(w, s[:n])
		f.Flush()
		s = s[n:]
	}
}

func TestEndToEndStreaming(t *testing.T) {
	firstText := make(chan struct{}) // closed when the client got "Okay"
	waited := make(chan string, 1)   // what the server saw while waiting for it
	srv, got := fakeAnthropic(t, func(w http.ResponseWriter) {
		w.Header().Set("content-type", "text/event-stream; charset=utf-8")
		w.Header().Set("cache-control", "no-cache")
		writeInPieces(w, streamToolUseHead)
		// The rest is only sent once the first text delta went out as a
		// chunk: an adapter that buffered the answer would never get it.
		select {
		case <-firstText:
			waited <- "ok"
		case <-time.After(10 * time.Second):
			waited <- "the first text delta was not emitted before the stream ended"
		}
		writeInPieces(w, streamToolUseTail)
	})

	p := New()
	target := &wire.Target{BaseURL: srv.URL, Key: "sk-ant-e2e", Model: "claude-sonnet-4-5", APIVersion: "2023-06-01"}
	c := chatCall(t, strings.Replace(e2eClient, "%s", `, "stream": true, "stream_options": {"include_usage": true}`, 1))
	req, err := p.NewRequest(t.Context(), target, c)
	if err != nil {
		t.Fatalf("NewRequest: %v", err)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatalf("sending: %v", err)
	}
	defer resp.Body.Close()

	want := received{Method: "POST", Path: "/v1/messages", Headers: map[string]string{
		"X-Api-Key": "sk-ant-e2e", "Anthropic-Version": "2023-06-01", "Content-Type": "application/json",
		"Accept": "text/event-stream", "Anthropic-Beta": ""}, Body: e2eWantBody(true)}
	if diff := cmp.Diff(<-got, want); diff != "" {
		t.Errorf("Anthropic received (-got +want):\n%s", diff)
	}

	var r recorder
	closed := false
	emit := func(chunk []byte, usageOnly bool) error {
		err := r.emit(chunk, usageOnly)
		if !closed && strings.Contains(string(chunk), `"content":"Okay"`) {
			closed = true
			close(firstText)
		}
		return err
	}
	u, ok, err := p.Stream(c, target, resp.Body, emit)
	if err != nil {
		t.Fatalf("Stream: %v", err)
	}
	if diff := cmp.Diff(<-waited, "ok"); diff != "" {
		t.Errorf("streaming (-got +want):\n%s", diff)
	}
	if !ok {
		t.Error("ok = false for a complete stream")
	}
	if diff := cmp.Diff(u, wire.Usage{PromptTokens: 2572, CachedTokens: 2000, CompletionTokens: 89}); diff != "" {
		t.Errorf("usage (-got +want):\n%s", diff)
	}
	wantSummary := summary{ID: "chatcmpl-msg_014p7gG3wDgGV9EUtLvnow3U", Model: "claude", Created: testCreated, Chunks: 22,
		FirstRole: "assistant", FirstContent: ptr(""), Content: toolUseText,
		Tools:  []toolSummary{{Index: 0, ID: "toolu_01T1x1fJ34qAmk2tNTrN7Up6", Name: "get_weather", Type: "function", Arguments: toolUseArgs, StartArgsEmpty: true}},
		Finish: []string{"tool_calls"}, UsageOnlyAt: []int{21},
		Usage: &wire.UsageObject{PromptTokens: 2572, CompletionTokens: 89, TotalTokens: 2661, PromptTokensDetails: &wire.PromptTokensDetails{CachedTokens: 2000}}}
	s := summarize(t, r.got)
	if diff := cmp.Diff(s, wantSummary); diff != "" {
		t.Errorf("chunks (-got +want):\n%s", diff)
	}
	for _, tc := range s.Tools {
		var args map[string]string
		if err := json.Unmarshal([]byte(tc.Arguments), &args); err != nil {
			t.Errorf("the streamed arguments %q are not a JSON object: %v", tc.Arguments, err)
		}
	}
}

// A stream the server cuts before message_delta: what was seen, ok false,
// no error.
func TestEndToEndStreamCut(t *testing.T) {
	srv, got := fakeAnthropic(t, func(w http.ResponseWriter) {
		w.Header().Set("content-type", "text/event-stream")
		writeInPieces(w, streamToolUse[:strings.Index(streamToolUse, "event: message_delta")])
	})
	p := New()
	target := &wire.Target{BaseURL: srv.URL, Key: "k", Model: "claude-sonnet-4-5"}
	c := chatCall(t, strings.Replace(e2eClient, "%s", `, "stream": true`, 1))
	req, err := p.NewRequest(t.Context(), target, c)
	if err != nil {
		t.Fatalf("NewRequest: %v", err)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatalf("sending: %v", err)
	}
	defer resp.Body.Close()
	<-got

	var r recorder
	u, ok, err := p.Stream(c, target, resp.Body, r.emit)
	if err != nil {
		t.Fatalf("Stream: %v", err)
	}
	if ok {
		t.Error("ok = true for a stream cut before message_delta")
	}
	if diff := cmp.Diff(u, wire.Usage{PromptTokens: 2572, CachedTokens: 2000, CompletionTokens: 2}); diff != "" {
		t.Errorf("usage (-got +want):\n%s", diff)
	}
	s := summarize(t, r.got)
	if len(s.Tools) != 1 {
		t.Fatalf("got %d tool calls, want 1", len(s.Tools))
	}
	if diff := cmp.Diff([]any{s.Content, s.Tools[0].Arguments, s.Finish, s.UsageOnlyAt}, []any{toolUseText, toolUseArgs, []string(nil), []int(nil)}); diff != "" {
		t.Errorf("chunks (-got +want):\n%s", diff)
	}
}
