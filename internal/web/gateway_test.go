package web

import (
	"bufio"
	"bytes"
	"context"
	"database/sql"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"net/url"
	"os"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"gorm.io/gorm"

	"github.com/tenantgate/tenantgate/internal/gateway"
	"github.com/tenantgate/tenantgate/internal/kv"
	"github.com/tenantgate/tenantgate/internal/quota"
	"github.com/tenantgate/tenantgate/internal/store"
	"github.com/tenantgate/tenantgate/internal/store/storetest"
)

// fakeOpenAI is an upstream speaking OpenAI's wire format.
type fakeOpenAI struct {
	*httptest.Server
	key       string
	status    atomic.Int32 // answer this status instead of 200 when set
	noUsage   atomic.Bool  // answer without usage
	calls     atomic.Int32
	mu        sync.Mutex
	lastBody  map[string]any
	hold      chan struct{} // when set, a stream waits here after its first chunk
	holdPlain bool          // … and a non-streaming call before its answer
	parts     atomic.Int32  // when set, a stream sends this many content chunks
}

func newFakeOpenAI(t testing.TB, key string) *fakeOpenAI {
	f := &fakeOpenAI{key: key}
	f.Server = httptest.NewServer(http.HandlerFunc(f.serve))
	t.Cleanup(f.Close)
	return f
}

func (f *fakeOpenAI) body() map[string]any {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.lastBody
}

func (f *fakeOpenAI) serve(w http.ResponseWriter, r *http.Request) {
	f.calls.Add(1)
	if r.Header.Get("Authorization") != "Bearer "+f.key {
		w.WriteHeader(401)
		fmt.Fprint(w, `{"error":{"message":"Incorrect API key provided","type":"invalid_request_error","code":"invalid_api_key"}}`)
		return
	}
	if s := f.status.Load(); s != 0 {
		w.WriteHeader(int(s))
		fmt.Fprintf(w, `{"error":{"message":"upstream says %d","type":"server_error"}}`, s)
		return
	}
	var body map[string]any
	_ = json.NewDecoder(r.Body).Decode(&body)
	f.mu.Lock()
	f.lastBody = body
	f.mu.Unlock()
	model, _ := body["model"].(string)
	switch r.URL.Path {
	case "/v1/embeddings":
		fmt.Fprintf(w, `{"object":"list","data":[{"object":"embedding","index":0,"embedding":[0.1,0.2]}],"model":%q,"usage":{"prompt_tokens":4,"total_tokens":4}}`, model)
		return
	case "/v1/chat/completions":
	default:
		w.WriteHeader(404)
		return
	}
	usage := `,"usage":{"prompt_tokens":11,"completion_tokens":7,"total_tokens":18,"prompt_tokens_details":{"cached_tokens":3}}`
	if f.noUsage.Load() {
		usage = ""
	}
	if stream, _ := body["stream"].(bool); !stream {
		if f.hold != nil && f.holdPlain {
			select {
			case <-f.hold:
			case <-r.Context().Done():
				return
			}
		}
		w.Header().Set("Content-Type", "application/json")
		fmt.Fprintf(w, `{"id":"chatcmpl-1","object":"chat.completion","created":1,"model":%q,"choices":[{"index":0,"message":{"role":"assistant","content":"Hello there"},"finish_reason":"stop"}]%s}`, model, usage)
		return
	}
	w.Header().Set("Content-Type", "text/event-stream")
	fl := w.(http.Flusher)
	parts := []string{"Hel", "lo", " there"}
	if n := f.parts.Load(); n > 0 { // a longer answer: n chunks of one token each
		parts = make([]string, n)
		for i := range parts {
			parts[i] = " word"
		}
	}
	for i, part := range parts {
		fmt.Fprintf(w, "data: {\"id\":\"chatcmpl-1\",\"object\":\"chat.completion.chunk\",\"created\":1,\"model\":%q,\"choices\":[{\"index\":0,\"delta\":{\"content\":%q},\"finish_reason\":null}]}\n\n", model, part)
		fl.Flush()
		if i == 0 && f.hold != nil {
			select {
			case <-f.hold:
			case <-r.Context().Done():
				return
			}
		}
	}
	fmt.Fprintf(w, "data: {\"id\":\"chatcmpl-1\",\"object\":\"chat.completion.chunk\",\"created\":1,\"model\":%q,\"choices\":[{\"index\":0,\"delta\":{},\"finish_reason\":\"stop\"}]}\n\n", model)
	if opts, _ := body["stream_options"].(map[string]any); opts["include_usage"] == true && usage != "" {
		fmt.Fprintf(w, "data: {\"id\":\"chatcmpl-1\",\"object\":\"chat.completion.chunk\",\"created\":1,\"model\":%q,\"choices\":[]%s}\n\n", model, usage)
	}
	fmt.Fprint(w, "data: [DONE]\n\n")
	fl.Flush()
}

// gw sets up a tenant with an API key, a priced platform channel to up
// and a balance.
type gw struct {
	a      *api
	op     string
	org    org
	key    string
	chanID string
}

func newGW(t testing.TB, d store.Dialect, up *fakeOpenAI) *gw { return newGWOn(t, newAPI(t, d), up) }

// newGWOn is newGW on a server built already.
func newGWOn(t testing.TB, a *api, up *fakeOpenAI) *gw {
	g := &gw{a: a, op: a.operator(), org: a.signup("aigw")}
	g.key = a.want(a.do("POST", "/api/v1/api-keys", g.org.OwnerToken, map[string]any{"name": "app"}, nil), 201, "").str("secret")
	g.chanID = a.want(a.do("POST", "/api/v1/admin/channels", g.op, map[string]any{"name": "openai-main", "provider": "openai",
		"baseUrl": up.URL + "/v1", "keys": []string{up.key}, "models": []string{"gpt-test"}, "priority": 10}, nil), 201, "").str("id")
	a.want(a.do("PUT", "/api/v1/admin/prices/gpt-test", g.op, map[string]any{"inputPerMTok": "2.00", "cachedInputPerMTok": "1.00", "outputPerMTok": "8.00"}, nil), 200, "")
	a.want(a.do("POST", "/api/v1/admin/tenants/"+g.org.ID+"/topups", g.op, map[string]any{"amount": "1.00", "idempotencyKey": "seed"}, nil), 201, "")
	return g
}

// post sends a raw /v1 request with the key.
func (g *gw) post(t *testing.T, path, key string, body any) *http.Response {
	t.Helper()
	raw, _ := json.Marshal(body)
	req, _ := http.NewRequest("POST", g.a.url+path, bytes.NewReader(raw))
	req.Header.Set("Authorization", "Bearer "+key)
	req.Header.Set("Content-Type", "application/json")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	return resp
}

func readAll(t *testing.T, r *http.Response) string {
	t.Helper()
	defer r.Body.Close()
	b, err := io.ReadAll(r.Body)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

func (g *gw) balance(t *testing.T) string {
	return g.a.want(g.a.do("GET", "/api/v1/billing/balance", g.org.OwnerToken, nil, nil), 200, "").str("balance")
}

// ledgerEqualsLogs checks the invariant: the usage debits equal the logs' cost.
func (g *gw) ledgerEqualsLogs(t *testing.T) (logs int64) {
	t.Helper()
	var debits, costs int64
	storetest.Must(t, g.a.store.Tx(store.WithTenant(context.Background(), g.org.ID), func(tx *gorm.DB) error {
		if err := tx.Table("ledger_entries").Where("kind = 'usage'").Select("COALESCE(-SUM(amount_micros), 0)").Scan(&debits).Error; err != nil {
			return err
		}
		if err := tx.Table("ai_request_logs").Count(&logs).Error; err != nil {
			return err
		}
		return tx.Table("ai_request_logs").Select("COALESCE(SUM(cost_micros), 0)").Scan(&costs).Error
	}))
	if debits != costs {
		t.Errorf("ledger usage debits %d micros, request log costs %d micros", debits, costs)
	}
	return logs
}

func chat(model string, extra map[string]any) map[string]any {
	b := map[string]any{"model": model, "messages": []map[string]any{{"role": "user", "content": "Say hello"}}}
	for k, v := range extra {
		b[k] = v
	}
	return b
}

func TestGatewayChatBillsExactly(t *testing.T) {
	storetest.Each(t, func(t *testing.T, d store.Dialect) {
		up := newFakeOpenAI(t, "sk-upstream")
		g := newGW(t, d, up)
		r := g.post(t, "/v1/chat/completions", g.key, chat("gpt-test", nil))
		body := readAll(t, r)
		if r.StatusCode != 200 || !strings.Contains(body, `"Hello there"`) {
			t.Fatalf("chat: %d %s", r.StatusCode, body)
		}
		if up.body()["model"] != "gpt-test" {
			t.Errorf("upstream got model %v", up.body()["model"])
		}
		// (11-3)*2 + 3*1 + 7*8 = 75 micros, from 1.00.
		if got := g.balance(t); got != "0.999925" {
			t.Errorf("balance %s, want 0.999925", got)
		}
		logs := g.a.want(g.a.do("GET", "/api/v1/logs", g.org.OwnerToken, nil, nil), 200, "").items()
		if len(logs) != 1 {
			t.Fatalf("logs: %v", logs)
		}
		l := logs[0]
		if l["promptTokens"].(float64) != 11 || l["cachedTokens"].(float64) != 3 || l["completionTokens"].(float64) != 7 || l["cost"] != "0.000075" ||
			l["estimated"] != false || l["channelId"] != g.chanID || l["status"].(float64) != 200 || l["stream"] != false || l["prompt"] != nil {
			t.Errorf("log row: %v", l)
		}
		if n := g.ledgerEqualsLogs(t); n != 1 {
			t.Errorf("%d log rows", n)
		}
		// Embeddings and models.
		r = g.post(t, "/v1/embeddings", g.key, map[string]any{"model": "gpt-test", "input": "hi"})
		if body := readAll(t, r); r.StatusCode != 200 || !strings.Contains(body, `"embedding"`) {
			t.Errorf("embeddings: %d %s", r.StatusCode, body)
		}
		m := g.a.want(g.a.do("GET", "/v1/models", g.key, nil, nil), 200, "")
		if !strings.Contains(m.Raw, `"id":"gpt-test"`) || !strings.Contains(m.Raw, `"object":"list"`) {
			t.Errorf("models: %s", m.Raw)
		}
	})
}

// sse reads a stream's data lines.
func sse(t *testing.T, r *http.Response) []string {
	t.Helper()
	defer r.Body.Close()
	var out []string
	sc := bufio.NewScanner(r.Body)
	for sc.Scan() {
		if d, ok := strings.CutPrefix(sc.Text(), "data: "); ok {
			out = append(out, d)
		}
	}
	return out
}

func TestGatewayStreaming(t *testing.T) {
	storetest.Each(t, func(t *testing.T, d store.Dialect) {
		up := newFakeOpenAI(t, "sk-upstream")
		g := newGW(t, d, up)
		// Without include_usage the client gets no usage chunk, but the gateway asked for it and bills it.
		r := g.post(t, "/v1/chat/completions", g.key, chat("gpt-test", map[string]any{"stream": true}))
		if r.Header.Get("Content-Type") != "text/event-stream" {
			t.Fatalf("content type %q", r.Header.Get("Content-Type"))
		}
		events := sse(t, r)
		if len(events) != 5 || events[len(events)-1] != "[DONE]" || strings.Contains(strings.Join(events, ""), `"usage"`) {
			t.Errorf("stream without include_usage: %q", events)
		}
		if opts, _ := up.body()["stream_options"].(map[string]any); opts["include_usage"] != true {
			t.Errorf("the gateway did not ask upstream for usage: %v", up.body())
		}
		// With include_usage the usage chunk comes before [DONE].
		events = sse(t, g.post(t, "/v1/chat/completions", g.key, chat("gpt-test", map[string]any{"stream": true, "stream_options": map[string]any{"include_usage": true}})))
		if len(events) != 6 || !strings.Contains(events[4], `"completion_tokens":7`) || events[5] != "[DONE]" {
			t.Errorf("stream with include_usage: %q", events)
		}
		if got := g.balance(t); got != "0.999850" && got != "0.99985" {
			t.Errorf("balance %s after two streams, want 0.99985", got)
		}
		logs := g.a.want(g.a.do("GET", "/api/v1/logs", g.org.OwnerToken, nil, nil), 200, "").items()
		if len(logs) != 2 || logs[0]["stream"] != true || logs[0]["ttftMs"] == nil || logs[0]["estimated"] != false {
			t.Errorf("stream log rows: %v", logs)
		}
		// Upstream without usage: counted locally, marked estimated, and the
		// client that asked for usage still gets a usage chunk.
		up.noUsage.Store(true)
		events = sse(t, g.post(t, "/v1/chat/completions", g.key, chat("gpt-test", map[string]any{"stream": true, "stream_options": map[string]any{"include_usage": true}})))
		if len(events) != 6 || !strings.Contains(events[4], `"usage"`) || events[5] != "[DONE]" {
			t.Errorf("stream without upstream usage: %q", events)
		}
		l := g.a.want(g.a.do("GET", "/api/v1/logs?limit=1", g.org.OwnerToken, nil, nil), 200, "").items()[0]
		if l["estimated"] != true || l["completionTokens"].(float64) < 2 || l["promptTokens"].(float64) < 3 {
			t.Errorf("estimated row: %v", l)
		}
		g.ledgerEqualsLogs(t)
	})
}

func TestGatewayDisconnectMidStreamBillsWhatWasProduced(t *testing.T) {
	storetest.Each(t, func(t *testing.T, d store.Dialect) {
		up := newFakeOpenAI(t, "sk-upstream")
		up.hold = make(chan struct{})
		g := newGW(t, d, up)
		r := g.post(t, "/v1/chat/completions", g.key, chat("gpt-test", map[string]any{"stream": true}))
		br := bufio.NewReader(r.Body)
		line, err := br.ReadString('\n')
		if err != nil || !strings.Contains(line, "Hel") {
			t.Fatalf("first chunk: %q %v", line, err)
		}
		r.Body.Close() // the client goes away after the first chunk
		deadline := time.Now().Add(5 * time.Second)
		var l map[string]any
		for time.Now().Before(deadline) {
			if items := g.a.want(g.a.do("GET", "/api/v1/logs", g.org.OwnerToken, nil, nil), 200, "").items(); len(items) == 1 {
				l = items[0]
				break
			}
			time.Sleep(20 * time.Millisecond)
		}
		close(up.hold)
		if l == nil {
			t.Fatal("no log row for the interrupted stream")
		}
		if l["status"].(float64) != 499 || l["estimated"] != true || l["completionTokens"].(float64) < 1 || l["cost"] == "0.00" {
			t.Errorf("interrupted stream row: %v", l)
		}
		// Billed for the prompt and the one chunk produced, not the reservation and not zero.
		if b := g.balance(t); b == "1.00" || b < "0.99" {
			t.Errorf("balance after the interrupted stream: %s", b)
		}
		g.ledgerEqualsLogs(t)
	})
}

// waitLog polls the request log (query narrows it) until its newest row
// satisfies ok, for up to 10 s, and returns that row (nil if none did).
// Failed calls' rows are written without the client waiting for them.
func waitLog(t *testing.T, a *api, token, query string, ok func(map[string]any) bool) map[string]any {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for {
		items := a.want(a.do("GET", "/api/v1/logs?limit=1&"+query, token, nil, nil), 200, "").items()
		if len(items) > 0 && ok(items[0]) {
			return items[0]
		}
		if time.Now().After(deadline) {
			if len(items) > 0 {
				return items[0]
			}
			return nil
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// openAIErr decodes OpenAI's error shape.
func openAIErr(t *testing.T, r *http.Response) (status int, typ, code, msg string) {
	t.Helper()
	var e struct {
		Error struct {
			Message string  `json:"message"`
			Type    string  `json:"type"`
			Code    *string `json:"code"`
		} `json:"error"`
	}
	body := readAll(t, r)
	if err := json.Unmarshal([]byte(body), &e); err != nil || e.Error.Message == "" {
		t.Fatalf("not OpenAI's error shape: %d %s", r.StatusCode, body)
	}
	c := ""
	if e.Error.Code != nil {
		c = *e.Error.Code
	}
	return r.StatusCode, e.Error.Type, c, e.Error.Message
}

func TestGatewayErrorsInOpenAIShape(t *testing.T) {
	storetest.Each(t, func(t *testing.T, d store.Dialect) {
		up := newFakeOpenAI(t, "sk-upstream")
		g := newGW(t, d, up)
		a := g.a
		for _, tc := range []struct {
			name      string
			path, key string
			body      any
			status    int
			typ, code string
		}{
			{"no key", "/v1/chat/completions", "", chat("gpt-test", nil), 401, "authentication_error", "invalid_api_key"},
			{"bad key", "/v1/chat/completions", "tg_not-a-real-key", chat("gpt-test", nil), 401, "authentication_error", "invalid_api_key"},
			{"unknown model", "/v1/chat/completions", g.key, chat("gpt-nope", nil), 404, "invalid_request_error", "model_not_found"},
			{"no messages", "/v1/chat/completions", g.key, map[string]any{"model": "gpt-test", "messages": []any{}}, 400, "invalid_request_error", "invalid_request"},
			{"bad role", "/v1/chat/completions", g.key, map[string]any{"model": "gpt-test", "messages": []map[string]any{{"role": "wizard", "content": "x"}}}, 400, "invalid_request_error", "invalid_request"},
			{"not json", "/v1/chat/completions", g.key, "just a string", 400, "invalid_request_error", "invalid_request"},
			{"no route", "/v1/images/generations", g.key, map[string]any{}, 404, "invalid_request_error", "not_found"},
		} {
			t.Run(tc.name, func(t *testing.T) {
				status, typ, code, _ := openAIErr(t, g.post(t, tc.path, tc.key, tc.body))
				if status != tc.status || typ != tc.typ || code != tc.code {
					t.Errorf("got %d %s %s, want %d %s %s", status, typ, code, tc.status, tc.typ, tc.code)
				}
			})
		}
		// A key limited to other models.
		narrow := a.want(a.do("POST", "/api/v1/api-keys", g.org.OwnerToken, map[string]any{"name": "narrow", "allowedModels": []string{"gpt-other"}}, nil), 201, "").str("secret")
		if status, _, code, _ := openAIErr(t, g.post(t, "/v1/chat/completions", narrow, chat("gpt-test", nil))); status != 403 || code != "model_not_allowed" {
			t.Errorf("allowlist: %d %s", status, code)
		}
		// A model without a price is refused unless the tenant allows it.
		a.want(a.do("PATCH", "/api/v1/admin/channels/"+g.chanID, g.op, map[string]any{"models": []string{"gpt-test", "gpt-free"}}, nil), 200, "")
		if status, _, code, msg := openAIErr(t, g.post(t, "/v1/chat/completions", g.key, chat("gpt-free", nil))); status != 403 || code != "model_not_priced" || !strings.Contains(msg, "/api/v1/admin/prices/gpt-free") {
			t.Errorf("unpriced: %d %s %s", status, code, msg)
		}
		// Only an operator may let a tenant use unpriced models: the platform pays for them.
		a.want(a.do("PATCH", "/api/v1/gateway/settings", g.org.OwnerToken, map[string]any{"allowUnpriced": true}, nil), 403, "PERMISSION_DENIED")
		a.want(a.do("PATCH", "/api/v1/gateway/settings", g.op, map[string]any{"allowUnpriced": true}, hdr{"X-Tenant-ID": g.org.ID}), 200, "")
		if r := g.post(t, "/v1/chat/completions", g.key, chat("gpt-free", nil)); r.StatusCode != 200 {
			t.Errorf("unpriced but allowed: %d %s", r.StatusCode, readAll(t, r))
		}
		// An empty balance is 429 insufficient_quota on /v1 (OpenAI's answer; 402 on the control-plane API).
		poor := a.signup("poor")
		pk := a.want(a.do("POST", "/api/v1/api-keys", poor.OwnerToken, map[string]any{"name": "app"}, nil), 201, "").str("secret")
		if status, typ, code, msg := openAIErr(t, g.post(t, "/v1/chat/completions", pk, chat("gpt-test", nil))); status != 429 || typ != "insufficient_quota" || code != "insufficient_quota" {
			t.Errorf("no balance: %d %s %s %s", status, typ, code, msg)
		}
		// A member without ai:invoke (a custom role) is refused; a plain user may call.
		userKey := a.want(a.do("POST", "/api/v1/api-keys", poor.UserToken, map[string]any{"name": "mine"}, nil), 201, "")
		_ = userKey
	})
}

func TestGatewayFailoverAndHealth(t *testing.T) {
	storetest.Each(t, func(t *testing.T, d store.Dialect) {
		bad, good := newFakeOpenAI(t, "sk-bad"), newFakeOpenAI(t, "sk-good")
		g := newGW(t, d, bad) // priority 10
		a := g.a
		backup := a.want(a.do("POST", "/api/v1/admin/channels", g.op, map[string]any{"name": "backup", "provider": "openai_compatible",
			"baseUrl": good.URL + "/v1", "keys": []string{"sk-good"}, "models": []string{"gpt-test"}, "priority": 1}, nil), 201, "").str("id")
		// The first channel fails with 500: the next one answers, the client never sees the failure.
		bad.status.Store(500)
		for i := range 3 {
			r := g.post(t, "/v1/chat/completions", g.key, chat("gpt-test", nil))
			if body := readAll(t, r); r.StatusCode != 200 {
				t.Fatalf("request %d: %d %s", i, r.StatusCode, body)
			}
		}
		l := a.want(a.do("GET", "/api/v1/logs?limit=1", g.org.OwnerToken, nil, nil), 200, "").items()[0]
		if l["attempts"].(float64) != 2 || l["channelId"] != backup {
			t.Errorf("failover row: %v", l)
		}
		// After 3 failures of the last 4 (the test's setting) the channel is disabled and audited; it is never tried again.
		ch := a.want(a.do("GET", "/api/v1/admin/channels/"+g.chanID, g.op, nil, nil), 200, "")
		if ch.str("status") != "auto_disabled" || !strings.Contains(ch.str("statusReason"), "500") {
			t.Fatalf("after failures: %s", ch.Raw)
		}
		callsBefore := bad.calls.Load()
		g.post(t, "/v1/chat/completions", g.key, chat("gpt-test", nil)).Body.Close()
		if bad.calls.Load() != callsBefore {
			t.Error("a disabled channel was tried")
		}
		ev := a.want(a.do("GET", "/api/v1/audit?eventType=ai_channel.auto_disabled", g.op, nil, nil), 200, "").items()
		if len(ev) != 1 {
			t.Errorf("auto-disable audit events: %v", ev)
		}
		// The probe re-enables it once it answers (each probe after its backoff).
		probes := bad.calls.Load()
		a.clock.advance(time.Hour)
		g.a.gateway.ProbeDisabled(context.Background())
		if s := a.want(a.do("GET", "/api/v1/admin/channels/"+g.chanID, g.op, nil, nil), 200, "").str("status"); s != "auto_disabled" || bad.calls.Load() != probes+1 {
			t.Errorf("probe of a still-failing channel: %s after %d probes", s, bad.calls.Load()-probes)
		}
		bad.status.Store(0)
		g.a.gateway.ProbeDisabled(context.Background()) // its backoff is not over: no probe
		if bad.calls.Load() != probes+1 {
			t.Errorf("a channel was probed before its backoff was over")
		}
		a.clock.advance(time.Hour)
		g.a.gateway.ProbeDisabled(context.Background())
		if s := a.want(a.do("GET", "/api/v1/admin/channels/"+g.chanID, g.op, nil, nil), 200, "").str("status"); s != "enabled" {
			t.Errorf("probe of a recovered channel: %s", s)
		}
		// An invalid key disables at once; when no channel is left the client gets 502.
		a.want(a.do("PATCH", "/api/v1/admin/channels/"+g.chanID, g.op, map[string]any{"keys": []string{"sk-wrong"}}, nil), 200, "")
		good.status.Store(503)
		status, typ, code, _ := openAIErr(t, g.post(t, "/v1/chat/completions", g.key, chat("gpt-test", nil)))
		if status != 502 || typ != "api_error" || code != "upstream_error" {
			t.Errorf("all channels failing: %d %s %s", status, typ, code)
		}
		ch = a.want(a.do("GET", "/api/v1/admin/channels/"+g.chanID, g.op, nil, nil), 200, "")
		if ch.str("status") != "auto_disabled" || !strings.Contains(ch.str("statusReason"), "401") {
			t.Errorf("after an invalid key: %s", ch.Raw)
		}
		// Once every channel serving the model is disabled, the model still
		// exists: real calls go through one at a time per channel (half-open),
		// and the first that succeeds serves its client and brings its channel
		// back. (While those trial slots are taken, calls answer 503
		// no_healthy_channel with Retry-After: TestHalfOpenTrials.)
		a.want(a.do("PATCH", "/api/v1/admin/channels/"+backup, g.op, map[string]any{"keys": []string{"sk-wrong"}}, nil), 200, "")
		good.status.Store(0)
		g.post(t, "/v1/chat/completions", g.key, chat("gpt-test", nil)).Body.Close() // 401: the backup is disabled at once
		for _, id := range []string{g.chanID, backup} {
			if s := a.want(a.do("GET", "/api/v1/admin/channels/"+id, g.op, nil, nil), 200, "").str("status"); s != "auto_disabled" {
				t.Fatalf("channel %s: %s, want auto_disabled", id, s)
			}
		}
		goodCalls := good.calls.Load()
		if status, _, code, _ := openAIErr(t, g.post(t, "/v1/chat/completions", g.key, chat("gpt-test", nil))); status != 502 || code != "upstream_error" {
			t.Errorf("a trial call through channels that still fail: %d %s, want 502 upstream_error", status, code)
		}
		if good.calls.Load() != goodCalls+1 {
			t.Errorf("trial calls to the backup: %d, want 1", good.calls.Load()-goodCalls)
		}
		a.want(a.do("PATCH", "/api/v1/admin/channels/"+backup, g.op, map[string]any{"keys": []string{"sk-good"}}, nil), 200, "")
		if r := g.post(t, "/v1/chat/completions", g.key, chat("gpt-test", nil)); r.StatusCode != 200 {
			t.Errorf("a trial call through a channel that answers again: %d %s", r.StatusCode, readAll(t, r))
		} else {
			r.Body.Close()
		}
		for deadline := time.Now().Add(10 * time.Second); ; time.Sleep(20 * time.Millisecond) {
			if s := a.want(a.do("GET", "/api/v1/admin/channels/"+backup, g.op, nil, nil), 200, "").str("status"); s == "enabled" {
				break
			} else if time.Now().After(deadline) {
				t.Fatalf("the backup was not re-enabled after a successful trial call: %s", s)
			}
		}
		if ev := a.want(a.do("GET", "/api/v1/audit?eventType=ai_channel.re_enabled", g.op, nil, nil), 200, "").items(); len(ev) != 2 {
			t.Errorf("re-enable audit events: %d, want 2 (the probe, the trial)", len(ev))
		}
		if status, _, code, _ := openAIErr(t, g.post(t, "/v1/chat/completions", g.key, chat("gpt-nobody-serves", nil))); status != 404 || code != "model_not_found" {
			t.Errorf("a model no channel serves: %d %s, want 404 model_not_found", status, code)
		}
		// Failed calls are logged (the writer takes them without the client
		// waiting: wait for the row) and cost nothing.
		if l := waitLog(t, a, g.org.OwnerToken, "status=error", func(map[string]any) bool { return true }); l == nil || l["cost"] != "0.00" {
			t.Errorf("failed call rows: %v", l)
		}
		g.ledgerEqualsLogs(t)
		// Keys never leave the server.
		for _, path := range []string{"/api/v1/admin/channels", "/api/v1/admin/channels/" + g.chanID} {
			if raw := a.want(a.do("GET", path, g.op, nil, nil), 200, "").Raw; strings.Contains(raw, "sk-") {
				t.Errorf("%s shows a key: %s", path, raw)
			}
		}
	})
}

func TestGatewayBYOKIsolation(t *testing.T) {
	storetest.Each(t, func(t *testing.T, d store.Dialect) {
		up := newFakeOpenAI(t, "sk-tenant-own")
		g := newGW(t, d, newFakeOpenAI(t, "sk-platform"))
		a := g.a
		other := a.signup("otherco")
		otherKey := a.want(a.do("POST", "/api/v1/api-keys", other.OwnerToken, map[string]any{"name": "app"}, nil), 201, "").str("secret")
		// Tenant A brings its own key for a model only it has.
		own := a.want(a.do("POST", "/api/v1/channels", g.org.OwnerToken, map[string]any{"name": "our-vllm", "provider": "openai_compatible",
			"baseUrl": up.URL + "/v1", "keys": []string{"sk-tenant-own"}, "models": []string{"our-llama"}}, nil), 201, "")
		if strings.Contains(own.Raw, "sk-tenant-own") || own.str("scope") != "tenant" {
			t.Errorf("created channel: %s", own.Raw)
		}
		r := g.post(t, "/v1/chat/completions", g.key, chat("our-llama", nil))
		if body := readAll(t, r); r.StatusCode != 200 {
			t.Fatalf("BYOK call: %d %s", r.StatusCode, body)
		}
		// A BYOK call needs no price and costs the tenant nothing.
		if b := g.balance(t); b != "1.00" {
			t.Errorf("balance after a BYOK call: %s", b)
		}
		if l := a.want(a.do("GET", "/api/v1/logs?model=our-llama", g.org.OwnerToken, nil, nil), 200, "").items(); len(l) != 1 || l[0]["byok"] != true {
			t.Errorf("BYOK log: %v", l)
		}
		// Tenant B sees neither the channel nor the model, and cannot call it.
		a.want(a.do("GET", "/api/v1/channels/"+own.str("id"), other.OwnerToken, nil, nil), 404, "CHANNEL_NOT_FOUND")
		a.want(a.do("PATCH", "/api/v1/channels/"+own.str("id"), other.OwnerToken, map[string]any{"name": "stolen"}, nil), 404, "CHANNEL_NOT_FOUND")
		a.want(a.do("DELETE", "/api/v1/channels/"+own.str("id"), other.OwnerToken, nil, nil), 404, "CHANNEL_NOT_FOUND")
		if items := a.want(a.do("GET", "/api/v1/channels", other.OwnerToken, nil, nil), 200, "").items(); len(items) != 0 {
			t.Errorf("B lists A's channels: %v", items)
		}
		if m := a.want(a.do("GET", "/v1/models", otherKey, nil, nil), 200, ""); strings.Contains(m.Raw, "our-llama") {
			t.Errorf("B's models show A's: %s", m.Raw)
		}
		if status, _, code, _ := openAIErr(t, g.post(t, "/v1/chat/completions", otherKey, chat("our-llama", nil))); status != 404 || code != "model_not_found" {
			t.Errorf("B calling A's model: %d %s", status, code)
		}
		// B does not see A's request log either, and A's key cannot act in B.
		if items := a.want(a.do("GET", "/api/v1/logs", other.OwnerToken, nil, nil), 200, "").items(); len(items) != 0 {
			t.Errorf("B sees A's logs: %v", items)
		}
		a.want(a.do("GET", "/api/v1/logs", g.key, nil, hdr{"X-Tenant-Slug": other.Slug}), 404, "TENANT_NOT_FOUND")
		// Tenants' channels may not point at internal addresses unless the operator allows it (the test server does).
		// BYOK needs a plan with the byok feature: free has none.
		free := a.signup("freeco")
		a.want(a.do("PUT", "/api/v1/admin/tenants/"+free.ID+"/entitlements", g.op, map[string]any{"features": map[string]bool{"byok": false}}, nil), 200, "")
		a.want(a.do("POST", "/api/v1/channels", free.OwnerToken, map[string]any{"name": "x", "provider": "openai", "keys": []string{"k"}, "models": []string{"m"}}, nil), 403, "FEATURE_NOT_ENABLED")
		// BYOK-only routing: the platform channel is no longer used for A.
		a.want(a.do("PATCH", "/api/v1/gateway/settings", g.org.OwnerToken, map[string]any{"byokOnly": true}, nil), 200, "")
		if status, _, code, _ := openAIErr(t, g.post(t, "/v1/chat/completions", g.key, chat("gpt-test", nil))); status != 404 || code != "model_not_found" {
			t.Errorf("byokOnly: %d %s", status, code)
		}
	})
}

func TestGatewayConcurrentCallsNeverOverdraw(t *testing.T) {
	storetest.Each(t, func(t *testing.T, d store.Dialect) {
		up := newFakeOpenAI(t, "sk-upstream")
		g := newGW(t, d, up)
		a := g.a
		// Each call reserves 11 prompt-estimate + 100 output tokens at 8.00/MTok ≈ 0.0009; 0.005 covers a handful.
		poor := a.signup("tight")
		key := a.want(a.do("POST", "/api/v1/api-keys", poor.OwnerToken, map[string]any{"name": "app"}, nil), 201, "").str("secret")
		a.want(a.do("POST", "/api/v1/admin/tenants/"+poor.ID+"/topups", g.op, map[string]any{"amount": "0.005", "idempotencyKey": "t1"}, nil), 201, "")
		var wg sync.WaitGroup
		var ok, refused atomic.Int32
		for range 30 {
			wg.Add(1)
			go func() {
				defer wg.Done()
				r := g.post(t, "/v1/chat/completions", key, chat("gpt-test", map[string]any{"max_tokens": 100}))
				readAll(t, r)
				switch r.StatusCode {
				case 200:
					ok.Add(1)
				case 429:
					refused.Add(1)
				default:
					t.Errorf("status %d", r.StatusCode)
				}
			}()
		}
		wg.Wait()
		if ok.Load() == 0 || refused.Load() == 0 {
			t.Errorf("%d served, %d refused: want both", ok.Load(), refused.Load())
		}
		b := a.want(a.do("GET", "/api/v1/billing/balance", poor.OwnerToken, nil, nil), 200, "").str("balance")
		if strings.HasPrefix(b, "-") {
			t.Errorf("the balance went negative: %s", b)
		}
		var debits, costs int64
		storetest.Must(t, a.store.Tx(store.WithTenant(context.Background(), poor.ID), func(tx *gorm.DB) error {
			if err := tx.Table("ledger_entries").Where("kind = 'usage'").Select("COALESCE(-SUM(amount_micros), 0)").Scan(&debits).Error; err != nil {
				return err
			}
			return tx.Table("ai_request_logs").Select("COALESCE(SUM(cost_micros), 0)").Scan(&costs).Error
		}))
		if debits != costs || costs != int64(ok.Load())*75 {
			t.Errorf("debits %d, log costs %d, want %d × 75", debits, costs, ok.Load())
		}
	})
}

func TestGatewayRedactionAndContentStorage(t *testing.T) {
	storetest.Each(t, func(t *testing.T, d store.Dialect) {
		up := newFakeOpenAI(t, "sk-upstream")
		g := newGW(t, d, up)
		a := g.a
		a.want(a.do("PATCH", "/api/v1/gateway/settings", g.org.OwnerToken, map[string]any{"redactPatterns": []map[string]any{{"name": "x", "pattern": ""}}}, nil), 400, "INVALID_REQUEST")
		a.want(a.do("PATCH", "/api/v1/gateway/settings", g.org.OwnerToken, map[string]any{"redactPatterns": []map[string]any{{"name": "x", "pattern": "("}}}, nil), 400, "INVALID_REQUEST")
		a.want(a.do("PATCH", "/api/v1/gateway/settings", g.org.OwnerToken, map[string]any{"storeContent": true,
			"redactPatterns": []map[string]any{{"name": "email", "pattern": `[\w.+-]+@[\w-]+\.[\w.]+`, "replacement": "[email]"}}}, nil), 200, "")
		r := g.post(t, "/v1/chat/completions", g.key, map[string]any{"model": "gpt-test", "custom_field": 42, "messages": []map[string]any{
			{"role": "user", "content": []map[string]any{{"type": "text", "text": "mail ann@acme.test now"}}}}})
		if body := readAll(t, r); r.StatusCode != 200 {
			t.Fatalf("%d %s", r.StatusCode, body)
		}
		sent, _ := json.Marshal(up.body())
		if strings.Contains(string(sent), "ann@acme.test") || !strings.Contains(string(sent), "[email]") || !strings.Contains(string(sent), `"custom_field":42`) {
			t.Errorf("upstream received: %s", sent)
		}
		l := a.want(a.do("GET", "/api/v1/logs", g.org.OwnerToken, nil, nil), 200, "").items()[0]
		if p, _ := l["prompt"].(string); !strings.Contains(p, "[email]") || strings.Contains(p, "ann@") || l["completion"] != "Hello there" {
			t.Errorf("stored content: %v", l)
		}
	})
}

// A tenant with no balance is still served by its own channel for a model
// the platform also sells; the request log searches by request id and model.
func TestGatewayBYOKWithoutBalanceAndLogSearch(t *testing.T) {
	storetest.Each(t, func(t *testing.T, d store.Dialect) {
		g := newGW(t, d, newFakeOpenAI(t, "sk-platform"))
		a := g.a
		own := newFakeOpenAI(t, "sk-own")
		broke := a.signup("broke")
		key := a.want(a.do("POST", "/api/v1/api-keys", broke.OwnerToken, map[string]any{"name": "app"}, nil), 201, "").str("secret")
		if status, _, code, _ := openAIErr(t, g.post(t, "/v1/chat/completions", key, chat("gpt-test", nil))); status != 429 || code != "insufficient_quota" {
			t.Fatalf("no balance, no own channel: %d %s", status, code)
		}
		a.want(a.do("POST", "/api/v1/channels", broke.OwnerToken, map[string]any{"name": "mine", "provider": "openai_compatible",
			"baseUrl": own.URL + "/v1", "keys": []string{"sk-own"}, "models": []string{"gpt-test"}}, nil), 201, "")
		r := g.post(t, "/v1/chat/completions", key, chat("gpt-test", nil))
		if body := readAll(t, r); r.StatusCode != 200 || own.calls.Load() != 1 {
			t.Fatalf("own channel: %d %s (own calls %d)", r.StatusCode, body, own.calls.Load())
		}
		rid := r.Header.Get("X-Request-ID")
		for q, n := range map[string]int{rid: 1, "gpt-te": 1, "nothing-like-it": 0, "%": 0} {
			if got := a.want(a.do("GET", "/api/v1/logs?status=ok&q="+url.QueryEscape(q), broke.OwnerToken, nil, nil), 200, "").items(); len(got) != n {
				t.Errorf("q=%q: %d rows, want %d", q, len(got), n)
			}
		}
	})
}

// Regressions from the gateway's security review.
func TestGatewayReviewRegressions(t *testing.T) {
	storetest.Each(t, func(t *testing.T, d store.Dialect) {
		up := newFakeOpenAI(t, "sk-upstream")
		g := newGW(t, d, up)
		a := g.a
		// A call refused after its reservation (the request cannot be put to
		// the upstream) gives the reservation back: a leaked one would make
		// the next call 429 (insufficient_quota) on a balance that covers one call (about 0.033 reserved each).
		tight := a.signup("tightco")
		key := a.want(a.do("POST", "/api/v1/api-keys", tight.OwnerToken, map[string]any{"name": "app"}, nil), 201, "").str("secret")
		a.want(a.do("POST", "/api/v1/admin/tenants/"+tight.ID+"/topups", g.op, map[string]any{"amount": "0.20", "idempotencyKey": "t"}, nil), 201, "")
		// Anthropic cannot take n > 1: the adapter refuses the call after the reservation (2 × 0.033).
		a.want(a.do("POST", "/api/v1/admin/channels", g.op, map[string]any{"name": "claude", "provider": "anthropic",
			"baseUrl": "http://127.0.0.1:1", "keys": []string{"k"}, "models": []string{"claude-x"}}, nil), 201, "")
		a.want(a.do("PUT", "/api/v1/admin/prices/claude-x", g.op, map[string]any{"inputPerMTok": "2.00", "outputPerMTok": "8.00"}, nil), 200, "")
		for range 3 {
			r := g.post(t, "/v1/chat/completions", key, chat("claude-x", map[string]any{"n": 2}))
			if status, _, _, _ := openAIErr(t, r); status != 400 {
				t.Fatalf("n=2 to Anthropic: %d", status)
			}
		}
		if r := g.post(t, "/v1/chat/completions", key, chat("gpt-test", nil)); r.StatusCode != 200 {
			t.Errorf("after refused calls: %d %s (a reservation leaked)", r.StatusCode, readAll(t, r))
		}
		// n answers reserve n times: 20 × 4096 output tokens at 8.00/MTok does not fit 0.20.
		if status, _, code, _ := openAIErr(t, g.post(t, "/v1/chat/completions", key, chat("gpt-test", map[string]any{"n": 20}))); status != 429 || code != "insufficient_quota" {
			t.Errorf("n=20: %d %s", status, code)
		}
		// NUL in stored content (PostgreSQL text refuses it) still bills and answers.
		a.want(a.do("PATCH", "/api/v1/gateway/settings", g.org.OwnerToken, map[string]any{"storeContent": true,
			"redactPatterns": []map[string]any{{"name": "pin", "pattern": `\d{4}`}}}, nil), 200, "")
		before := g.balance(t)
		r := g.post(t, "/v1/chat/completions", g.key, chat("gpt-test", map[string]any{"stream": true,
			"messages": []map[string]any{{"role": "user", "content": "hi\u0000there"}}}))
		if events := sse(t, r); len(events) == 0 || events[len(events)-1] != "[DONE]" {
			t.Errorf("stream with NUL: %q", events)
		}
		if after := g.balance(t); after == before {
			t.Errorf("a call with NUL in its prompt was not billed (balance stays %s)", after)
		}
		// A case-variant duplicate of messages is refused, not redacted in one and sent in the other.
		if status, _, _, _ := openAIErr(t, g.post(t, "/v1/chat/completions", g.key, map[string]any{"model": "gpt-test",
			"messages": []map[string]any{{"role": "user", "content": "1234"}},
			"Messages": []map[string]any{{"role": "user", "content": "5678"}, {"role": "user", "content": "x"}}})); status != 400 {
			t.Errorf("case-variant messages: %d", status)
		}
		g.ledgerEqualsLogs(t)
		// Proxy credentials are refused rather than stored in the clear.
		a.want(a.do("POST", "/api/v1/admin/channels", g.op, map[string]any{"name": "p", "provider": "openai", "keys": []string{"k"},
			"models": []string{"m"}, "proxyUrl": "http://user:pass@proxy:3128"}, nil), 400, "INVALID_REQUEST")
	})
}

// Before the routing table is first loaded, /v1 answers 503 with Retry-After
// (not a permanent 404 model_not_found) and /readyz says not ready; once it is
// loaded, both serve.
func TestGatewayNotReadyUntilChannelsLoad(t *testing.T) {
	storetest.Each(t, func(t *testing.T, d store.Dialect) {
		a := newAPI(t, d)
		x := a.signup("warming")
		gw := gateway.New(a.store, gateway.Options{Billing: a.billing, Meter: a.quota, PlanExists: a.quota.PlanExists})
		h := NewServer(Deps{Store: a.store, Tenants: a.tenants, Identity: a.ident, RBAC: a.rbac, OIDC: a.oidc, Quota: a.quota,
			Limiter: quota.NewMemoryLimiter(), Counters: kv.NewMemory(), BaseDomain: testBaseDomain,
			PublicURL: "http://tenantgate.test", Version: "test", Billing: a.billing, Gateway: gw})
		get := func(path, token string) *httptest.ResponseRecorder {
			req := httptest.NewRequest(http.MethodGet, path, nil)
			if token != "" {
				req.Header.Set("Authorization", "Bearer "+token)
			}
			w := httptest.NewRecorder()
			h.ServeHTTP(w, req)
			return w
		}
		if w := get("/readyz", ""); w.Code != http.StatusServiceUnavailable {
			t.Errorf("/readyz before the channels load: %d %s, want 503", w.Code, w.Body)
		}
		w := get("/v1/models", x.UserToken)
		if w.Code != http.StatusServiceUnavailable || w.Header().Get("Retry-After") != "1" || !strings.Contains(w.Body.String(), "service_unavailable") {
			t.Errorf("/v1/models before the channels load: %d %v %s, want 503 with Retry-After: 1", w.Code, w.Header(), w.Body)
		}
		storetest.Must(t, gw.Reload(context.Background()))
		if w := get("/readyz", ""); w.Code != http.StatusOK {
			t.Errorf("/readyz after the channels load: %d %s", w.Code, w.Body)
		}
		if w := get("/v1/models", x.UserToken); w.Code != http.StatusOK {
			t.Errorf("/v1/models after the channels load: %d %s", w.Code, w.Body)
		}
	})
}

// A database that cannot serve (PostgreSQL refusing connections; SQLite's
// write lock held past the busy timeout) is answered 503
// SERVICE_UNAVAILABLE with Retry-After, on the API and on /v1, not 500; and
// /readyz says not ready. Nothing is changed, and it works again after.
func TestDatabaseUnavailableAnswers503(t *testing.T) {
	storetest.Each(t, func(t *testing.T, d store.Dialect) {
		a := newAPI(t, d)
		x := a.signup("dbdown")
		var restore func()
		if d == store.Postgres {
			admin, err := sql.Open("pgx", os.Getenv(storetest.EnvPostgres))
			storetest.Must(t, err)
			defer admin.Close()
			u, err := url.Parse(a.db.URL)
			storetest.Must(t, err)
			name := strings.TrimPrefix(u.Path, "/")
			_, err = admin.Exec("ALTER DATABASE " + name + " CONNECTION LIMIT 0")
			storetest.Must(t, err)
			_, err = admin.Exec("SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = $1 AND pid <> pg_backend_pid()", name)
			storetest.Must(t, err)
			restore = func() {
				_, err := admin.Exec("ALTER DATABASE " + name + " CONNECTION LIMIT -1")
				storetest.Must(t, err)
			}
		} else {
			// Another process holds the write lock: writes wait the busy timeout (10 s), then fail.
			other, err := sql.Open("sqlite", strings.TrimPrefix(a.db.URL, "sqlite:"))
			storetest.Must(t, err)
			defer other.Close()
			conn, err := other.Conn(context.Background())
			storetest.Must(t, err)
			_, err = conn.ExecContext(context.Background(), "BEGIN IMMEDIATE")
			storetest.Must(t, err)
			restore = func() { _, _ = conn.ExecContext(context.Background(), "ROLLBACK"); conn.Close() }
		}
		r := a.do("POST", "/api/v1/users", x.OwnerToken, map[string]any{"email": "late@dbdown.test", "password": pw}, nil)
		if r.Status != 503 || r.code() != "SERVICE_UNAVAILABLE" || r.Header.Get("Retry-After") == "" {
			t.Errorf("a write while the database is unavailable: %d %s %v, want 503 SERVICE_UNAVAILABLE with Retry-After", r.Status, r.Raw, r.Header)
		}
		if r := a.do("GET", "/readyz", "", nil, nil); r.Status != 503 {
			t.Errorf("/readyz while transactions fail: %d %s", r.Status, r.Raw)
		}
		restore()
		a.want(a.do("POST", "/api/v1/users", x.OwnerToken, map[string]any{"email": "late@dbdown.test", "password": pw}, nil), 201, "")
	})
}

// An upstream that sends its headers and a first event and then nothing is
// ended after the channel's idle timeout: the client gets an error event
// (not a call held open for minutes), what was delivered is billed, and the
// stall counts against the channel's health (three disable it here).
func TestGatewayStalledStreamIsEnded(t *testing.T) {
	storetest.Each(t, func(t *testing.T, d store.Dialect) {
		up := newFakeOpenAI(t, "sk-stall")
		up.hold = make(chan struct{}) // never closed: every stream stalls after "Hel"
		g := newGW(t, d, up)
		a := g.a
		a.want(a.do("PATCH", "/api/v1/admin/channels/"+g.chanID, g.op, map[string]any{"idleTimeoutMs": 50}, nil), 400, "INVALID_REQUEST")
		a.want(a.do("PATCH", "/api/v1/admin/channels/"+g.chanID, g.op, map[string]any{"idleTimeoutMs": 300, "maxDurationMs": 60000}, nil), 200, "")
		for i := range 3 {
			r := g.post(t, "/v1/chat/completions", g.key, chat("gpt-test", map[string]any{"stream": true}))
			body := readAll(t, r)
			if r.StatusCode != 200 || !strings.Contains(body, "Hel") || !strings.Contains(body, `"code":"upstream_error"`) || strings.Contains(body, "[DONE]") {
				t.Fatalf("stalled stream %d: %d %q, want the first chunk then an upstream_error event", i, r.StatusCode, body)
			}
		}
		l := waitLog(t, a, g.org.OwnerToken, "", func(l map[string]any) bool { return l["status"] == float64(502) })
		if l["status"] != float64(502) || !strings.Contains(fmt.Sprint(l["error"]), "idle timeout") || l["cost"] == "0.00" || l["completionTokens"] == float64(0) {
			t.Errorf("log row of a stalled stream: %v, want 502, the idle timeout named, and what was delivered billed", l)
		}
		if s := a.want(a.do("GET", "/api/v1/admin/channels/"+g.chanID, g.op, nil, nil), 200, "").str("status"); s != "auto_disabled" {
			t.Errorf("after three stalls the channel is %s, want auto_disabled", s)
		}
		g.ledgerEqualsLogs(t)
	})
}

// When the shutdown's grace runs out, calls still waiting for their answer
// end with a retryable 503 server_shutdown and count nothing against their
// channel's health (a rolling deploy must not disable a healthy channel).
func TestGatewayShutdownCutIsNotAChannelFailure(t *testing.T) {
	storetest.Each(t, func(t *testing.T, d store.Dialect) {
		up := newFakeOpenAI(t, "sk-cut")
		up.hold, up.holdPlain = make(chan struct{}), true // never answers
		g := newGW(t, d, up)
		a := g.a
		type answer struct {
			status int
			code   string
			retry  string
		}
		first := make(chan answer, 1)
		go func() {
			r := g.post(t, "/v1/chat/completions", g.key, chat("gpt-test", nil))
			status, _, code, _ := openAIErr(t, r)
			first <- answer{status, code, r.Header.Get("Retry-After")}
		}()
		waitFor(t, "the call to reach the upstream", func() bool { return up.calls.Load() == 1 })
		a.gateway.CutStreams()
		want := answer{503, "server_shutdown", "1"}
		if got := <-first; got != want {
			t.Errorf("a call in flight at the cut: %+v, want %+v", got, want)
		}
		for range 3 { // the test gateway disables a channel after 3 failures of 4
			r := g.post(t, "/v1/chat/completions", g.key, chat("gpt-test", map[string]any{"stream": true}))
			if status, _, code, _ := openAIErr(t, r); status != 503 || code != "server_shutdown" {
				t.Errorf("a call after the cut: %d %s, want 503 server_shutdown", status, code)
			}
		}
		if s := a.want(a.do("GET", "/api/v1/admin/channels/"+g.chanID, g.op, nil, nil), 200, "").str("status"); s != "enabled" {
			t.Errorf("after calls cut by a shutdown the channel is %s, want enabled", s)
		}
		g.ledgerEqualsLogs(t)
	})
}

// An uncapped call counts the cap the gateway sends it (4096 output tokens)
// against token rates, as it is reserved for: it may use that many.
func TestGatewayTokenRateCountsTheCapOfUncappedCalls(t *testing.T) {
	storetest.Each(t, func(t *testing.T, d store.Dialect) {
		up := newFakeOpenAI(t, "sk-tpm")
		g := newGW(t, d, up)
		key := g.a.want(g.a.do("POST", "/api/v1/api-keys", g.org.OwnerToken, map[string]any{"name": "tpm", "tokensPerMinute": 5000}, nil), 201, "").str("secret")
		g.a.clock.stop() // no refill between the two calls
		if r := g.post(t, "/v1/chat/completions", key, chat("gpt-test", nil)); r.StatusCode != 200 {
			t.Fatalf("the first uncapped call: %d %s", r.StatusCode, readAll(t, r))
		} else {
			r.Body.Close()
		}
		if status, _, code, _ := openAIErr(t, g.post(t, "/v1/chat/completions", key, chat("gpt-test", nil))); status != 429 || code != "rate_limit_exceeded" {
			t.Errorf("a second uncapped call within the minute: %d %s, want 429 rate_limit_exceeded (4096 + prompt counted for each)", status, code)
		}
		if r := g.post(t, "/v1/chat/completions", key, chat("gpt-test", map[string]any{"max_tokens": 16})); r.StatusCode != 200 {
			t.Errorf("a small capped call: %d %s", r.StatusCode, readAll(t, r))
		} else {
			r.Body.Close()
		}
	})
}
