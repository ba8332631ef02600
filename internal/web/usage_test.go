package web

import (
	"context"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	"gorm.io/gorm"

	"github.com/tenantgate/tenantgate/internal/quota"
	"github.com/tenantgate/tenantgate/internal/store"
	"github.com/tenantgate/tenantgate/internal/store/storetest"
)

func TestUsageMetering(t *testing.T) {
	storetest.Each(t, func(t *testing.T, d store.Dialect) {
		a := newAPI(t, d)
		x, y := a.signup("metered"), a.signup("unmetered")
		op := a.operator()
		a.want(a.do("PUT", "/api/v1/admin/tenants/"+x.ID+"/entitlements", op, map[string]any{"limits": map[string]int64{"monthlyTokens": 100}}, nil), 200, "")
		now := time.Now().UTC()
		hourAgo := now.Add(-time.Hour).Format(time.RFC3339)
		// One event, then a batch; an id seen before counts nothing.
		r := a.want(a.do("POST", "/api/v1/usage/events", x.OwnerToken, map[string]any{"id": "e1", "meter": "tokens", "value": 50, "time": hourAgo,
			"attributes": map[string]any{"model": "gpt-4o"}}, nil), 202, "")
		if r.Body["accepted"].(float64) != 1 {
			t.Fatalf("single event: %s", r.Raw)
		}
		r = a.want(a.do("POST", "/api/v1/usage/events", x.OwnerToken, map[string]any{"events": []map[string]any{
			{"id": "e1", "meter": "tokens", "value": 50}, {"id": "e2", "meter": "tokens", "value": 35}, {"id": "e3", "meter": "searches", "value": 7}}}, nil), 202, "")
		if r.Body["accepted"].(float64) != 2 || r.Body["duplicates"].(float64) != 1 {
			t.Fatalf("batch: %s", r.Raw)
		}
		// 85 of 100: the 80 % threshold was crossed once, with an audit event and a notification.
		ev := a.want(a.do("GET", "/api/v1/audit?eventType=usage.threshold_reached", x.OwnerToken, nil, nil), 200, "").items()
		if len(ev) != 1 || ev[0]["metadata"].(map[string]any)["percent"].(float64) != 80 {
			t.Fatalf("threshold events: %v", ev)
		}
		a.want(a.do("POST", "/api/v1/usage/events", x.OwnerToken, map[string]any{"id": "e4", "meter": "tokens", "value": 20}, nil), 202, "")
		if n := len(a.want(a.do("GET", "/api/v1/audit?eventType=usage.threshold_reached", x.OwnerToken, nil, nil), 200, "").items()); n != 2 {
			t.Errorf("after passing 100 %%: %d threshold events, want 2", n)
		}
		var notes int64
		storetest.Must(t, a.store.Tx(store.WithTenant(context.Background(), x.ID), func(tx *gorm.DB) error {
			return tx.Table("notifications").Count(&notes).Error
		}))
		if notes != 2 {
			t.Errorf("%d notification records, want 2", notes)
		}
		// Current period and the check other services use.
		u := a.want(a.do("GET", "/api/v1/tenants/current/usage", x.OwnerToken, nil, nil), 200, "")
		if !strings.Contains(u.Raw, `"meter":"tokens","limit":"monthlyTokens","max":100,"used":105`) {
			t.Errorf("usage periods: %s", u.Raw)
		}
		svc := hdr{"X-Service-Token": testServiceToken, "X-Service-Name": "billing"}
		c := a.want(a.do("POST", "/internal/quota/check", "", map[string]any{"tenantId": x.ID, "meter": "tokens", "amount": 1}, svc), 429, "TENANT_QUOTA_EXCEEDED")
		if c.Header.Get("Retry-After") == "" || !strings.Contains(c.Raw, `"resetsAt"`) {
			t.Errorf("quota check refusal: %s %v", c.Raw, c.Header)
		}
		a.want(a.do("POST", "/internal/quota/check", "", map[string]any{"tenantId": y.ID, "meter": "tokens", "amount": 1000}, svc), 200, "")
		// Aggregation by hour and by day.
		h := a.want(a.do("GET", "/api/v1/tenants/current/usage?meter=tokens&groupBy=hour&from="+now.Add(-3*time.Hour).Format(time.RFC3339)+"&to="+now.Add(time.Minute).Format(time.RFC3339), x.OwnerToken, nil, nil), 200, "")
		buckets := h.Body["buckets"].([]any)
		if h.Body["total"].(float64) != 105 || len(buckets) < 1 || len(buckets) > 2 {
			t.Errorf("hourly aggregation: %s", h.Raw)
		}
		dd := a.want(a.do("GET", "/api/v1/tenants/current/usage?meter=searches&groupBy=day", x.OwnerToken, nil, nil), 200, "")
		if dd.Body["total"].(float64) != 7 {
			t.Errorf("daily aggregation: %s", dd.Raw)
		}
		// The other tenant saw none of it, even asking for the same meter.
		if yu := a.want(a.do("GET", "/api/v1/tenants/current/usage?meter=tokens", y.OwnerToken, nil, nil), 200, ""); yu.Body["total"].(float64) != 0 {
			t.Errorf("tenant y sees x's usage: %s", yu.Raw)
		}
		a.want(a.do("POST", "/api/v1/usage/events", y.OwnerToken, map[string]any{"id": "x1", "tenant": x.ID, "meter": "tokens", "value": 1}, nil), 400, "INVALID_REQUEST")
		// Operators read any tenant's usage; the seed's internal endpoint feeds it too.
		a.want(a.do("POST", "/internal/metrics/usage", "", map[string]any{"id": "s1", "tenantId": y.ID, "resourceType": "api_calls", "value": 3,
			"timestamp": now.Format(time.RFC3339)}, svc), 202, "")
		ou := a.want(a.do("GET", "/api/v1/admin/tenants/"+y.ID+"/usage?meter=api_calls", op, nil, nil), 200, "")
		if ou.Body["total"].(float64) != 3 {
			t.Errorf("operator view of y: %s", ou.Raw)
		}
		// Bad input.
		for _, body := range []map[string]any{{"meter": "tokens", "value": 1}, {"id": "z", "meter": "Bad Meter", "value": 1},
			{"id": "z", "meter": "tokens", "value": -1}, {"id": "z", "meter": "tokens", "value": 1, "time": now.Add(time.Hour).Format(time.RFC3339)},
			{"events": []map[string]any{{"id": "d", "meter": "m", "value": 1}, {"id": "d", "meter": "m", "value": 1}}}} {
			a.want(a.do("POST", "/api/v1/usage/events", x.OwnerToken, body, nil), 400, "INVALID_REQUEST")
		}
		a.want(a.do("GET", "/api/v1/tenants/current/usage?meter=tokens&groupBy=week", x.OwnerToken, nil, nil), 400, "INVALID_REQUEST")
		a.want(a.do("POST", "/api/v1/usage/events", x.UserToken, map[string]any{"id": "u", "meter": "m", "value": 1}, nil), 403, "PERMISSION_DENIED")
	})
}

// BenchmarkIngest measures batched event ingestion (100 events a batch).
func BenchmarkIngest(b *testing.B) {
	for _, d := range storetest.Dialects() {
		b.Run(string(d), func(b *testing.B) {
			a := newAPI(b, d)
			x := a.signup("bench-ingest")
			ctx := store.WithTenant(context.Background(), x.ID)
			n := 0
			b.ResetTimer()
			for b.Loop() {
				evs := make([]quotaEvent, 100)
				for i := range evs {
					n++
					evs[i] = quotaEvent{ID: fmt.Sprintf("b%d", n), Meter: "tokens", Value: 10}
				}
				if _, err := a.quota.Ingest(ctx, evs); err != nil {
					b.Fatal(err)
				}
			}
			b.ReportMetric(float64(b.N*100)/b.Elapsed().Seconds(), "events/s")
		})
	}
}

type quotaEvent = quota.Event

// TestConcurrentIngestCountsOnce sends the same 50 events in four parallel
// batches: they are accepted once in total, and the counter adds them once.
func TestConcurrentIngestCountsOnce(t *testing.T) {
	storetest.Each(t, func(t *testing.T, d store.Dialect) {
		a := newAPI(t, d)
		x := a.signup("dup-race")
		ctx := store.WithTenant(context.Background(), x.ID)
		var wg sync.WaitGroup
		var mu sync.Mutex
		accepted, dups := 0, 0
		for g := 0; g < 4; g++ {
			wg.Add(1)
			go func() {
				defer wg.Done()
				evs := make([]quotaEvent, 50)
				for i := range evs {
					evs[i] = quotaEvent{ID: fmt.Sprintf("e%d", i), Meter: "tokens", Value: 2}
				}
				res, err := a.quota.Ingest(store.Fork(ctx), evs) // each batch is its own line of work, as each request is
				if err != nil {
					t.Error(err)
					return
				}
				mu.Lock()
				accepted, dups = accepted+res.Accepted, dups+res.Duplicates
				mu.Unlock()
			}()
		}
		wg.Wait()
		if accepted != 50 || dups != 150 {
			t.Errorf("accepted %d and %d duplicates, want 50 and 150", accepted, dups)
		}
		u := a.want(a.do("GET", "/api/v1/tenants/current/usage", x.OwnerToken, nil, nil), 200, "")
		if !strings.Contains(u.Raw, `"meter":"tokens","limit":"monthlyTokens","max":10000000,"used":100`) {
			t.Errorf("the counter after the race: %s", u.Raw)
		}
	})
}

// TestSingleEventMentioningEvents: a single event is told from a batch by its
// top-level key, not by the word "events" appearing anywhere in it.
func TestSingleEventMentioningEvents(t *testing.T) {
	a := newAPI(t, store.SQLite)
	x := a.signup("wordy")
	body := map[string]any{"id": "w1", "meter": "searches", "value": 1, "attributes": map[string]any{"note": "events", "events": 3}}
	if r := a.want(a.do("POST", "/api/v1/usage/events", x.OwnerToken, body, nil), 202, ""); r.Body["accepted"].(float64) != 1 {
		t.Errorf("tenant API: %s", r.Raw)
	}
	svc := hdr{"X-Service-Token": testServiceToken, "X-Service-Name": "billing"}
	seed := map[string]any{"id": "w2", "tenantId": x.ID, "resourceType": "searches", "value": 1, "attributes": map[string]any{"events": true}}
	if r := a.want(a.do("POST", "/internal/metrics/usage", "", seed, svc), 202, ""); r.Body["accepted"].(float64) != 1 {
		t.Errorf("service API: %s", r.Raw)
	}
}

// The server's own API calls reach the api_calls counter (so usage and
// snapshots show them), per tenant; old counters are pruned.
func TestAPICallsArePersistedAndPruned(t *testing.T) {
	storetest.Each(t, func(t *testing.T, d store.Dialect) {
		a := newAPI(t, d)
		x, y := a.signup("callsx"), a.signup("callsy")
		before, err := a.quota.FlushAPICalls(context.Background()) // what signing up itself called
		storetest.Must(t, err)
		for range 3 {
			a.want(a.do("GET", "/api/v1/users/me", x.OwnerToken, nil, nil), 200, "")
		}
		a.want(a.do("GET", "/api/v1/users/me", y.OwnerToken, nil, nil), 200, "")
		n, err := a.quota.FlushAPICalls(context.Background())
		storetest.Must(t, err)
		if n != 4 {
			t.Errorf("flushed %d calls, want 4", n)
		}
		used := func(tok string) string {
			u := a.want(a.do("GET", "/api/v1/tenants/current/usage", tok, nil, nil), 200, "")
			i := strings.Index(u.Raw, `"meter":"api_calls"`)
			if i < 0 {
				t.Fatalf("no api_calls period: %s", u.Raw)
			}
			return u.Raw[i : i+strings.Index(u.Raw[i:], "}")]
		}
		// The usage reads are themselves counted after this flush, not before.
		each := before / 2
		if got, want := used(x.OwnerToken), fmt.Sprintf(`"used":%d,`, 3+each); !strings.Contains(got, want) {
			t.Errorf("tenant x: %s, want %s", got, want)
		}
		if got, want := used(y.OwnerToken), fmt.Sprintf(`"used":%d,`, 1+each); !strings.Contains(got, want) {
			t.Errorf("tenant y: %s, want %s", got, want)
		}
		// An empty flush writes nothing.
		if _, err := a.quota.FlushAPICalls(context.Background()); err != nil {
			t.Fatal(err)
		}
		// Counters from long ago go; this period's stay.
		old := quota.PeriodStart("hour", time.Now().Add(-quota.HourCounterRetention-2*time.Hour))
		oldMonth := quota.PeriodStart("month", time.Now()).AddDate(0, -quota.MonthCounterRetention-1, 0)
		storetest.Must(t, a.store.Tx(store.WithTenant(context.Background(), x.ID), func(tx *gorm.DB) error {
			if err := tx.Exec("INSERT INTO usage_counters (tenant_id, meter, period, period_start, value) VALUES (?, 'api_calls', 'hour', ?, 9)", x.ID, old).Error; err != nil {
				return err
			}
			return tx.Exec("INSERT INTO usage_counters (tenant_id, meter, period, period_start, value) VALUES (?, 'tokens', 'month', ?, 9)", x.ID, oldMonth).Error
		}))
		removed, err := a.quota.PruneCounters(context.Background())
		storetest.Must(t, err)
		if removed != 2 {
			t.Errorf("pruned %d counters, want the 2 old ones", removed)
		}
		if got := used(x.OwnerToken); !strings.Contains(got, `"used":`) || strings.Contains(got, `"used":0`) {
			t.Errorf("the current period was pruned: %s", got)
		}
	})
}
