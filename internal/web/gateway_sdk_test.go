package web

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/openai/openai-go/v3"
	"github.com/openai/openai-go/v3/option"
	"gorm.io/gorm"

	"github.com/tenantgate/tenantgate/internal/money"
	"github.com/tenantgate/tenantgate/internal/store"
	"github.com/tenantgate/tenantgate/internal/store/storetest"
)

// Every upstream fake in this file reports the usage fakeOpenAI reports: 11
// prompt tokens (3 of them cached) and 7 completion tokens. At the prices
// newGW sets (2.00 / 1.00 / 8.00 a million tokens) each call costs
// (11-3)*2 + 3*1 + 7*8 = 75 micros, whichever provider serves it.
const callMicros = 75

// sdkClient is the official OpenAI Go SDK pointed at the gateway with key.
// Retries are off so every call the test makes is exactly one request.
func (g *gw) sdkClient(key string) openai.Client {
	return openai.NewClient(option.WithBaseURL(g.a.url+"/v1"), option.WithAPIKey(key), option.WithMaxRetries(0))
}

// sdkError is err as the SDK's typed API error.
func sdkError(t *testing.T, err error) *openai.Error {
	t.Helper()
	var e *openai.Error
	if !errors.As(err, &e) {
		t.Fatalf("got error %v (%T), want *openai.Error", err, err)
	}
	return e
}

// wantBalance checks the tenant's balance is 1.00 less n calls.
func (g *gw) wantBalance(t *testing.T, calls int) {
	t.Helper()
	g.wantSpent(t, int64(calls)*callMicros)
}

// wantSpent checks the tenant's balance is 1.00 less micros.
func (g *gw) wantSpent(t *testing.T, micros int64) {
	t.Helper()
	if got, want := g.balance(t), money.Micros(1_000_000-micros).String(); got != want {
		t.Errorf("balance %s, want %s (1.00 less %d micros)", got, want, micros)
	}
}

// payingTenant signs up another tenant with an API key and a balance of 1.00.
func (g *gw) payingTenant(t *testing.T, slug string) (org, string) {
	t.Helper()
	a := g.a
	o := a.signup(slug)
	key := a.want(a.do("POST", "/api/v1/api-keys", o.OwnerToken, map[string]any{"name": "app"}, nil), 201, "").str("secret")
	a.want(a.do("POST", "/api/v1/admin/tenants/"+o.ID+"/topups", g.op, map[string]any{"amount": "1.00", "idempotencyKey": "seed-" + slug}, nil), 201, "")
	return o, key
}

func TestGatewaySDKOpenAI(t *testing.T) {
	storetest.Each(t, func(t *testing.T, d store.Dialect) {
		up := newFakeOpenAI(t, "sk-upstream")
		g := newGW(t, d, up)
		client := g.sdkClient(g.key)
		ctx := context.Background()
		params := func() openai.ChatCompletionNewParams {
			return openai.ChatCompletionNewParams{Model: "gpt-test", Messages: []openai.ChatCompletionMessageParamUnion{openai.UserMessage("Say hello")}}
		}
		billed := 0

		t.Run("chat", func(t *testing.T) {
			c, err := client.Chat.Completions.New(ctx, params())
			if err != nil {
				t.Fatal(err)
			}
			billed++
			got := []any{c.Model, len(c.Choices), c.Usage.PromptTokens, c.Usage.PromptTokensDetails.CachedTokens, c.Usage.CompletionTokens, c.Usage.TotalTokens}
			want := []any{"gpt-test", 1, int64(11), int64(3), int64(7), int64(18)}
			if diff := cmp.Diff(got, want); diff != "" {
				t.Errorf("completion (-got +want):\n%s", diff)
			}
			if len(c.Choices) == 1 {
				ch := c.Choices[0]
				if ch.Message.Content != "Hello there" || ch.FinishReason != "stop" || string(ch.Message.Role) != "assistant" {
					t.Errorf("choice: %+v", ch)
				}
			}
			if raw := c.JSON.Object.Raw(); raw != `"chat.completion"` {
				t.Errorf("object %s, want chat.completion", raw)
			}
		})

		for _, tc := range []struct {
			name         string
			includeUsage bool
			usageChunks  int
			usage        [3]int64 // prompt, completion, total
		}{
			{"stream with include_usage", true, 1, [3]int64{11, 7, 18}},
			{"stream without include_usage", false, 0, [3]int64{}},
		} {
			t.Run(tc.name, func(t *testing.T) {
				p := params()
				if tc.includeUsage {
					p.StreamOptions = openai.ChatCompletionStreamOptionsParam{IncludeUsage: openai.Bool(true)}
				}
				stream := client.Chat.Completions.NewStreaming(ctx, p)
				defer stream.Close()
				var acc openai.ChatCompletionAccumulator
				chunks, usageChunks, lastWithUsage := 0, 0, false
				for stream.Next() {
					chunk := stream.Current()
					if !acc.AddChunk(chunk) {
						t.Errorf("the accumulator refused chunk %d: %s", chunks, chunk.RawJSON())
					}
					chunks++
					lastWithUsage = chunk.JSON.Usage.Valid()
					if lastWithUsage {
						usageChunks++
					}
				}
				if err := stream.Err(); err != nil {
					t.Fatalf("stream: %v", err)
				}
				billed++
				if len(acc.Choices) != 1 || acc.Choices[0].Message.Content != "Hello there" {
					t.Errorf("accumulated choices: %+v", acc.Choices)
				}
				if got := [3]int64{acc.Usage.PromptTokens, acc.Usage.CompletionTokens, acc.Usage.TotalTokens}; got != tc.usage {
					t.Errorf("accumulated usage %v, want %v", got, tc.usage)
				}
				if usageChunks != tc.usageChunks || (tc.usageChunks > 0 && !lastWithUsage) {
					t.Errorf("%d of %d chunks carry usage (the last one: %v), want %d, the last", usageChunks, chunks, lastWithUsage, tc.usageChunks)
				}
			})
		}

		t.Run("embeddings", func(t *testing.T) {
			e, err := client.Embeddings.New(ctx, openai.EmbeddingNewParams{Model: "gpt-test", Input: openai.EmbeddingNewParamsInputUnion{OfString: openai.String("hi")}})
			if err != nil {
				t.Fatal(err)
			}
			if len(e.Data) != 1 || len(e.Data[0].Embedding) != 2 || e.Data[0].Embedding[0] != 0.1 || e.Data[0].Embedding[1] != 0.2 ||
				e.Model != "gpt-test" || e.Usage.PromptTokens != 4 {
				t.Errorf("embeddings: %s", e.RawJSON())
			}
		})

		t.Run("models", func(t *testing.T) {
			page, err := client.Models.List(ctx)
			if err != nil {
				t.Fatal(err)
			}
			var ids []string
			for _, m := range page.Data {
				ids = append(ids, m.ID)
			}
			if diff := cmp.Diff(ids, []string{"gpt-test"}); diff != "" {
				t.Errorf("models (-got +want):\n%s", diff)
			}
			m, err := client.Models.Get(ctx, "gpt-test")
			if err != nil || m.ID != "gpt-test" {
				t.Errorf("model: %v %v", m, err)
			}
			_, err = client.Models.Get(ctx, "gpt-nope")
			if e := sdkError(t, err); e.StatusCode != 404 || e.Code != "model_not_found" {
				t.Errorf("unknown model: %d %q", e.StatusCode, e.Code)
			}
		})

		t.Run("typed errors", func(t *testing.T) {
			// A tenant that never got a balance.
			broke := g.a.signup("sdkbroke")
			brokeKey := g.a.want(g.a.do("POST", "/api/v1/api-keys", broke.OwnerToken, map[string]any{"name": "app"}, nil), 201, "").str("secret")
			for _, tc := range []struct {
				name   string
				key    string
				model  string
				stream bool
				status int
				code   string
				typ    string
			}{
				{"unknown model", g.key, "gpt-nope", false, 404, "model_not_found", "invalid_request_error"},
				{"unknown model, streaming", g.key, "gpt-nope", true, 404, "model_not_found", "invalid_request_error"},
				{"no balance", brokeKey, "gpt-test", false, 429, "insufficient_quota", "insufficient_quota"},
				{"no balance, streaming", brokeKey, "gpt-test", true, 429, "insufficient_quota", "insufficient_quota"},
				{"bad key", "tg_not-a-real-key", "gpt-test", false, 401, "invalid_api_key", "authentication_error"},
			} {
				t.Run(tc.name, func(t *testing.T) {
					c := g.sdkClient(tc.key)
					p := params()
					p.Model = tc.model
					var err error
					if tc.stream {
						s := c.Chat.Completions.NewStreaming(ctx, p)
						for s.Next() {
							t.Errorf("a chunk of a refused call: %s", s.Current().RawJSON())
						}
						err = s.Err()
						s.Close()
					} else {
						_, err = c.Chat.Completions.New(ctx, p)
					}
					e := sdkError(t, err)
					if got, want := fmt.Sprint(e.StatusCode, " ", e.Code, " ", e.Type), fmt.Sprint(tc.status, " ", tc.code, " ", tc.typ); got != want {
						t.Errorf("got %s, want %s", got, want)
					}
					if e.Message == "" {
						t.Error("the error has no message")
					}
				})
			}
		})

		// The embeddings call's 4 prompt tokens cost 4*2 = 8 micros.
		g.wantSpent(t, int64(billed)*callMicros+8)
		if n := g.ledgerEqualsLogs(t); n != int64(billed)+1 { // + the embeddings call; refused calls leave no row
			t.Errorf("%d log rows, want %d", n, billed+1)
		}
	})
}

// fakeProvider is an upstream speaking Anthropic's Messages API or Gemini's
// generateContent / streamGenerateContent, in the shapes of those vendors'
// documentation (see internal/gateway/{anthropic,gemini}/*_test.go). Every
// answer is "Hello there" with the usage described at callMicros.
type fakeProvider struct {
	*httptest.Server
	t      *testing.T
	kind   string // anthropic | gemini
	key    string
	status atomic.Int32 // answer this status, with the vendor's error body, when set
	calls  atomic.Int32
	hold   chan struct{} // a stream waits here after its first text, until the test closes it

	mu        sync.Mutex
	lastBody  map[string]any
	lastModel string // the model upstream was asked for
}

func newFakeProvider(t *testing.T, kind, key string) *fakeProvider {
	f := &fakeProvider{t: t, kind: kind, key: key, hold: make(chan struct{})}
	h := f.serveAnthropic
	if kind == "gemini" {
		h = f.serveGemini
	}
	f.Server = httptest.NewServer(http.HandlerFunc(h))
	t.Cleanup(f.Close)
	return f
}

func (f *fakeProvider) last() (map[string]any, string) {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.lastBody, f.lastModel
}

// wait holds a stream after its first text until the test saw it: proof
// that the gateway passes chunks on as they arrive.
func (f *fakeProvider) wait(r *http.Request) {
	select {
	case <-f.hold:
	case <-r.Context().Done():
	case <-time.After(5 * time.Second):
		f.t.Errorf("%s: the client did not see the first chunk before the rest was sent: the gateway buffers the stream", f.kind)
	}
}

func (f *fakeProvider) record(r *http.Request, model string) map[string]any {
	var body map[string]any
	if err := json.NewDecoder(r.Body).Decode(&body); err != nil {
		f.t.Errorf("%s: the request body is not JSON: %v", f.kind, err)
	}
	if model == "" {
		model, _ = body["model"].(string)
	}
	f.mu.Lock()
	f.lastBody, f.lastModel = body, model
	f.mu.Unlock()
	return body
}

func (f *fakeProvider) serveAnthropic(w http.ResponseWriter, r *http.Request) {
	f.calls.Add(1)
	if r.Method != http.MethodPost || r.URL.Path != "/v1/messages" {
		f.t.Errorf("anthropic: unexpected %s %s", r.Method, r.URL)
		w.WriteHeader(http.StatusNotFound)
		fmt.Fprint(w, `{"type":"error","error":{"type":"not_found_error","message":"Not found"}}`)
		return
	}
	w.Header().Set("Content-Type", "application/json")
	if got := r.Header.Get("x-api-key"); got != f.key {
		f.t.Errorf("anthropic: x-api-key %q", got)
		w.WriteHeader(http.StatusUnauthorized)
		fmt.Fprint(w, `{"type":"error","error":{"type":"authentication_error","message":"invalid x-api-key"}}`)
		return
	}
	if got := r.Header.Get("anthropic-version"); got != "2023-06-01" {
		f.t.Errorf("anthropic: anthropic-version %q", got)
		w.WriteHeader(http.StatusBadRequest)
		fmt.Fprint(w, `{"type":"error","error":{"type":"invalid_request_error","message":"anthropic-version: header is required"}}`)
		return
	}
	if got := r.Header.Get("Authorization"); got != "" {
		f.t.Errorf("anthropic: an Authorization header was sent: %q", got)
	}
	body := f.record(r, "")
	if s := f.status.Load(); s != 0 {
		w.WriteHeader(int(s))
		fmt.Fprint(w, `{"type":"error","error":{"type":"invalid_request_error","message":"max_tokens: 999999 > 8192, which is the maximum allowed number of output tokens"}}`)
		return
	}
	model, _ := body["model"].(string)
	if stream, _ := body["stream"].(bool); !stream {
		fmt.Fprintf(w, `{"id":"msg_013Zva2CMHLNnXjNJJKqJ2EF","type":"message","role":"assistant","model":%q,"content":[{"type":"text","text":"Hello there"}],"stop_reason":"end_turn","stop_sequence":null,"usage":{"input_tokens":8,"cache_creation_input_tokens":0,"cache_read_input_tokens":3,"output_tokens":7}}`, model)
		return
	}
	if got := r.Header.Get("accept"); got != "text/event-stream" {
		f.t.Errorf("anthropic: a stream asked with accept %q", got)
	}
	w.Header().Set("Content-Type", "text/event-stream")
	fl := w.(http.Flusher)
	send := func(event, data string) {
		fmt.Fprintf(w, "event: %s\ndata: %s\n\n", event, data)
		fl.Flush()
	}
	send("message_start", fmt.Sprintf(`{"type":"message_start","message":{"id":"msg_1nZdL29xx5MUA1yADyHTEsnR8uuvGzszyY","type":"message","role":"assistant","content":[],"model":%q,"stop_reason":null,"stop_sequence":null,"usage":{"input_tokens":8,"cache_creation_input_tokens":0,"cache_read_input_tokens":3,"output_tokens":1}}}`, model))
	send("content_block_start", `{"type":"content_block_start","index":0,"content_block":{"type":"text","text":""}}`)
	send("ping", `{"type": "ping"}`)
	for i, part := range []string{"Hel", "lo", " there"} {
		send("content_block_delta", fmt.Sprintf(`{"type":"content_block_delta","index":0,"delta":{"type":"text_delta","text":%q}}`, part))
		if i == 0 {
			f.wait(r)
		}
	}
	send("content_block_stop", `{"type":"content_block_stop","index":0}`)
	send("message_delta", `{"type":"message_delta","delta":{"stop_reason":"end_turn","stop_sequence":null},"usage":{"output_tokens":7}}`)
	send("message_stop", `{"type":"message_stop"}`)
}

func (f *fakeProvider) serveGemini(w http.ResponseWriter, r *http.Request) {
	f.calls.Add(1)
	w.Header().Set("Content-Type", "application/json; charset=UTF-8")
	model, method, ok := strings.Cut(strings.TrimPrefix(r.URL.Path, "/v1beta/models/"), ":")
	if r.Method != http.MethodPost || !ok || !strings.HasPrefix(r.URL.Path, "/v1beta/models/") || (method != "generateContent" && method != "streamGenerateContent") {
		f.t.Errorf("gemini: unexpected %s %s", r.Method, r.URL)
		w.WriteHeader(http.StatusNotFound)
		fmt.Fprint(w, `{"error":{"code":404,"message":"Not found","status":"NOT_FOUND"}}`)
		return
	}
	if got := r.Header.Get("x-goog-api-key"); got != f.key {
		f.t.Errorf("gemini: x-goog-api-key %q", got)
		w.WriteHeader(http.StatusForbidden)
		fmt.Fprint(w, `{"error":{"code":403,"message":"Method doesn't allow unregistered callers. Please use API Key or other form of API consumer identity to call this API.","status":"PERMISSION_DENIED"}}`)
		return
	}
	if r.URL.Query().Has("key") || r.Header.Get("Authorization") != "" {
		f.t.Errorf("gemini: the key travels outside x-goog-api-key: %s %q", r.URL, r.Header.Get("Authorization"))
	}
	f.record(r, model)
	if s := f.status.Load(); s != 0 {
		w.WriteHeader(int(s))
		fmt.Fprint(w, `{"error":{"code":400,"message":"* GenerateContentRequest.generation_config.max_output_tokens: must be less than 65537","status":"INVALID_ARGUMENT"}}`)
		return
	}
	const usage = `"usageMetadata":{"promptTokenCount":11,"cachedContentTokenCount":3,"candidatesTokenCount":5,"thoughtsTokenCount":2,"totalTokenCount":18}`
	if method == "generateContent" {
		fmt.Fprintf(w, `{"candidates":[{"content":{"parts":[{"text":"Hello there"}],"role":"model"},"finishReason":"STOP","index":0}],%s,"modelVersion":%q,"responseId":"mGq1aN3gKsWz1e8P5dbc2AQ"}`, usage, model)
		return
	}
	if got := r.URL.Query().Get("alt"); got != "sse" {
		f.t.Errorf("gemini: a stream asked with alt=%q", got)
	}
	w.Header().Set("Content-Type", "text/event-stream")
	fl := w.(http.Flusher)
	send := func(data string) {
		fmt.Fprintf(w, "data: %s\r\n\r\n", data)
		fl.Flush()
	}
	partial := `"usageMetadata":{"promptTokenCount":11,"cachedContentTokenCount":3,"totalTokenCount":11}`
	send(fmt.Sprintf(`{"candidates":[{"content":{"parts":[{"text":"Hel"}],"role":"model"},"index":0}],%s,"modelVersion":%q,"responseId":"mGq1aN3gKsWz1e8P5dbc2AQ"}`, partial, model))
	f.wait(r)
	send(fmt.Sprintf(`{"candidates":[{"content":{"parts":[{"text":"lo"}],"role":"model"},"index":0}],%s,"modelVersion":%q,"responseId":"mGq1aN3gKsWz1e8P5dbc2AQ"}`, partial, model))
	send(fmt.Sprintf(`{"candidates":[{"content":{"parts":[{"text":" there"}],"role":"model"},"finishReason":"STOP","index":0}],%s,"modelVersion":%q,"responseId":"mGq1aN3gKsWz1e8P5dbc2AQ"}`, usage, model))
}

// providerCase is one chat-only provider behind a platform channel.
type providerCase struct {
	provider string
	model    string // listed on the channel
	alias    string // a modelMapping entry…
	mapped   string // …and the upstream name it maps to
	errMsg   string // what the fake's 400 says
	// prompt and maxTokens read the text and output cap upstream received.
	prompt    func(body map[string]any) string
	maxTokens func(body map[string]any) any
}

// dig walks a decoded JSON value by keys and indexes.
func dig(v any, path ...any) any {
	for _, p := range path {
		switch k := p.(type) {
		case string:
			m, _ := v.(map[string]any)
			v = m[k]
		case int:
			l, _ := v.([]any)
			if k >= len(l) {
				return nil
			}
			v = l[k]
		}
	}
	return v
}

var (
	anthropicCase = providerCase{provider: "anthropic", model: "claude-test", alias: "claude-fast", mapped: "claude-3-5-haiku-latest",
		errMsg:    "max_tokens: 999999 > 8192",
		prompt:    func(b map[string]any) string { s, _ := dig(b, "messages", 0, "content", 0, "text").(string); return s },
		maxTokens: func(b map[string]any) any { return dig(b, "max_tokens") }}
	geminiCase = providerCase{provider: "gemini", model: "gemini-test", alias: "gemini-fast", mapped: "gemini-2.5-flash",
		errMsg:    "max_output_tokens: must be less than 65537",
		prompt:    func(b map[string]any) string { s, _ := dig(b, "contents", 0, "parts", 0, "text").(string); return s },
		maxTokens: func(b map[string]any) any { return dig(b, "generationConfig", "maxOutputTokens") }}
)

// chatAnswer is what a test compares of a chat.completion or text_completion.
type chatAnswer struct {
	Object, Model, Role, Text, Finish string
	Prompt, Cached, Completion, Total int64
}

func decodeAnswer(t *testing.T, raw string) chatAnswer {
	t.Helper()
	var a struct {
		Object  string `json:"object"`
		Model   string `json:"model"`
		Choices []struct {
			Text    *string `json:"text"`
			Message *struct {
				Role    string `json:"role"`
				Content string `json:"content"`
			} `json:"message"`
			FinishReason string `json:"finish_reason"`
		} `json:"choices"`
		Usage struct {
			PromptTokens        int64 `json:"prompt_tokens"`
			CompletionTokens    int64 `json:"completion_tokens"`
			TotalTokens         int64 `json:"total_tokens"`
			PromptTokensDetails struct {
				CachedTokens int64 `json:"cached_tokens"`
			} `json:"prompt_tokens_details"`
		} `json:"usage"`
	}
	if err := json.Unmarshal([]byte(raw), &a); err != nil || len(a.Choices) != 1 {
		t.Fatalf("not an answer with one choice: %v %s", err, raw)
	}
	out := chatAnswer{Object: a.Object, Model: a.Model, Finish: a.Choices[0].FinishReason, Prompt: a.Usage.PromptTokens,
		Cached: a.Usage.PromptTokensDetails.CachedTokens, Completion: a.Usage.CompletionTokens, Total: a.Usage.TotalTokens}
	if m := a.Choices[0].Message; m != nil {
		out.Role, out.Text = m.Role, m.Content
	}
	if a.Choices[0].Text != nil {
		out.Text = *a.Choices[0].Text
	}
	return out
}

// streamSummary is what a test compares of a stream's data events.
type streamSummary struct {
	Events  int      // data events, [DONE] included
	Objects []string // the distinct objects of the chunks
	Text    string   // the content (or text) concatenated
	Finish  []string // the finish reasons, in order
	Usage   []string // "index:prompt/completion/total" of the chunks with usage
	Done    bool     // the last event is [DONE]
}

func summarize(t *testing.T, events []string) streamSummary {
	t.Helper()
	s := streamSummary{Events: len(events), Objects: []string{}, Finish: []string{}, Usage: []string{}}
	for i, ev := range events {
		if ev == "[DONE]" {
			s.Done = i == len(events)-1
			continue
		}
		var c struct {
			Object  string `json:"object"`
			Choices []struct {
				Text  string `json:"text"`
				Delta struct {
					Content string `json:"content"`
				} `json:"delta"`
				FinishReason *string `json:"finish_reason"`
			} `json:"choices"`
			Usage *struct {
				PromptTokens     int64 `json:"prompt_tokens"`
				CompletionTokens int64 `json:"completion_tokens"`
				TotalTokens      int64 `json:"total_tokens"`
			} `json:"usage"`
		}
		if err := json.Unmarshal([]byte(ev), &c); err != nil {
			t.Fatalf("event %d is not a chunk: %v %s", i, err, ev)
		}
		if len(s.Objects) == 0 || s.Objects[len(s.Objects)-1] != c.Object {
			s.Objects = append(s.Objects, c.Object)
		}
		for _, ch := range c.Choices {
			s.Text += ch.Text + ch.Delta.Content
			if ch.FinishReason != nil {
				s.Finish = append(s.Finish, *ch.FinishReason)
			}
		}
		if c.Usage != nil {
			s.Usage = append(s.Usage, fmt.Sprintf("%d:%d/%d/%d", i, c.Usage.PromptTokens, c.Usage.CompletionTokens, c.Usage.TotalTokens))
		}
	}
	return s
}

func TestGatewayAnthropicChannel(t *testing.T) { testChatOnlyProvider(t, anthropicCase) }

func TestGatewayGeminiChannel(t *testing.T) { testChatOnlyProvider(t, geminiCase) }

// testChatOnlyProvider runs a platform channel of a translated provider
// through the gateway: answers in OpenAI's shape, streams chunk by chunk,
// exact billing, completions turned into chat, model mapping, and an
// upstream 400 passed back without failover.
func testChatOnlyProvider(t *testing.T, pc providerCase) {
	storetest.Each(t, func(t *testing.T, d store.Dialect) {
		g := newGW(t, d, newFakeOpenAI(t, "sk-upstream"))
		a := g.a
		up := newFakeProvider(t, pc.provider, "key-"+pc.provider)
		backup := newFakeProvider(t, pc.provider, "key-backup")
		chanID := a.want(a.do("POST", "/api/v1/admin/channels", g.op, map[string]any{"name": pc.provider + "-main", "provider": pc.provider,
			"baseUrl": up.URL, "keys": []string{up.key}, "models": []string{pc.model}, "modelMapping": map[string]string{pc.alias: pc.mapped},
			"priority": 10}, nil), 201, "").str("id")
		a.want(a.do("POST", "/api/v1/admin/channels", g.op, map[string]any{"name": pc.provider + "-backup", "provider": pc.provider,
			"baseUrl": backup.URL, "keys": []string{backup.key}, "models": []string{pc.model}, "priority": 1}, nil), 201, "")
		for _, m := range []string{pc.model, pc.alias} {
			a.want(a.do("PUT", "/api/v1/admin/prices/"+m, g.op, map[string]any{"inputPerMTok": "2.00", "cachedInputPerMTok": "1.00", "outputPerMTok": "8.00"}, nil), 200, "")
		}
		client := g.sdkClient(g.key)
		ctx := context.Background()
		billed := 0
		wantChat := chatAnswer{Object: "chat.completion", Model: pc.model, Role: "assistant", Text: "Hello there", Finish: "stop", Prompt: 11, Cached: 3, Completion: 7, Total: 18}

		t.Run("chat", func(t *testing.T) {
			r := g.post(t, "/v1/chat/completions", g.key, chat(pc.model, map[string]any{"max_tokens": 50}))
			body := readAll(t, r)
			if r.StatusCode != 200 {
				t.Fatalf("chat: %d %s", r.StatusCode, body)
			}
			billed++
			if diff := cmp.Diff(decodeAnswer(t, body), wantChat); diff != "" {
				t.Errorf("answer (-got +want):\n%s", diff)
			}
			sent, model := up.last()
			if got := []any{model, pc.prompt(sent), pc.maxTokens(sent)}; !cmp.Equal(got, []any{pc.model, "Say hello", float64(50)}) {
				t.Errorf("upstream got model, prompt, max tokens %v; body %v", got, sent)
			}
			g.wantBalance(t, billed)
		})

		t.Run("stream chunk by chunk", func(t *testing.T) {
			r := g.post(t, "/v1/chat/completions", g.key, chat(pc.model, map[string]any{"stream": true}))
			if ct := r.Header.Get("Content-Type"); r.StatusCode != 200 || ct != "text/event-stream" {
				t.Fatalf("stream: %d %q %s", r.StatusCode, ct, readAll(t, r))
			}
			defer r.Body.Close()
			var events []string
			released := false
			br := bufio.NewReader(r.Body)
			for {
				line, err := br.ReadString('\n')
				if ev, ok := strings.CutPrefix(strings.TrimRight(line, "\r\n"), "data: "); ok {
					events = append(events, ev)
					if !released && strings.Contains(ev, `"Hel"`) {
						released = true
						close(up.hold) // the first text arrived while upstream still holds the rest
					}
				}
				if err != nil {
					break
				}
			}
			billed++
			// role, "Hel", "lo", " there", finish, [DONE]: the usage chunk is not the client's.
			want := streamSummary{Events: 6, Objects: []string{"chat.completion.chunk"}, Text: "Hello there", Finish: []string{"stop"}, Usage: []string{}, Done: true}
			if diff := cmp.Diff(summarize(t, events), want); diff != "" {
				t.Errorf("stream (-got +want):\n%s\n%q", diff, events)
			}
			g.wantBalance(t, billed)
		})

		t.Run("stream with include_usage", func(t *testing.T) {
			events := sse(t, g.post(t, "/v1/chat/completions", g.key, chat(pc.model, map[string]any{"stream": true, "stream_options": map[string]any{"include_usage": true}})))
			billed++
			want := streamSummary{Events: 7, Objects: []string{"chat.completion.chunk"}, Text: "Hello there", Finish: []string{"stop"}, Usage: []string{"5:11/7/18"}, Done: true}
			if diff := cmp.Diff(summarize(t, events), want); diff != "" {
				t.Errorf("stream (-got +want):\n%s\n%q", diff, events)
			}
			g.wantBalance(t, billed)
		})

		t.Run("completions become chat", func(t *testing.T) {
			r := g.post(t, "/v1/completions", g.key, map[string]any{"model": pc.model, "prompt": "Write a haiku", "max_tokens": 20})
			body := readAll(t, r)
			if r.StatusCode != 200 {
				t.Fatalf("completion: %d %s", r.StatusCode, body)
			}
			billed++
			want := wantChat
			want.Object, want.Role = "text_completion", ""
			if diff := cmp.Diff(decodeAnswer(t, body), want); diff != "" {
				t.Errorf("completion (-got +want):\n%s", diff)
			}
			if !strings.Contains(body, `"id":"cmpl-`) {
				t.Errorf("completion id: %s", body)
			}
			sent, _ := up.last()
			if got := []any{pc.prompt(sent), pc.maxTokens(sent)}; !cmp.Equal(got, []any{"Write a haiku", float64(20)}) {
				t.Errorf("upstream got prompt, max tokens %v; body %v", got, sent)
			}
			events := sse(t, g.post(t, "/v1/completions", g.key, map[string]any{"model": pc.model, "prompt": "Write a haiku", "stream": true,
				"stream_options": map[string]any{"include_usage": true}}))
			billed++
			wantStream := streamSummary{Events: 7, Objects: []string{"text_completion"}, Text: "Hello there", Finish: []string{"stop"}, Usage: []string{"5:11/7/18"}, Done: true}
			if diff := cmp.Diff(summarize(t, events), wantStream); diff != "" {
				t.Errorf("completion stream (-got +want):\n%s\n%q", diff, events)
			}
			g.wantBalance(t, billed)
		})

		t.Run("sdk", func(t *testing.T) {
			msgs := []openai.ChatCompletionMessageParamUnion{openai.UserMessage("Say hello")}
			c, err := client.Chat.Completions.New(ctx, openai.ChatCompletionNewParams{Model: openai.ChatModel(pc.model), Messages: msgs})
			if err != nil {
				t.Fatal(err)
			}
			billed++
			if len(c.Choices) != 1 || c.Choices[0].Message.Content != "Hello there" || c.Usage.PromptTokens != 11 || c.Usage.CompletionTokens != 7 || c.Model != pc.model {
				t.Errorf("sdk chat: %s", c.RawJSON())
			}
			stream := client.Chat.Completions.NewStreaming(ctx, openai.ChatCompletionNewParams{Model: openai.ChatModel(pc.model), Messages: msgs,
				StreamOptions: openai.ChatCompletionStreamOptionsParam{IncludeUsage: openai.Bool(true)}})
			var acc openai.ChatCompletionAccumulator
			for stream.Next() {
				acc.AddChunk(stream.Current())
			}
			if err := stream.Err(); err != nil {
				t.Fatalf("sdk stream: %v", err)
			}
			stream.Close()
			billed++
			if len(acc.Choices) != 1 || acc.Choices[0].Message.Content != "Hello there" || acc.Usage.CompletionTokens != 7 || acc.Usage.PromptTokens != 11 {
				t.Errorf("sdk stream accumulated: %+v usage %+v", acc.Choices, acc.Usage)
			}
			cmpl, err := client.Completions.New(ctx, openai.CompletionNewParams{Model: openai.CompletionNewParamsModel(pc.model),
				Prompt: openai.CompletionNewParamsPromptUnion{OfString: openai.String("Write a haiku")}, MaxTokens: openai.Int(20)})
			if err != nil {
				t.Fatal(err)
			}
			billed++
			if len(cmpl.Choices) != 1 || cmpl.Choices[0].Text != "Hello there" || cmpl.JSON.Object.Raw() != `"text_completion"` || cmpl.Usage.CompletionTokens != 7 {
				t.Errorf("sdk completion: %s", cmpl.RawJSON())
			}
			cs := client.Completions.NewStreaming(ctx, openai.CompletionNewParams{Model: openai.CompletionNewParamsModel(pc.model),
				Prompt: openai.CompletionNewParamsPromptUnion{OfString: openai.String("Write a haiku")}})
			text := ""
			for cs.Next() {
				for _, ch := range cs.Current().Choices {
					text += ch.Text
				}
			}
			if err := cs.Err(); err != nil {
				t.Fatalf("sdk completion stream: %v", err)
			}
			cs.Close()
			billed++
			if text != "Hello there" {
				t.Errorf("sdk completion stream text %q", text)
			}
			g.wantBalance(t, billed)
		})

		t.Run("model mapping", func(t *testing.T) {
			r := g.post(t, "/v1/chat/completions", g.key, chat(pc.alias, nil))
			body := readAll(t, r)
			if r.StatusCode != 200 {
				t.Fatalf("alias: %d %s", r.StatusCode, body)
			}
			billed++
			if _, model := up.last(); model != pc.mapped {
				t.Errorf("upstream was asked for %q, want %q", model, pc.mapped)
			}
			want := wantChat
			want.Model = pc.alias
			if diff := cmp.Diff(decodeAnswer(t, body), want); diff != "" {
				t.Errorf("answer (-got +want):\n%s", diff)
			}
			l := a.want(a.do("GET", "/api/v1/logs?limit=1", g.org.OwnerToken, nil, nil), 200, "").items()[0]
			if l["model"] != pc.alias || l["upstreamModel"] != pc.mapped || l["channelId"] != chanID || l["cost"] != "0.000075" {
				t.Errorf("log row: %v", l)
			}
			if m := a.want(a.do("GET", "/v1/models", g.key, nil, nil), 200, ""); !strings.Contains(m.Raw, `"id":"`+pc.alias+`"`) || strings.Contains(m.Raw, pc.mapped) {
				t.Errorf("models list: %s", m.Raw)
			}
			g.wantBalance(t, billed)
		})

		t.Run("upstream 400 passes through", func(t *testing.T) {
			up.status.Store(400)
			defer up.status.Store(0)
			upCalls, backupCalls := up.calls.Load(), backup.calls.Load()
			status, typ, code, msg := openAIErr(t, g.post(t, "/v1/chat/completions", g.key, chat(pc.model, nil)))
			if status != 400 || typ != "invalid_request_error" || code != "upstream_error" || !strings.Contains(msg, pc.errMsg) {
				t.Errorf("got %d %s %s %q, want 400 invalid_request_error upstream_error %q", status, typ, code, msg, pc.errMsg)
			}
			if n := up.calls.Load() - upCalls; n != 1 {
				t.Errorf("the channel was called %d times", n)
			}
			if n := backup.calls.Load() - backupCalls; n != 0 {
				t.Errorf("another channel was tried %d times after a client error", n)
			}
			_, err := client.Chat.Completions.New(ctx, openai.ChatCompletionNewParams{Model: openai.ChatModel(pc.model),
				Messages: []openai.ChatCompletionMessageParamUnion{openai.UserMessage("Say hello")}})
			if e := sdkError(t, err); e.StatusCode != 400 || e.Code != "upstream_error" || !strings.Contains(e.Message, pc.errMsg) {
				t.Errorf("sdk: %d %q %q", e.StatusCode, e.Code, e.Message)
			}
			if s := a.want(a.do("GET", "/api/v1/admin/channels/"+chanID, g.op, nil, nil), 200, "").str("status"); s != "enabled" {
				t.Errorf("a client error changed the channel to %s", s)
			}
			l := waitLog(t, a, g.org.OwnerToken, "", func(l map[string]any) bool { return l["status"].(float64) == 400 })
			if l["status"].(float64) != 400 || l["cost"] != "0.00" || l["attempts"].(float64) != 1 {
				t.Errorf("log row of the refused call: %v", l)
			}
			g.wantBalance(t, billed) // refused calls cost nothing
		})

		g.ledgerEqualsLogs(t)
		var costs int64
		storetest.Must(t, a.store.Tx(store.WithTenant(context.Background(), g.org.ID), func(tx *gorm.DB) error {
			return tx.Table("ai_request_logs").Select("COALESCE(SUM(cost_micros), 0)").Scan(&costs).Error
		}))
		if costs != int64(billed)*callMicros {
			t.Errorf("logged costs %d micros, want %d × %d", costs, billed, callMicros)
		}
	})
}

func TestGatewayLimitsTokenRate(t *testing.T) {
	storetest.Each(t, func(t *testing.T, d store.Dialect) {
		g := newGW(t, d, newFakeOpenAI(t, "sk-upstream"))
		a := g.a
		billed := 0
		for _, tc := range []struct {
			name      string
			maxTokens int
			want      []int // the statuses of consecutive calls
		}{
			// Two estimates of ~29 tokens do not fit 50 a minute.
			{"the second call passes the rate", 10, []int{200, 429}},
			// One estimate above the whole rate is admitted on a full bucket (the
			// gateway caps a call's charge at the rate, else it could never pass)
			// and leaves nothing for the next.
			{"one call above the rate", 100, []int{200, 429}},
		} {
			t.Run(tc.name, func(t *testing.T) {
				key := a.want(a.do("POST", "/api/v1/api-keys", g.org.OwnerToken, map[string]any{"name": "slow " + tc.name, "tokensPerMinute": 50}, nil), 201, "").str("secret")
				body := chat("gpt-test", map[string]any{"max_tokens": tc.maxTokens})
				raw, _ := json.Marshal(body)
				est := len(raw)/4 + 1 + tc.maxTokens
				t.Logf("estimate %d tokens a call", est)
				for i, want := range tc.want {
					r := g.post(t, "/v1/chat/completions", key, body)
					if r.StatusCode != want {
						t.Fatalf("call %d: got %d, want %d: %s", i+1, r.StatusCode, want, readAll(t, r))
					}
					if want == 200 {
						readAll(t, r)
						billed++
						continue
					}
					retry, err := strconv.Atoi(r.Header.Get("Retry-After"))
					if err != nil || retry < 1 || retry > 60 {
						t.Errorf("Retry-After %q", r.Header.Get("Retry-After"))
					}
					if status, typ, code, msg := openAIErr(t, r); status != 429 || typ != "rate_limit_error" || code != "rate_limit_exceeded" || !strings.Contains(msg, "50 tokens a minute") {
						t.Errorf("got %d %s %s %q", status, typ, code, msg)
					}
				}
				// The limit is the key's: the tenant's other key is still served.
				r := g.post(t, "/v1/chat/completions", g.key, body)
				if b := readAll(t, r); r.StatusCode != 200 {
					t.Errorf("another key: %d %s", r.StatusCode, b)
				}
				billed++
			})
		}
		g.wantBalance(t, billed) // refused calls cost nothing and leave no log row
		if n := g.ledgerEqualsLogs(t); n != int64(billed) {
			t.Errorf("%d log rows, want %d", n, billed)
		}
	})
}

func TestGatewayLimitsMonthlyTokens(t *testing.T) {
	storetest.Each(t, func(t *testing.T, d store.Dialect) {
		g := newGW(t, d, newFakeOpenAI(t, "sk-upstream"))
		a := g.a
		for _, tc := range []struct {
			name   string
			before int   // calls before the override
			after  []int // the statuses of the calls after it
			used   int64 // the tokens counted at the end
		}{
			// The first call fits (estimate ~18 of 20) and counts 18; the next one
			// cannot fit and is refused at once, in the same process.
			{"override, then use", 0, []int{200, 429}, 18},
			// The counters (36) are past 20 when the override arrives: the next call is refused.
			{"use, then override", 2, []int{429}, 36},
		} {
			t.Run(tc.name, func(t *testing.T) {
				o, key := g.payingTenant(t, "monthly"+strconv.Itoa(tc.before))
				call := func() *http.Response { return g.post(t, "/v1/chat/completions", key, chat("gpt-test", nil)) }
				for i := range tc.before {
					if r := call(); r.StatusCode != 200 {
						t.Fatalf("call %d before the override: %d %s", i+1, r.StatusCode, readAll(t, r))
					} else {
						readAll(t, r)
					}
				}
				a.want(a.do("PUT", "/api/v1/admin/tenants/"+o.ID+"/entitlements", g.op, map[string]any{"limits": map[string]int64{"monthlyTokens": 20}}, nil), 200, "")
				for i, want := range tc.after {
					r := call()
					if r.StatusCode != want {
						t.Errorf("call %d after the override: got %d, want %d: %s", i+1, r.StatusCode, want, readAll(t, r))
						continue
					}
					if want == 200 {
						readAll(t, r)
						continue
					}
					if status, typ, code, msg := openAIErr(t, r); typ != "insufficient_quota" || code != "insufficient_quota" || !strings.Contains(msg, "monthlyTokens") {
						t.Errorf("got %d %s %s %q", status, typ, code, msg)
					}
				}
				u := a.want(a.do("GET", "/api/v1/tenants/current/usage", o.OwnerToken, nil, nil), 200, "")
				if want := fmt.Sprintf(`"meter":"tokens","limit":"monthlyTokens","max":20,"used":%d`, tc.used); !strings.Contains(u.Raw, want) {
					t.Errorf("usage: want %s in %s", want, u.Raw)
				}
			})
		}
	})
}
