package gemini

import (
	"context"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/tenantgate/tenantgate/internal/gateway/wire"
)

// fakeGemini is an httptest server speaking Gemini's REST wire format. It
// checks each request's path, query, headers and body against want (by
// path), and answers like the real API.
type fakeGemini struct {
	t *testing.T
	// wantBody maps "path?query" to the request body it must receive.
	wantBody map[string]string
	// next is signalled by the client after it saw the first streamed text;
	// the server sends the rest only then, which proves the adapter emits
	// as events arrive instead of buffering the answer.
	next chan struct{}
}

const (
	streamEvent1 = `{"candidates": [{"content": {"parts": [{"text": "The sky is blue"}],"role": "model"},"index": 0}],"usageMetadata": {"promptTokenCount": 11,"totalTokenCount": 11,"promptTokensDetails": [{"modality": "TEXT","tokenCount": 11}]},"modelVersion": "gemini-2.5-flash","responseId": "mGq1aN3gKsWz1e8P5dbc2AQ"}`
	streamEvent2 = `{"candidates": [{"content": {"parts": [{"text": " because of Rayleigh"}],"role": "model"},"index": 0}],"usageMetadata": {"promptTokenCount": 11,"totalTokenCount": 11,"promptTokensDetails": [{"modality": "TEXT","tokenCount": 11}]},"modelVersion": "gemini-2.5-flash","responseId": "mGq1aN3gKsWz1e8P5dbc2AQ"}`
	streamEvent3 = `{"candidates": [{"content": {"parts": [{"text": " scattering."}],"role": "model"},"finishReason": "STOP","index": 0}],"usageMetadata": {"promptTokenCount": 11,"candidatesTokenCount": 9,"totalTokenCount": 52,"promptTokensDetails": [{"modality": "TEXT","tokenCount": 11}],"thoughtsTokenCount": 32},"modelVersion": "gemini-2.5-flash","responseId": "mGq1aN3gKsWz1e8P5dbc2AQ"}`
)

func (f *fakeGemini) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	t := f.t
	body, _ := io.ReadAll(r.Body)
	key := r.URL.Path
	if r.URL.RawQuery != "" {
		key += "?" + r.URL.RawQuery
	}
	if r.Method != http.MethodPost {
		t.Errorf("%s: method %s, want POST", key, r.Method)
	}
	if got := r.Header.Get("x-goog-api-key"); got != "AIza-test-key" {
		t.Errorf("%s: x-goog-api-key %q", key, got)
	}
	if got := r.Header.Get("content-type"); got != "application/json" {
		t.Errorf("%s: content-type %q", key, got)
	}
	if got := r.Header.Get("x-goog-user-project"); got != "acme" {
		t.Errorf("%s: the channel's header: got %q", key, got)
	}
	if r.URL.Query().Has("key") {
		t.Errorf("%s: the key is in the query", key)
	}
	want, known := f.wantBody[key]
	if !known {
		t.Errorf("unexpected request %s", key)
		w.WriteHeader(http.StatusNotFound)
		return
	}
	if diff := cmp.Diff(generic(t, body), generic(t, []byte(want))); diff != "" {
		t.Errorf("%s: body (-got +want):\n%s", key, diff)
	}

	w.Header().Set("Content-Type", "application/json; charset=UTF-8")
	switch key {
	case "/v1beta/models/gemini-2.5-flash:generateContent":
		_, _ = io.WriteString(w, `{
  "candidates": [
    {
      "content": {
        "parts": [
          {
            "text": "The sky is blue because of Rayleigh scattering."
          }
        ],
        "role": "model"
      },
      "finishReason": "STOP",
      "index": 0
    }
  ],
  "usageMetadata": {
    "promptTokenCount": 11,
    "candidatesTokenCount": 9,
    "totalTokenCount": 52,
    "promptTokensDetails": [
      {
        "modality": "TEXT",
        "tokenCount": 11
      }
    ],
    "thoughtsTokenCount": 32
  },
  "modelVersion": "gemini-2.5-flash",
  "responseId": "mGq1aN3gKsWz1e8P5dbc2AQ"
}
`)
	case "/v1beta/models/gemini-2.5-flash:streamGenerateContent?alt=sse":
		w.Header().Set("Content-Type", "text/event-stream")
		fl := w.(http.Flusher)
		write := func(event string) {
			_, _ = io.WriteString(w, "data: "+event+"\r\n\r\n")
			fl.Flush()
		}
		write(streamEvent1)
		select {
		case <-f.next:
		case <-time.After(5 * time.Second):
			t.Errorf("the client did not see the first event before the rest was sent: it buffers")
		}
		// The second event arrives split over two writes.
		_, _ = io.WriteString(w, "data: "+streamEvent2[:40])
		fl.Flush()
		_, _ = io.WriteString(w, streamEvent2[40:]+"\r\n\r\n")
		fl.Flush()
		write(streamEvent3)
	case "/v1beta/models/gemini-2.5-flash-lite:streamGenerateContent?alt=sse":
		// Cut off in the middle of the second event.
		w.Header().Set("Content-Type", "text/event-stream")
		_, _ = io.WriteString(w, "data: "+streamEvent1+"\r\n\r\n")
		w.(http.Flusher).Flush()
		_, _ = io.WriteString(w, "data: "+streamEvent2[:60])
	case "/v1beta/models/gemini-embedding-001:batchEmbedContents":
		_, _ = io.WriteString(w, `{
  "embeddings": [
    {
      "values": [0.013168523, -0.008711934, -0.046782676]
    },
    {
      "values": [-0.0105591435, 0.0071335053, 0.0253781]
    }
  ]
}
`)
	case "/v1beta/models/gemini-9-ultra:generateContent":
		w.WriteHeader(http.StatusNotFound)
		_, _ = io.WriteString(w, `{
  "error": {
    "code": 404,
    "message": "models/gemini-9-ultra is not found for API version v1beta, or is not supported for generateContent. Call ListModels to see the list of available models and their supported methods.",
    "status": "NOT_FOUND"
  }
}
`)
	}
}

func TestEndToEnd(t *testing.T) {
	chatBody := `{"contents": [{"role": "user", "parts": [{"text": "Why is the sky blue?"}]}],
		"systemInstruction": {"parts": [{"text": "Answer in one sentence."}]},
		"generationConfig": {"maxOutputTokens": 500, "temperature": 0.2}}`
	f := &fakeGemini{t: t, next: make(chan struct{}), wantBody: map[string]string{
		"/v1beta/models/gemini-2.5-flash:generateContent":                    chatBody,
		"/v1beta/models/gemini-2.5-flash:streamGenerateContent?alt=sse":      chatBody,
		"/v1beta/models/gemini-2.5-flash-lite:streamGenerateContent?alt=sse": chatBody,
		"/v1beta/models/gemini-9-ultra:generateContent":                      chatBody,
		"/v1beta/models/gemini-embedding-001:batchEmbedContents": `{"requests": [
			{"model": "models/gemini-embedding-001", "content": {"parts": [{"text": "What is the meaning of life?"}]}, "outputDimensionality": 3},
			{"model": "models/gemini-embedding-001", "content": {"parts": [{"text": "How much wood would a woodchuck chuck?"}]}, "outputDimensionality": 3}
		]}`,
	}}
	srv := httptest.NewServer(f)
	defer srv.Close()

	p := New()
	tg := func(model string) *wire.Target {
		return &wire.Target{BaseURL: srv.URL + "/", Key: "AIza-test-key", Model: model, Headers: map[string]string{"x-goog-user-project": "acme"}}
	}
	openai := `{"model": "gpt-4o", "messages": [
		{"role": "system", "content": "Answer in one sentence."},
		{"role": "user", "content": "Why is the sky blue?"}
	], "max_tokens": 500, "temperature": 0.2}`
	send := func(t *testing.T, target *wire.Target, c *wire.Call) *http.Response {
		t.Helper()
		req, err := p.NewRequest(context.Background(), target, c)
		if err != nil {
			t.Fatalf("NewRequest: %v", err)
		}
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatalf("Do: %v", err)
		}
		t.Cleanup(func() { resp.Body.Close() })
		return resp
	}
	readAll := func(t *testing.T, r io.Reader) []byte {
		t.Helper()
		b, err := io.ReadAll(r)
		if err != nil {
			t.Fatalf("reading the answer: %v", err)
		}
		return b
	}
	wantUsage := wire.Usage{PromptTokens: 11, CompletionTokens: 41}

	t.Run("chat", func(t *testing.T) {
		c := chatCall(t, openai, false)
		resp := send(t, tg("gemini-2.5-flash"), c)
		if resp.StatusCode != http.StatusOK {
			t.Fatalf("status %d", resp.StatusCode)
		}
		res, err := p.Decode(c, tg("gemini-2.5-flash"), readAll(t, resp.Body))
		if err != nil {
			t.Fatalf("Decode: %v", err)
		}
		got := generic(t, res.Body)
		normalize(t, got)
		want := `{"id": "chatcmpl-mGq1aN3gKsWz1e8P5dbc2AQ", "object": "chat.completion", "created": 0, "model": "gpt-4o",
			"choices": [{"index": 0, "message": {"role": "assistant", "content": "The sky is blue because of Rayleigh scattering.", "refusal": null},
				"finish_reason": "stop", "logprobs": null}],
			"usage": {"prompt_tokens": 11, "completion_tokens": 41, "total_tokens": 52}}`
		if diff := cmp.Diff(got, generic(t, []byte(want))); diff != "" {
			t.Errorf("answer (-got +want):\n%s", diff)
		}
		if !res.HasUsage || res.Usage != wantUsage {
			t.Errorf("usage: got %+v (HasUsage %v), want %+v", res.Usage, res.HasUsage, wantUsage)
		}
	})

	t.Run("stream", func(t *testing.T) {
		c := chatCall(t, openai, true)
		resp := send(t, tg("models/gemini-2.5-flash"), c)
		if ct := resp.Header.Get("Content-Type"); resp.StatusCode != http.StatusOK || ct != "text/event-stream" {
			t.Fatalf("status %d, content type %q", resp.StatusCode, ct)
		}
		var chunks []emitted
		signalled := false
		u, ok, err := p.Stream(c, tg("gemini-2.5-flash"), resp.Body, func(chunk []byte, usageOnly bool) error {
			chunks = append(chunks, emitted{append([]byte(nil), chunk...), usageOnly})
			if !signalled && strings.Contains(string(chunk), "The sky is blue") {
				signalled = true
				close(f.next)
			}
			return nil
		})
		if err != nil {
			t.Fatalf("Stream: %v", err)
		}
		if !ok || u != wantUsage {
			t.Errorf("usage: got %+v ok %v, want %+v ok true", u, ok, wantUsage)
		}
		want := streamSummary{
			Text:     map[int]string{0: "The sky is blue because of Rayleigh scattering."},
			Finishes: []string{"0:stop"},
			Usage:    wantUsage.Object(),
		}
		if diff := cmp.Diff(summarize(t, chunks, "gpt-4o"), want); diff != "" {
			t.Errorf("chunks (-got +want):\n%s", diff)
		}
		if n := len(chunks); n != 6 || !chunks[n-1].usageOnly {
			t.Errorf("got %d chunks, want 6 ending with the usage-only one", n)
		}
	})

	t.Run("stream ended early", func(t *testing.T) {
		c := chatCall(t, openai, true)
		resp := send(t, tg("gemini-2.5-flash-lite"), c)
		var chunks []emitted
		u, ok, err := p.Stream(c, tg("gemini-2.5-flash-lite"), resp.Body, func(chunk []byte, usageOnly bool) error {
			chunks = append(chunks, emitted{append([]byte(nil), chunk...), usageOnly})
			return nil
		})
		if err != nil {
			t.Fatalf("Stream: %v", err)
		}
		if ok || u != (wire.Usage{PromptTokens: 11}) {
			t.Errorf("usage: got %+v ok %v, want what was seen (prompt 11) and ok false", u, ok)
		}
		if diff := cmp.Diff(summarize(t, chunks, "gpt-4o"), streamSummary{Text: map[int]string{0: "The sky is blue"}}); diff != "" {
			t.Errorf("chunks (-got +want):\n%s", diff)
		}
	})

	t.Run("embeddings", func(t *testing.T) {
		c := embedCall(t, `{"model": "text-embedding-3-small", "input": ["What is the meaning of life?", "How much wood would a woodchuck chuck?"], "dimensions": 3}`)
		resp := send(t, tg("gemini-embedding-001"), c)
		res, err := p.Decode(c, tg("gemini-embedding-001"), readAll(t, resp.Body))
		if err != nil {
			t.Fatalf("Decode: %v", err)
		}
		want := `{"object": "list", "model": "text-embedding-3-small", "usage": {"prompt_tokens": 0, "total_tokens": 0}, "data": [
			{"object": "embedding", "index": 0, "embedding": [0.013168523, -0.008711934, -0.046782676]},
			{"object": "embedding", "index": 1, "embedding": [-0.0105591435, 0.0071335053, 0.0253781]}]}`
		if diff := cmp.Diff(generic(t, res.Body), generic(t, []byte(want))); diff != "" {
			t.Errorf("answer (-got +want):\n%s", diff)
		}
		if res.HasUsage {
			t.Errorf("HasUsage: got true, want false")
		}
	})

	t.Run("error", func(t *testing.T) {
		resp := send(t, tg("gemini-9-ultra"), chatCall(t, openai, false))
		if resp.StatusCode != http.StatusNotFound {
			t.Errorf("status %d, want 404", resp.StatusCode)
		}
		got := p.ErrorMessage(readAll(t, resp.Body))
		if want := "models/gemini-9-ultra is not found for API version v1beta"; !strings.HasPrefix(got, want) {
			t.Errorf("ErrorMessage: got %q, want it to start with %q", got, want)
		}
	})
}
