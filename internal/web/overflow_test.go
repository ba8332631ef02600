package web

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"gorm.io/gorm"

	"github.com/tenantgate/tenantgate/internal/money"
	"github.com/tenantgate/tenantgate/internal/quota"
	"github.com/tenantgate/tenantgate/internal/store"
	"github.com/tenantgate/tenantgate/internal/store/storetest"
)

// wantField fails unless r is a 400 whose details (or, on /v1, param) name field.
func (a *api) wantField(r resp, field string) {
	a.t.Helper()
	if r.Status != 400 {
		a.t.Fatalf("got %d, want 400 naming %q; body: %s", r.Status, field, r.Raw)
	}
	e, _ := r.Body["error"].(map[string]any)
	if p, ok := e["param"].(string); ok && p == field {
		return
	}
	details, _ := e["details"].(map[string]any)
	fields, _ := details["fields"].(map[string]any)
	if _, ok := fields[field]; !ok {
		a.t.Fatalf("the 400 does not name %q: %s", field, r.Raw)
	}
}

// TestUsageValuesCannotWrap is issue 9's metering attack: a usage event near
// 2^63 (or two of 2^62) wrapped the monthly-token check and the period
// counter, after which the meter answered 500 and the aggregation failed.
// Values are now bounded (400 naming the field), the counter saturates
// instead of wrapping even when many valid batches would pass 2^63, and the
// aggregation sums past int64 without failing.
func TestUsageValuesCannotWrap(t *testing.T) {
	storetest.Each(t, func(t *testing.T, d store.Dialect) {
		a := newAPI(t, d)
		x := a.signup("wrapper")
		op := a.operator()
		svc := hdr{"X-Service-Token": testServiceToken, "X-Service-Name": "billing"}
		a.want(a.do("PUT", "/api/v1/admin/tenants/"+x.ID+"/entitlements", op, map[string]any{"limits": map[string]int64{"monthlyTokens": 1000}}, nil), 200, "")

		// Out-of-range values are refused, naming the field, on every entry point.
		const big = int64(1) << 62
		a.wantField(a.do("POST", "/api/v1/usage/events", x.OwnerToken, map[string]any{"id": "w1", "meter": "tokens", "value": big}, nil), "value")
		a.wantField(a.do("POST", "/api/v1/usage/events", x.OwnerToken, map[string]any{"events": []map[string]any{
			{"id": "w2", "meter": "tokens", "value": 1}, {"id": "w3", "meter": "tokens", "value": big}}}, nil), "events[1].value")
		a.wantField(a.do("POST", "/internal/metrics/usage", "", map[string]any{"id": "w4", "tenantId": x.ID, "resourceType": "tokens", "value": big}, svc), "value")
		y := a.signup("wrapper-other")
		a.wantField(a.do("POST", "/internal/metrics/usage", "", map[string]any{"events": []map[string]any{
			{"id": "w6", "tenantId": y.ID, "resourceType": "tokens", "value": 1},
			{"id": "w7", "tenantId": x.ID, "resourceType": "tokens", "value": big}}}, svc), "events[1].value")
		a.wantField(a.do("POST", "/api/v1/usage/events", x.OwnerToken, map[string]any{"id": "w5", "meter": "tokens", "value": quota.MaxEventValue + 1}, nil), "value")
		a.wantField(a.do("POST", "/internal/quota/check", "", map[string]any{"tenantId": x.ID, "meter": "tokens", "amount": big}, svc), "amount")
		// The old attack: two of 2^62 wrapped the counter negative. Now refused, and the limit holds.
		a.want(a.do("POST", "/internal/quota/check", "", map[string]any{"tenantId": x.ID, "meter": "tokens", "amount": 1}, svc), 200, "")

		// Ten batches of 1000 events at the largest value add 10^19 to one
		// counter: more than int64 holds. Every batch is accepted, the counter
		// stops at the top instead of wrapping, and the limit stays used up.
		for b := range 10 {
			evs := make([]map[string]any, quota.MaxBatch)
			for i := range evs {
				evs[i] = map[string]any{"id": fmt.Sprintf("m%d-%d", b, i), "meter": "tokens", "value": quota.MaxEventValue}
			}
			a.want(a.do("POST", "/api/v1/usage/events", x.OwnerToken, map[string]any{"events": evs}, nil), 202, "")
		}
		a.want(a.do("POST", "/api/v1/usage/events", x.OwnerToken, map[string]any{"id": "after", "meter": "tokens", "value": 5}, nil), 202, "")
		u := a.want(a.do("GET", "/api/v1/tenants/current/usage", x.OwnerToken, nil, nil), 200, "")
		if !strings.Contains(u.Raw, `"meter":"tokens","limit":"monthlyTokens","max":1000,"used":9223372036854775807`) {
			t.Errorf("the tokens counter should stop at 2^63-1: %s", u.Raw)
		}
		a.want(a.do("POST", "/internal/quota/check", "", map[string]any{"tenantId": x.ID, "meter": "tokens", "amount": 0}, svc), 429, "TENANT_QUOTA_EXCEEDED")
		// The aggregation sums 10^19 (and 5) without failing, and says "at least".
		from, to := time.Now().UTC().Add(-time.Hour).Format(time.RFC3339), time.Now().UTC().Add(time.Minute).Format(time.RFC3339)
		g := a.want(a.do("GET", "/api/v1/tenants/current/usage?meter=tokens&groupBy=day&from="+from+"&to="+to, x.OwnerToken, nil, nil), 200, "")
		if !strings.Contains(g.Raw, `"total":9223372036854775807`) {
			t.Errorf("aggregation past int64: %s", g.Raw)
		}
		// Below the cap the aggregation stays exact.
		a.want(a.do("POST", "/api/v1/usage/events", x.OwnerToken, map[string]any{"events": []map[string]any{
			{"id": "s1", "meter": "storage", "value": quota.MaxEventValue}, {"id": "s2", "meter": "storage", "value": 999_999_999}, {"id": "s3", "meter": "storage", "value": 1}}}, nil), 202, "")
		g = a.want(a.do("GET", "/api/v1/tenants/current/usage?meter=storage&groupBy=hour&from="+from+"&to="+to, x.OwnerToken, nil, nil), 200, "")
		if want := fmt.Sprintf(`"total":%d`, quota.MaxEventValue+1_000_000_000); !strings.Contains(g.Raw, want) {
			t.Errorf("exact aggregation: %s, want %s", g.Raw, want)
		}
	})
}

// TestLimitsAreBounded: plan limits and tenant overrides outside -1 and
// 0..10^15 are refused naming the limit; a rate above 6e10 a minute (which
// made the in-memory limiter divide by zero) is within range and works.
func TestLimitsAreBounded(t *testing.T) {
	storetest.Each(t, func(t *testing.T, d store.Dialect) {
		a := newAPI(t, d)
		x := a.signup("limited")
		op := a.operator()
		for _, v := range []int64{-2, quota.MaxLimit + 1, 1 << 62} {
			a.wantField(a.do("PUT", "/api/v1/admin/tenants/"+x.ID+"/entitlements", op, map[string]any{"limits": map[string]int64{"tokensPerMinute": v}}, nil), "limits.tokensPerMinute")
			a.wantField(a.do("PUT", "/api/v1/admin/plans/big", op, map[string]any{"displayName": "Big", "isolation": "shared",
				"limits": map[string]int64{"monthlyTokens": v}}, nil), "limits.monthlyTokens")
		}
		a.want(a.do("PUT", "/api/v1/admin/tenants/"+x.ID+"/entitlements", op, map[string]any{"limits": map[string]int64{
			"tokensPerMinute": quota.MaxLimit, "requestsPerMinute": 100_000_000_000}}, nil), 200, "")
		// The request limiter takes the huge requestsPerMinute without failing.
		for range 3 {
			a.want(a.do("GET", "/api/v1/tenants/current", x.OwnerToken, nil, nil), 200, "")
		}
	})
}

// meteredUpstream is an OpenAI-compatible upstream that reads its body as
// a real one does (case-sensitively) and answers as many tokens as the cap
// it was sent allows, or defaultLen per answer when it was sent none.
type meteredUpstream struct {
	*httptest.Server
	calls atomic.Int32
	mu    sync.Mutex
	last  map[string]any
}

const defaultLen = 100_000

func newMeteredUpstream(t *testing.T) *meteredUpstream {
	u := &meteredUpstream{}
	u.Server = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		u.calls.Add(1)
		var body map[string]any
		_ = json.NewDecoder(r.Body).Decode(&body)
		u.mu.Lock()
		u.last = body
		u.mu.Unlock()
		per := int64(defaultLen)
		for _, k := range []string{"max_completion_tokens", "max_tokens"} {
			if v, ok := body[k].(float64); ok {
				per = min(int64(v), defaultLen)
				break
			}
		}
		n := int64(1)
		if v, ok := body["n"].(float64); ok {
			n = int64(v)
		}
		model, _ := body["model"].(string)
		w.Header().Set("Content-Type", "application/json")
		usage := fmt.Sprintf(`"usage":{"prompt_tokens":10,"completion_tokens":%d,"total_tokens":%d}`, per*n, 10+per*n)
		if r.URL.Path == "/v1/completions" {
			fmt.Fprintf(w, `{"id":"cmpl-1","object":"text_completion","created":1,"model":%q,"choices":[{"index":0,"text":"long","finish_reason":"length"}],%s}`, model, usage)
			return
		}
		fmt.Fprintf(w, `{"id":"chatcmpl-1","object":"chat.completion","created":1,"model":%q,"choices":[{"index":0,"message":{"role":"assistant","content":"long"},"finish_reason":"length"}],%s}`, model, usage)
	}))
	t.Cleanup(u.Close)
	return u
}

func (u *meteredUpstream) body() map[string]any {
	u.mu.Lock()
	defer u.mu.Unlock()
	return u.last
}

// newMeteredGW is a tenant with a key, a platform channel of provider to
// up, an output price (per million tokens, input free) and a balance.
func newMeteredGW(t *testing.T, d store.Dialect, up *meteredUpstream, provider, outputPrice, balance string) *gw {
	a := newAPI(t, d)
	g := &gw{a: a, op: a.operator(), org: a.signup("metered-gw")}
	g.key = a.want(a.do("POST", "/api/v1/api-keys", g.org.OwnerToken, map[string]any{"name": "app"}, nil), 201, "").str("secret")
	g.chanID = a.want(a.do("POST", "/api/v1/admin/channels", g.op, map[string]any{"name": "up", "provider": provider,
		"baseUrl": up.URL + "/v1", "keys": []string{"sk-up"}, "models": []string{"gpt-test"}, "priority": 10}, nil), 201, "").str("id")
	a.want(a.do("PUT", "/api/v1/admin/prices/gpt-test", g.op, map[string]any{"inputPerMTok": "0", "outputPerMTok": outputPrice}, nil), 200, "")
	a.want(a.do("POST", "/api/v1/admin/tenants/"+g.org.ID+"/topups", g.op, map[string]any{"amount": balance, "idempotencyKey": "seed"}, nil), 201, "")
	return g
}

// raw sends a /v1 body exactly as written.
func (g *gw) raw(t *testing.T, path, body string) resp {
	t.Helper()
	return g.a.do("POST", path, g.key, body, nil)
}

// TestGatewayPricesWhatItForwards is issue 9's "bills one request and
// forwards another": Go's decoder reads "MAX_TOKENS" as max_tokens (a hold
// for 1 token) while the upstream, reading keys as written, used its
// default length (balance 2.00 → -98.00). Every key that matches a field
// only when case is ignored is refused with a 400 naming it, in OpenAI's
// shape, before anything is reserved or sent.
func TestGatewayPricesWhatItForwards(t *testing.T) {
	storetest.Each(t, func(t *testing.T, d store.Dialect) {
		up := newMeteredUpstream(t)
		g := newMeteredGW(t, d, up, "openai", "1000.00", "2.00")
		msgs := `"messages":[{"role":"user","content":"hi"}]`
		for _, tc := range []struct{ path, body, param string }{
			{"/v1/chat/completions", `{"model":"gpt-test",` + msgs + `,"MAX_TOKENS":1}`, "MAX_TOKENS"},
			{"/v1/chat/completions", `{"model":"gpt-test",` + msgs + `,"max_to\u212Aens":1}`, "max_to\u212Aens"}, // the Kelvin sign folds to k
			{"/v1/chat/completions", `{"model":"gpt-test",` + msgs + `,"Max_Completion_Tokens":1}`, "Max_Completion_Tokens"},
			{"/v1/chat/completions", `{"model":"gpt-test",` + msgs + `,"max_tokens":5,"N":1}`, "N"},
			{"/v1/chat/completions", `{"Model":"gpt-test",` + msgs + `}`, "Model"},
			{"/v1/chat/completions", `{"model":"gpt-test",` + msgs + `,"Stream":false}`, "Stream"},
			{"/v1/chat/completions", `{"model":"gpt-test",` + msgs + `,"stream":true,"STREAM_OPTIONS":{"include_usage":true}}`, "STREAM_OPTIONS"},
			{"/v1/chat/completions", `{"model":"gpt-test",` + msgs + `,"stream":true,"stream_options":{"Include_Usage":true}}`, "stream_options.Include_Usage"},
			{"/v1/chat/completions", `{"model":"gpt-test","Messages":[{"role":"user","content":"hi"}],` + msgs + `}`, "Messages"},
			{"/v1/chat/completions", `{"model":"gpt-test","messages":[{"role":"user","content":"hi"},{"role":"user","Content":"secret"}]}`, "messages[1].Content"},
			{"/v1/completions", `{"model":"gpt-test","prompt":"hi","Max_Tokens":1}`, "Max_Tokens"},
			{"/v1/completions", `{"model":"gpt-test","prompt":"hi","max_tokens":1,"Best_Of":2}`, "Best_Of"},
			{"/v1/completions", `{"model":"gpt-test","PROMPT":"x","prompt":"hi","max_tokens":1}`, "PROMPT"},
			{"/v1/embeddings", `{"model":"gpt-test","Input":"x","input":"hi"}`, "Input"},
		} {
			r := g.raw(t, tc.path, tc.body)
			if r.Status != 400 || r.code() != "INVALID_REQUEST" {
				t.Errorf("%s %s: got %d %s, want 400; %s", tc.path, tc.body, r.Status, r.code(), r.Raw)
				continue
			}
			e, _ := r.Body["error"].(map[string]any)
			if p, _ := e["param"].(string); p != tc.param || e["type"] != "invalid_request_error" {
				t.Errorf("%s: the 400 names %v (type %v), want %q: %s", tc.body, e["param"], e["type"], tc.param, r.Raw)
			}
		}
		if n := up.calls.Load(); n != 0 {
			t.Errorf("the upstream was called %d times for refused bodies", n)
		}
		if got := g.balance(t); got != "2.00" {
			t.Errorf("balance %s after refused calls, want 2.00", got)
		}
		// Spelt as the API spells it, the same call is priced and capped as sent.
		r := g.raw(t, "/v1/chat/completions", `{"model":"gpt-test",`+msgs+`,"max_tokens":1}`)
		if r.Status != 200 {
			t.Fatalf("a correct call: %d %s", r.Status, r.Raw)
		}
		if got, want := up.body()["max_tokens"], float64(1); got != want {
			t.Errorf("upstream max_tokens %v, want %v", got, want)
		}
		if got := g.balance(t); got != "1.999" {
			t.Errorf("balance %s after one output token at 1000.00/MTok, want 1.999", got)
		}
	})
}

// TestGatewayBoundsCounts is issue 9's reservation wrap: max_tokens 2^62
// times n 4 wrapped to a hold of 0 and a balance of 1.00 ended at -3999.00.
// max_tokens and max_completion_tokens are 1..1000000, n and best_of 1..128
// (400 naming the field); nothing is reserved, sent or debited for them.
func TestGatewayBoundsCounts(t *testing.T) {
	storetest.Each(t, func(t *testing.T, d store.Dialect) {
		up := newMeteredUpstream(t)
		g := newMeteredGW(t, d, up, "openai", "1000.00", "1.00")
		msgs := `"messages":[{"role":"user","content":"hi"}]`
		for _, tc := range []struct{ path, body, param string }{
			{"/v1/chat/completions", `{"model":"gpt-test",` + msgs + `,"max_tokens":4611686018427387904,"n":4}`, "max_tokens"},
			{"/v1/chat/completions", `{"model":"gpt-test",` + msgs + `,"max_completion_tokens":4611686018427387904,"n":4}`, "max_completion_tokens"},
			{"/v1/chat/completions", `{"model":"gpt-test",` + msgs + `,"max_tokens":1000001}`, "max_tokens"},
			{"/v1/chat/completions", `{"model":"gpt-test",` + msgs + `,"max_tokens":0}`, "max_tokens"},
			{"/v1/chat/completions", `{"model":"gpt-test",` + msgs + `,"max_tokens":-1}`, "max_tokens"},
			{"/v1/chat/completions", `{"model":"gpt-test",` + msgs + `,"max_tokens":10,"n":129}`, "n"},
			{"/v1/chat/completions", `{"model":"gpt-test",` + msgs + `,"max_tokens":10,"n":0}`, "n"},
			{"/v1/completions", `{"model":"gpt-test","prompt":"hi","max_tokens":4611686018427387904,"n":4}`, "max_tokens"},
			{"/v1/completions", `{"model":"gpt-test","prompt":"hi","max_tokens":10,"best_of":129}`, "best_of"},
			{"/v1/completions", `{"model":"gpt-test","prompt":"hi","max_tokens":10,"n":-5}`, "n"},
			{"/v1/chat/completions", `{"model":"gpt-test",` + msgs + `,"max_tokens":18446744073709551616}`, "max_tokens"},
			{"/v1/chat/completions", `{"model":"gpt-test",` + msgs + `,"max_tokens":1,"n":1e20}`, "n"},
			{"/v1/completions", `{"model":"gpt-test","prompt":"hi","max_tokens":1,"best_of":2.5}`, "best_of"},
		} {
			r := g.raw(t, tc.path, tc.body)
			e, _ := r.Body["error"].(map[string]any)
			if p, _ := e["param"].(string); r.Status != 400 || p != tc.param {
				t.Errorf("%s: got %d naming %v, want 400 naming %q; %s", tc.body, r.Status, e["param"], tc.param, r.Raw)
			}
		}
		if n := up.calls.Load(); n != 0 {
			t.Errorf("the upstream was called %d times for refused bodies", n)
		}
		if got := g.balance(t); got != "1.00" {
			t.Errorf("balance %s, want 1.00", got)
		}
		// The largest allowed request is priced exactly and refused for want of balance.
		r := g.raw(t, "/v1/chat/completions", `{"model":"gpt-test",`+msgs+`,"max_tokens":1000000,"n":128}`)
		if r.Status == 200 || up.calls.Load() != 0 {
			t.Errorf("a call reserving 128 million output tokens against 1.00 was let through: %d %s", r.Status, r.Raw)
		}
	})
}

// TestGatewayCapsUncappedCalls: a call without a cap reserves
// DefaultMaxOutput (4096) output tokens per answer and the upstream is sent
// that cap, so the answer cannot settle above its hold (an upstream's
// default length is 100,000 here: 10.00 at 100.00/MTok against 1.00).
func TestGatewayCapsUncappedCalls(t *testing.T) {
	storetest.Each(t, func(t *testing.T, d store.Dialect) {
		for i, tc := range []struct {
			provider, path, body, field string
			want                        float64
			balance                     string
		}{
			{"openai", "/v1/chat/completions", `{"model":"gpt-test","messages":[{"role":"user","content":"hi"}]}`, "max_completion_tokens", 4096, "0.5904"},
			{"openai", "/v1/chat/completions", `{"model":"gpt-test","messages":[{"role":"user","content":"hi"}],"max_tokens":null,"n":2}`, "max_completion_tokens", 4096, "0.1808"},
			{"openai_compatible", "/v1/chat/completions", `{"model":"gpt-test","messages":[{"role":"user","content":"hi"}]}`, "max_tokens", 4096, "0.5904"},
			{"openai", "/v1/completions", `{"model":"gpt-test","prompt":"hi"}`, "max_tokens", 16, "0.9984"},
		} {
			t.Run(fmt.Sprintf("%d-%s", i, tc.provider), func(t *testing.T) {
				up := newMeteredUpstream(t)
				g := newMeteredGW(t, d, up, tc.provider, "100.00", "1.00")
				r := g.raw(t, tc.path, tc.body)
				if r.Status != 200 {
					t.Fatalf("%d %s", r.Status, r.Raw)
				}
				if got := up.body()[tc.field]; got != tc.want {
					t.Errorf("upstream %s = %v, want %v (body %v)", tc.field, got, tc.want, up.body())
				}
				if got := g.balance(t); got != tc.balance {
					t.Errorf("balance %s, want %s", got, tc.balance)
				}
			})
		}
	})
}

// TestGatewayHugeTokenRate is issue 16: an override of tokensPerMinute
// above 6e10 made the in-memory limiter divide by zero, and every gateway
// call of the tenant answered 500. Within the documented range it now works.
func TestGatewayHugeTokenRate(t *testing.T) {
	storetest.Each(t, func(t *testing.T, d store.Dialect) {
		up := newMeteredUpstream(t)
		g := newMeteredGW(t, d, up, "openai", "1.00", "1.00")
		for _, rate := range []int64{100_000_000_000, quota.MaxLimit} {
			g.a.want(g.a.do("PUT", "/api/v1/admin/tenants/"+g.org.ID+"/entitlements", g.op, map[string]any{"limits": map[string]int64{"tokensPerMinute": rate}}, nil), 200, "")
			for range 3 {
				if r := g.raw(t, "/v1/chat/completions", `{"model":"gpt-test","messages":[{"role":"user","content":"hi"}],"max_tokens":5}`); r.Status != 200 {
					t.Fatalf("tokensPerMinute %d: %d %s", rate, r.Status, r.Raw)
				}
			}
		}
	})
}

// TestAmountsAreBounded: amounts from outside have documented ranges (a
// top-up or a code up to 1,000,000.00, a price up to 1,000,000.00 per
// million tokens, a key's budget up to 1,000,000,000.00), and no credit may
// take a balance above 1,000,000,000.00: refused with a 400 naming the
// field, the whole credit undone (a code stays redeemable).
func TestAmountsAreBounded(t *testing.T) {
	storetest.Each(t, func(t *testing.T, d store.Dialect) {
		a := newAPI(t, d)
		x := a.signup("rich")
		op := a.operator()
		a.wantField(a.do("POST", "/api/v1/admin/tenants/"+x.ID+"/topups", op, map[string]any{"amount": "1000000.000001", "idempotencyKey": "k0"}, nil), "amount")
		a.wantField(a.do("POST", "/api/v1/admin/tenants/"+x.ID+"/topups", op, map[string]any{"amount": "9223372036854.775807", "idempotencyKey": "k0"}, nil), "amount")
		a.wantField(a.do("POST", "/api/v1/admin/redemption-codes", op, map[string]any{"count": 1, "amount": "1000000.01"}, nil), "amount")
		a.wantField(a.do("PUT", "/api/v1/admin/prices/m", op, map[string]any{"inputPerMTok": "1000000.01", "outputPerMTok": "1"}, nil), "inputPerMTok")
		a.wantField(a.do("POST", "/api/v1/api-keys", x.OwnerToken, map[string]any{"name": "k", "budget": "1000000000.01"}, nil), "budget")
		a.want(a.do("POST", "/api/v1/api-keys", x.OwnerToken, map[string]any{"name": "k", "budget": "1000000000.00"}, nil), 201, "")

		// A balance one unit below the cap takes no more.
		a.want(a.do("POST", "/api/v1/admin/tenants/"+x.ID+"/topups", op, map[string]any{"amount": "5.00", "idempotencyKey": "k1"}, nil), 201, "")
		storetest.Must(t, a.store.Tx(store.WithTenant(context.Background(), x.ID), func(tx *gorm.DB) error {
			return tx.Exec("UPDATE billing_accounts SET balance_micros = ? WHERE tenant_id = ?", int64(money.MaxBalance)-1_000_000, x.ID).Error
		}))
		a.want(a.do("POST", "/api/v1/admin/tenants/"+x.ID+"/topups", op, map[string]any{"amount": "1.00", "idempotencyKey": "k2"}, nil), 201, "")
		a.wantField(a.do("POST", "/api/v1/admin/tenants/"+x.ID+"/topups", op, map[string]any{"amount": "0.000001", "idempotencyKey": "k3"}, nil), "amount")
		code := a.want(a.do("POST", "/api/v1/admin/redemption-codes", op, map[string]any{"count": 1, "amount": "1.00"}, nil), 201, "").Body["codes"].([]any)[0].(string)
		a.wantField(a.do("POST", "/api/v1/billing/redeem", x.OwnerToken, map[string]any{"code": code}, nil), "amount")
		if b := a.want(a.do("GET", "/api/v1/billing/balance", x.OwnerToken, nil, nil), 200, "").str("balance"); b != "1000000000.00" {
			t.Errorf("balance %s, want 1000000000.00", b)
		}
		// Nothing of the refused credits stayed: the retried key credits once, the code is still active.
		a.want(a.do("POST", "/api/v1/admin/tenants/"+x.ID+"/topups", op, map[string]any{"amount": "0.000001", "idempotencyKey": "k3"}, nil), 400, "")
		if items := a.want(a.do("GET", "/api/v1/admin/redemption-codes", op, nil, nil), 200, "").items(); len(items) != 1 || items[0]["status"] != "active" {
			t.Errorf("the refused code's state: %v", items)
		}
	})
}
