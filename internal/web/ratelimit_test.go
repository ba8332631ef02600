package web

import (
	"context"
	"errors"
	"net/http"
	"net/http/httptest"
	"os"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/tenantgate/tenantgate/internal/quota"
	"github.com/tenantgate/tenantgate/internal/store"
)

func TestRateLimits(t *testing.T) {
	a := newAPI(t, store.SQLite)
	x, y := a.signup("throttled"), a.signup("unthrottled")
	op := a.operator()
	a.want(a.do("PUT", "/api/v1/admin/tenants/"+x.ID+"/entitlements", op, map[string]any{"limits": map[string]int64{"requestsPerMinute": 5}}, nil), 200, "")
	// A bucket of 5 a minute refills one request every 12 s: a slow machine
	// must not see one come back mid-test, so the limiter's clock stands still.
	a.clock.stop()
	// The setup's own requests used a little of the bucket: within one request
	// of 5 are admitted, with the remaining count going down, then refusals.
	admitted, last := 0, 99
	var r resp
	for i := 0; i < 7; i++ {
		r = a.do("GET", "/api/v1/tenants/current", x.UserToken, nil, nil)
		if r.Status != 200 {
			break
		}
		admitted++
		rem, _ := strconv.Atoi(r.Header.Get("X-RateLimit-Remaining"))
		if r.Header.Get("X-RateLimit-Limit") != "5" || rem >= last || r.Header.Get("X-RateLimit-Reset") == "" {
			t.Fatalf("request %d headers: %v", i+1, r.Header)
		}
		last = rem
	}
	if admitted < 4 || admitted > 5 || r.Status != 429 || r.code() != "RATE_LIMITED" {
		t.Fatalf("admitted %d then %d %s; want 4 or 5, then 429 RATE_LIMITED", admitted, r.Status, r.code())
	}
	if ra, _ := strconv.Atoi(r.Header.Get("Retry-After")); ra < 1 || ra > 13 {
		t.Errorf("Retry-After = %q", r.Header.Get("Retry-After"))
	}
	// The limit is the tenant's: the other tenant is not affected, nor are operators.
	a.want(a.do("GET", "/api/v1/tenants/current", y.UserToken, nil, nil), 200, "")
	a.want(a.do("GET", "/api/v1/users", op, nil, hdr{"X-Tenant-ID": x.ID}), 200, "")

	// A key's own rate, below the tenant's.
	key := a.want(a.do("POST", "/api/v1/api-keys", y.OwnerToken, map[string]any{"name": "slow", "rateLimitPerMinute": 2}, nil), 201, "").str("secret")
	a.want(a.do("GET", "/api/v1/tenants/current", key, nil, nil), 200, "")
	a.want(a.do("GET", "/api/v1/tenants/current", key, nil, nil), 200, "")
	a.want(a.do("GET", "/api/v1/tenants/current", key, nil, nil), 429, "RATE_LIMITED")
	a.want(a.do("GET", "/api/v1/tenants/current", y.OwnerToken, nil, nil), 200, "")
	a.want(a.do("POST", "/api/v1/api-keys", y.OwnerToken, map[string]any{"name": "bad", "rateLimitPerMinute": 0}, nil), 400, "INVALID_REQUEST")
}

func TestAuthRouteClassLimit(t *testing.T) {
	a := newAPI(t, store.SQLite)
	x := a.signup("authlimit")
	stopped := time.Now()
	h := NewServer(Deps{Store: a.store, Tenants: a.tenants, Identity: a.ident, RBAC: a.rbac, Quota: a.quota, PublicURL: "http://tenantgate.test",
		Limiter: quota.NewMemoryLimiterClock(func() time.Time { return stopped }), AuthRatePerMinute: 3}) // no refill mid-test
	body := `{"email":"` + x.OwnerEmail + `","password":"` + pw + `","tenant":"authlimit"}`
	for i := 1; i <= 4; i++ {
		req := httptest.NewRequest(http.MethodPost, "/api/v1/auth/login", stringsReader(body))
		req.RemoteAddr = "192.0.2.7:4444"
		w := httptest.NewRecorder()
		h.ServeHTTP(w, req)
		want := 200
		if i == 4 {
			want = 429
		}
		if w.Code != want {
			t.Fatalf("login %d from one address: %d %s, want %d", i, w.Code, w.Body, want)
		}
	}
	req := httptest.NewRequest(http.MethodPost, "/api/v1/auth/login", stringsReader(body))
	req.RemoteAddr = "192.0.2.8:4444"
	w := httptest.NewRecorder()
	h.ServeHTTP(w, req)
	if w.Code != 200 {
		t.Errorf("another address is limited too: %d", w.Code)
	}
}

type downLimiter struct{}

func (d downLimiter) AllowN(ctx context.Context, key string, perMinute, _ int) (quota.Decision, error) {
	return d.Allow(ctx, key, perMinute)
}

func (downLimiter) Allow(context.Context, string, int) (quota.Decision, error) {
	return quota.Decision{}, errors.New("dial tcp 127.0.0.1:6379: connection refused")
}

func TestRateLimiterOutage(t *testing.T) {
	a := newAPI(t, store.SQLite)
	x := a.signup("outage")
	for _, failOpen := range []bool{true, false} {
		g := quota.NewGuarded(downLimiter{}, failOpen, nil)
		srv := httptest.NewServer(NewServer(Deps{Store: a.store, Tenants: a.tenants, Identity: a.ident, RBAC: a.rbac, Quota: a.quota,
			PublicURL: "http://tenantgate.test", Limiter: g}))
		defer srv.Close()
		req, _ := http.NewRequest("GET", srv.URL+"/api/v1/tenants/current", nil)
		req.Header.Set("Authorization", "Bearer "+x.UserToken)
		res, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		res.Body.Close()
		if want := map[bool]int{true: 200, false: 503}[failOpen]; res.StatusCode != want {
			t.Errorf("failOpen=%v: a request during the outage got %d, want %d", failOpen, res.StatusCode, want)
		}
		hres, err := http.Get(srv.URL + "/api/health")
		if err != nil {
			t.Fatal(err)
		}
		var body map[string]any
		_ = jsonDecode(hres, &body)
		if deps := body["dependencies"].(map[string]any); deps["rateLimiter"] == "healthy" || body["status"] != "degraded" {
			t.Errorf("failOpen=%v: health during the outage: %v", failOpen, body)
		}
	}
}

// TestTwoServersShareARedisLimit runs two servers (each with its own Redis
// client, as two processes would) over one database and one Redis, and sends
// a tenant's requests to both: together they admit the plan's rate, within
// one request.
func TestTwoServersShareARedisLimit(t *testing.T) {
	u := os.Getenv("TENANTGATE_TEST_REDIS_URL")
	if u == "" {
		t.Skip("set TENANTGATE_TEST_REDIS_URL") // CI sets it
	}
	a := newAPI(t, store.SQLite)
	x := a.signup("shared-" + strings.ToLower(randomHex(4)))
	op := a.operator()
	const n = 20
	a.want(a.do("PUT", "/api/v1/admin/tenants/"+x.ID+"/entitlements", op, map[string]any{"limits": map[string]int64{"requestsPerMinute": n}}, nil), 200, "")
	var servers []*httptest.Server
	for i := 0; i < 2; i++ {
		opts, err := redis.ParseURL(u)
		if err != nil {
			t.Fatal(err)
		}
		c := redis.NewClient(opts)
		defer c.Close()
		srv := httptest.NewServer(NewServer(Deps{Store: a.store, Tenants: a.tenants, Identity: a.ident, RBAC: a.rbac, Quota: a.quota,
			PublicURL: "http://tenantgate.test", Limiter: quota.NewGuarded(quota.NewRedisLimiter(c), false, nil)}))
		defer srv.Close()
		servers = append(servers, srv)
	}
	var admitted atomic.Int64
	var wg sync.WaitGroup
	for i := 0; i < 4*n; i++ {
		wg.Add(1)
		go func(srv *httptest.Server) {
			defer wg.Done()
			req, _ := http.NewRequest("GET", srv.URL+"/api/v1/tenants/current", nil)
			req.Header.Set("Authorization", "Bearer "+x.UserToken)
			res, err := http.DefaultClient.Do(req)
			if err != nil {
				t.Error(err)
				return
			}
			res.Body.Close()
			switch res.StatusCode {
			case 200:
				admitted.Add(1)
			case 429:
			default:
				t.Errorf("status %d", res.StatusCode)
			}
		}(servers[i%2])
	}
	wg.Wait()
	if got := admitted.Load(); got < n-1 || got > n+1 {
		t.Errorf("two servers admitted %d of %d requests at a shared limit of %d a minute", got, 4*n, n)
	}
}

// TestAPICallsPerHour: requests count toward the plan's hourly allowance.
func TestAPICallsPerHour(t *testing.T) {
	a := newAPI(t, store.SQLite)
	// Public sign-up is not counted; every request of the tenant's credentials is.
	su := a.want(a.do("POST", "/api/v1/tenants/signup", "", map[string]any{"slug": "hourly", "name": "Hourly",
		"ownerEmail": "o@hourly.test", "ownerPassword": pw, "plan": "pro"}, nil), 201, "")
	x := org{ID: su.str("tenant", "id"), UserToken: su.str("tokens", "accessToken")}
	op := a.operator()
	a.want(a.do("PUT", "/api/v1/admin/tenants/"+x.ID+"/entitlements", op, map[string]any{"limits": map[string]int64{"apiCallsPerHour": 3}}, nil), 200, "")
	for i := 0; i < 3; i++ {
		a.want(a.do("GET", "/api/v1/tenants/current", x.UserToken, nil, nil), 200, "")
	}
	r := a.want(a.do("GET", "/api/v1/tenants/current", x.UserToken, nil, nil), 429, "TENANT_QUOTA_EXCEEDED")
	if r.Header.Get("Retry-After") == "" || !strings.Contains(r.Raw, `"resetsAt"`) || !strings.Contains(r.Raw, `"limit":"3"`) {
		t.Errorf("hourly refusal: %s", r.Raw)
	}
	a.want(a.do("GET", "/api/v1/users", op, nil, hdr{"X-Tenant-ID": x.ID}), 200, "") // operators are not counted
}
