package web

import (
	"fmt"
	"strings"
	"testing"
	"time"

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
