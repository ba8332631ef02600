package gateway

import (
	"context"
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"slices"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/tenantgate/tenantgate/internal/egress"
	"github.com/tenantgate/tenantgate/internal/errs"
	"github.com/tenantgate/tenantgate/internal/gateway/wire"
	"github.com/tenantgate/tenantgate/internal/store"
)

func TestWeightedOrderFollowsWeights(t *testing.T) {
	heavy := &live{ch: Channel{ID: "heavy", Weight: 3}}
	light := &live{ch: Channel{ID: "light", Weight: 1}}
	first := map[string]int{}
	const n = 8000
	for range n {
		first[weightedOrder([]*live{light, heavy})[0].ch.ID]++
	}
	// 3:1 → heavy first 75 % of the time; 8000 draws put it within ±3 %.
	if share := float64(first["heavy"]) / n; share < 0.72 || share > 0.78 {
		t.Errorf("heavy first %.3f of the time, want about 0.75", share)
	}
	if got := weightedOrder([]*live{light}); len(got) != 1 || got[0] != light {
		t.Errorf("one channel: %v", got)
	}
}

func TestHealthWindow(t *testing.T) {
	var h health
	got := []int{}
	for _, failed := range []bool{true, true, false, true, false, false, false, false} {
		got = append(got, h.record(4, failed))
	}
	// Failures among the last 4 after each request.
	if diff := cmp.Diff([]int{1, 2, 2, 3, 2, 1, 1, 0}, got); diff != "" {
		t.Errorf("failures in window (-want +got):\n%s", diff)
	}
}

// TestTenantChannelsCannotReachInternalAddresses: a tenant's channel never
// connects to a loopback upstream (which sees no request) unless the
// operator allows private upstreams; a platform channel is trusted.
func TestTenantChannelsCannotReachInternalAddresses(t *testing.T) {
	var seen atomic.Int64
	up := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { seen.Add(1) }))
	defer up.Close()
	for _, c := range []struct {
		name         string
		tenant       string
		allowPrivate bool
		refused      bool
	}{
		{"tenant channel", "01a1b2c3-0000-7000-8000-000000000001", false, true},
		{"tenant channel, operator allows private upstreams", "01a1b2c3-0000-7000-8000-000000000001", true, false},
		{"platform channel", store.PlatformTenantID, false, false},
	} {
		g := New(nil, Options{AllowPrivateUpstreams: c.allowPrivate})
		before := seen.Load()
		res, err := g.client(&Channel{TenantID: c.tenant}).Get(up.URL)
		if err == nil {
			res.Body.Close()
		}
		_, internal := egress.IsInternalAddress(err)
		if internal != c.refused || (!c.refused && err != nil) {
			t.Errorf("%s: err = %v, want refused = %v", c.name, err, c.refused)
		}
		if got := seen.Load() - before; got != map[bool]int64{true: 0, false: 1}[c.refused] {
			t.Errorf("%s: the upstream saw %d requests", c.name, got)
		}
	}
}

func TestParseCall(t *testing.T) {
	for _, tc := range []struct {
		name  string
		op    wire.Op
		body  string
		field string // "" for a valid call
	}{
		{"chat", wire.OpChat, `{"model":"m","messages":[{"role":"user","content":"hi"}]}`, ""},
		{"chat parts", wire.OpChat, `{"model":"m","messages":[{"role":"user","content":[{"type":"text","text":"hi"}]}]}`, ""},
		{"no model", wire.OpChat, `{"messages":[{"role":"user","content":"hi"}]}`, "model"},
		{"bad model", wire.OpChat, `{"model":"a b","messages":[{"role":"user","content":"hi"}]}`, "model"},
		{"no messages", wire.OpChat, `{"model":"m","messages":[]}`, "messages"},
		{"bad role", wire.OpChat, `{"model":"m","messages":[{"role":"robot","content":"hi"}]}`, "messages[0].role"},
		{"bad content", wire.OpChat, `{"model":"m","messages":[{"role":"user","content":7}]}`, "messages[0].content"},
		{"negative max", wire.OpChat, `{"model":"m","max_tokens":-1,"messages":[{"role":"user","content":"hi"}]}`, "max_tokens"},
		{"wrong type", wire.OpChat, `{"model":"m","messages":"hi"}`, "?"},
		{"completion", wire.OpCompletion, `{"model":"m","prompt":"once upon"}`, ""},
		{"completion no prompt", wire.OpCompletion, `{"model":"m"}`, "prompt"},
		{"embedding", wire.OpEmbedding, `{"model":"e","input":["a","b"]}`, ""},
		{"embedding no input", wire.OpEmbedding, `{"model":"e"}`, "input"},
		{"not an object", wire.OpChat, `[1,2]`, "?"},
		{"max_tokens 0", wire.OpChat, `{"model":"m","max_tokens":0,"messages":[{"role":"user","content":"hi"}]}`, "max_tokens"},
		{"max_tokens at the top", wire.OpChat, `{"model":"m","max_tokens":1000000,"messages":[{"role":"user","content":"hi"}]}`, ""},
		{"case-folded top-level key", wire.OpChat, `{"model":"m","Max_Tokens":5,"messages":[{"role":"user","content":"hi"}]}`, "Max_Tokens"},
		{"case-folded key in a tool call", wire.OpChat, `{"model":"m","messages":[{"role":"assistant","tool_calls":[{"id":"c","type":"function","Function":{"name":"f","arguments":"{}"}}]},{"role":"tool","tool_call_id":"c","content":"x"}]}`, "messages[0].tool_calls[0].Function"},
		{"case-folded key in a tool", wire.OpChat, `{"model":"m","messages":[{"role":"user","content":"hi"}],"tools":[{"type":"function","function":{"NAME":"f"}}]}`, "tools[0].function.NAME"},
		{"unknown keys pass", wire.OpChat, `{"model":"m","logit_bias":{"MAX_TOKENS":1},"messages":[{"role":"user","content":"hi","x_Role":1}],"response_format":{"Type":"json_object"}}`, ""},
		{"escaped exact key", wire.OpChat, `{"model":"m","max\u005ftokens":5,"messages":[{"role":"user","content":"hi"}]}`, ""},
		{"escaped case-folded key", wire.OpChat, `{"model":"m","MAX\u005fTOKENS":5,"messages":[{"role":"user","content":"hi"}]}`, "MAX_TOKENS"},
		{"spaces and nesting", wire.OpChat, ` { "model" : "m" , "messages" : [ { "role" : "user" , "content" : [ { "type" : "text" , "text" : "}]\"{" } ] } , { "role":"user","CONTENT":"x"} ] } `, "messages[1].CONTENT"},
		{"embedding case-folded", wire.OpEmbedding, `{"model":"e","input":"a","Dimensions":3}`, "Dimensions"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := parseCall(tc.op, []byte(tc.body))
			e, _ := errs.As(err)
			switch {
			case tc.field == "" && err != nil:
				t.Errorf("valid call refused: %v", err)
			case tc.field != "" && (e == nil || e.Kind != errs.KindInvalid):
				t.Errorf("got %v, want a 400", err)
			case tc.field != "" && tc.field != "?" && e.Fields[tc.field] == "":
				t.Errorf("no problem named for %s: %v", tc.field, e.Fields)
			}
		})
	}
	cl, err := parseCall(wire.OpCompletion, []byte(`{"model":"m","prompt":["a","b"]}`))
	if err != nil || cl.Chat != nil {
		t.Errorf("several prompts have no chat form: %v %v", cl.Chat, err)
	}
	cl, _ = parseCall(wire.OpChat, []byte(`{"model":"m","stream":true,"stream_options":{"include_usage":true},"max_completion_tokens":9,"messages":[{"role":"user","content":"hi"}]}`))
	if !cl.Stream || !cl.includeUsage || cl.maxOut != 9 {
		t.Errorf("stream flags: %+v", cl)
	}
}

func TestRedactKeepsUnknownFields(t *testing.T) {
	set := (&Settings{RedactPatterns: []RedactRule{{Name: "card", Pattern: `\b\d{4}(?: \d{4}){3}\b`}}}).compile(nil)
	g := &Service{}
	cl, err := parseCall(wire.OpChat, []byte(`{"model":"m","logit_bias":{"42":1},"messages":[
		{"role":"user","content":"pay with 4242 4242 4242 4242 please"},
		{"role":"user","content":[{"type":"text","text":"or 1111 2222 3333 4444"},{"type":"image_url","image_url":{"url":"https://x/1111 2222 3333 4444.png"}}]}]}`))
	if err != nil {
		t.Fatal(err)
	}
	if err := g.redact(&cl, set); err != nil {
		t.Fatal(err)
	}
	body := string(cl.Body)
	if strings.Contains(body, "4242 4242") || strings.Contains(body, "or 1111") || !strings.Contains(body, `"logit_bias":{"42":1}`) {
		t.Errorf("redacted body: %s", body)
	}
	if !strings.Contains(body, "https://x/1111 2222 3333 4444.png") {
		t.Errorf("image URLs are not prompt text and stay: %s", body)
	}
	if got := cl.Chat.Messages[0].Text(); got != "pay with [REDACTED] please" {
		t.Errorf("decoded message: %q", got)
	}
}

func TestCompletionFromChat(t *testing.T) {
	out, err := chatToCompletion([]byte(`{"id":"chatcmpl-9","object":"chat.completion","created":5,"model":"c","choices":[{"index":0,"message":{"role":"assistant","content":"Paris"},"finish_reason":"stop"}],"usage":{"prompt_tokens":3,"completion_tokens":1,"total_tokens":4}}`))
	if err != nil {
		t.Fatal(err)
	}
	want := `{"id":"cmpl-9","object":"text_completion","created":5,"model":"c","choices":[{"text":"Paris","index":0,"logprobs":null,"finish_reason":"stop"}],"usage":{"prompt_tokens":3,"completion_tokens":1,"total_tokens":4}}`
	if string(out) != want {
		t.Errorf("completion:\n got %s\nwant %s", out, want)
	}
	out, err = chatChunkToCompletion([]byte(`{"id":"chatcmpl-9","object":"chat.completion.chunk","created":5,"model":"c","choices":[{"index":0,"delta":{"content":"Pa"},"finish_reason":null}]}`))
	if err != nil || !strings.Contains(string(out), `"text":"Pa"`) || !strings.Contains(string(out), `"object":"text_completion"`) {
		t.Errorf("chunk: %s %v", out, err)
	}
}

func TestChannelInputValidation(t *testing.T) {
	str := func(s string) *string { return &s }
	num := func(n int) *int { return &n }
	for _, tc := range []struct {
		name   string
		in     ChannelInput
		fields []string
	}{
		{"valid", ChannelInput{Name: str("a"), Provider: str("openai"), Keys: []string{"k"}, Models: []string{"m"}}, nil},
		{"compatible without key", ChannelInput{Name: str("a"), Provider: str("openai_compatible"), BaseURL: str("http://h:1/v1"), Models: []string{"*"}}, nil},
		{"everything wrong", ChannelInput{Name: str(""), Provider: str("bard"), BaseURL: str("ftp://x"), ProxyURL: str("gopher://p"),
			Priority: num(5000), Weight: num(0), MaxConcurrency: num(-1), TimeoutMs: num(-5), Plans: []string{"pro"},
			Headers: map[string]*string{"Host": str("evil")}},
			[]string{"name", "provider", "baseUrl", "proxyUrl", "priority", "weight", "maxConcurrency", "timeoutMs", "plans", "headers", "models", "keys"}},
		{"azure needs a base URL", ChannelInput{Name: str("a"), Provider: str("azure"), Keys: []string{"k"}, Models: []string{"d"}}, []string{"baseUrl"}},
		{"credentials in URL", ChannelInput{Name: str("a"), Provider: str("openai"), BaseURL: str("https://u:p@h/v1"), Keys: []string{"k"}, Models: []string{"m"}}, []string{"baseUrl"}},
		{"bad mapping", ChannelInput{Name: str("a"), Provider: str("openai"), Keys: []string{"k"}, ModelMapping: map[string]string{"x": "a b"}}, []string{"modelMapping"}},
		{"multi-line key", ChannelInput{Name: str("a"), Provider: str("openai"), Keys: []string{"k\nX-Evil: 1"}, Models: []string{"m"}}, []string{"keys"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c := &Channel{}
			_, _, err := tc.in.apply(c, true, false, nil)
			var got []string
			if e, ok := errs.As(err); ok {
				for f := range e.Fields {
					got = append(got, f)
				}
			}
			want := append([]string(nil), tc.fields...)
			slices.Sort(got)
			slices.Sort(want)
			if diff := cmp.Diff(want, got); diff != "" {
				t.Errorf("fields with problems (-want +got):\n%s", diff)
			}
		})
	}
}

func TestUsageChunkForStreamsWithoutUsage(t *testing.T) {
	c := usageChunk([]byte(`{"id":"x","object":"chat.completion.chunk","created":7,"model":"m","choices":[{"index":0,"delta":{"content":"a"}}]}`),
		wire.Usage{PromptTokens: 5, CompletionTokens: 2})
	var got map[string]any
	if err := json.Unmarshal(c, &got); err != nil {
		t.Fatal(err)
	}
	if got["id"] != "x" || len(got["choices"].([]any)) != 0 || got["usage"].(map[string]any)["total_tokens"].(float64) != 7 {
		t.Errorf("usage chunk: %s", c)
	}
}

// While every channel of a model is disabled by the health check, one real
// call at a time goes to each (half-open); only when those trial slots are
// taken is the model unhealthy (503), and a model nobody serves is not.
func TestHalfOpenTrials(t *testing.T) {
	g := New(nil, Options{})
	down := func(id string) *live {
		l := &live{ch: Channel{ID: id, TenantID: "p", Status: StatusAutoDisabled, Models: []string{"m"}}, provider: g.providers[ProviderOpenAI], health: &health{}}
		l.health.disabled.Store(true)
		return l
	}
	a, b := down("a"), down("b")
	g.byOwner = map[string][]*live{"p": {a, b}}
	g.byOwner[store.PlatformTenantID] = g.byOwner["p"]
	delete(g.byOwner, "p")

	first, unhealthy := g.candidates("t1", "pro", "m", false, nil)
	if len(first) != 2 || unhealthy || first[0].trial == 0 || first[1].trial == 0 {
		t.Fatalf("all channels down: candidates %v (unhealthy %v), want both as trials", first, unhealthy)
	}
	second, unhealthy := g.candidates("t1", "pro", "m", false, nil)
	if len(second) != 0 || !unhealthy {
		t.Fatalf("trial slots taken: candidates %v (unhealthy %v), want none and unhealthy", second, unhealthy)
	}
	for _, c := range first {
		if c.l == a { // a's trial ended (twice is harmless); b's goes on
			c.endTrial()
			c.endTrial()
		}
	}
	third, _ := g.candidates("t1", "pro", "m", false, nil)
	if len(third) != 1 || third[0].l != a {
		t.Fatalf("after a's trial: %v, want a", third)
	}
	if none, unhealthy := g.candidates("t1", "pro", "other", false, nil); len(none) != 0 || unhealthy {
		t.Fatalf("a model nobody serves: %v unhealthy %v, want none and not unhealthy", none, unhealthy)
	}
}

// A disabled channel is probed after 1 s, then after waits that double with
// every failed probe up to ProbeEvery, not only every 30 s.
func TestProbeBackoff(t *testing.T) {
	var calls atomic.Int64
	up := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		calls.Add(1)
		w.WriteHeader(http.StatusInternalServerError)
	}))
	defer up.Close()
	now := time.Unix(1_800_000_000, 0)
	g := New(nil, Options{Now: func() time.Time { return now }, ProbeFirst: time.Second, ProbeEvery: 8 * time.Second})
	l := &live{ch: Channel{ID: "a", TenantID: store.PlatformTenantID, Status: StatusAutoDisabled, Models: []string{"m"}, BaseURL: up.URL + "/v1",
		Provider: ProviderCompatible}, provider: g.providers[ProviderCompatible], client: up.Client(), health: &health{}}
	l.health.disabled.Store(true)
	l.health.backoff.Store(int64(time.Second))
	l.health.probeAt.Store(now.Add(time.Second).UnixNano())
	g.byOwner = map[string][]*live{store.PlatformTenantID: {l}}

	var probedAt []time.Duration
	for step := time.Duration(0); step <= 40*time.Second; step += 500 * time.Millisecond {
		before := calls.Load()
		g.ProbeDisabled(context.Background())
		if calls.Load() != before {
			probedAt = append(probedAt, step)
		}
		now = now.Add(500 * time.Millisecond)
	}
	want := []time.Duration{1 * time.Second, 3 * time.Second, 7 * time.Second, 15 * time.Second, 23 * time.Second, 31 * time.Second, 39 * time.Second}
	if diff := cmp.Diff(probedAt, want); diff != "" {
		t.Errorf("probe times (-got +want):\n%s", diff)
	}
}

// BenchmarkParseCall measures reading a typical chat body (the case check
// included).
func BenchmarkParseCall(b *testing.B) {
	body := []byte(`{"model":"gpt-4o-mini","max_tokens":256,"temperature":0.2,"stream":true,"stream_options":{"include_usage":true},"messages":[` +
		`{"role":"system","content":"You are a helpful assistant. Answer briefly."},` +
		`{"role":"user","content":"` + strings.Repeat("What is the capital of France? ", 20) + `"},` +
		`{"role":"assistant","content":"Paris."},{"role":"user","content":"And of Italy?"}]}`)
	b.ReportAllocs()
	for b.Loop() {
		if _, err := parseCall(wire.OpChat, body); err != nil {
			b.Fatal(err)
		}
	}
}

// An attempt is ended with its reason when its answer stops sending for the
// idle timeout or when it runs past its total deadline; a read that returns
// data resets the idle timer, and a call the gateway stops itself has no
// such reason.
func TestUpstreamCallDeadlines(t *testing.T) {
	u, end := newUpstreamCall(context.Background(), time.Hour)
	defer end()
	pr, pw := io.Pipe()
	body := u.watch(pr, 50*time.Millisecond)
	go func() { _, _ = pw.Write([]byte("data")) }()
	buf := make([]byte, 8)
	if n, err := body.Read(buf); n != 4 || err != nil {
		t.Fatalf("read %d, %v", n, err)
	}
	<-u.ctx.Done() // nothing more is sent: the idle timer ends the call
	if !errors.Is(u.cutShort(), errStalled) {
		t.Errorf("a stalled answer: cause %v, want errStalled", context.Cause(u.ctx))
	}
	_ = body.Close()

	long, endLong := newUpstreamCall(context.Background(), 20*time.Millisecond)
	defer endLong()
	<-long.ctx.Done()
	if !errors.Is(long.cutShort(), errTooLong) {
		t.Errorf("a call past its deadline: cause %v, want errTooLong", context.Cause(long.ctx))
	}

	stopped, endStopped := newUpstreamCall(context.Background(), time.Hour)
	stopped.stop()
	endStopped()
	if c := stopped.cutShort(); c != nil {
		t.Errorf("a call the gateway stopped: %v, want no reason", c)
	}
}
