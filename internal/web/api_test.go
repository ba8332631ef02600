package web

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"gorm.io/gorm"

	"github.com/tenantgate/tenantgate/internal/actor"
	"github.com/tenantgate/tenantgate/internal/billing"
	"github.com/tenantgate/tenantgate/internal/egress"
	"github.com/tenantgate/tenantgate/internal/gateway"
	"github.com/tenantgate/tenantgate/internal/gateway/journal"
	"github.com/tenantgate/tenantgate/internal/identity"
	"github.com/tenantgate/tenantgate/internal/identity/oidc"
	"github.com/tenantgate/tenantgate/internal/kv"
	"github.com/tenantgate/tenantgate/internal/quota"
	"github.com/tenantgate/tenantgate/internal/rbac"
	"github.com/tenantgate/tenantgate/internal/secret"
	"github.com/tenantgate/tenantgate/internal/store"
	"github.com/tenantgate/tenantgate/internal/store/storetest"
	"github.com/tenantgate/tenantgate/internal/tenant"
)

const (
	testBaseDomain   = "tenantgate.test"
	testServiceToken = "svc-0123456789abcdef0123456789abcdef"
)

// api is a running server over a fresh database.
type api struct {
	t       testing.TB
	url     string
	store   *store.Store
	db      storetest.DB // how to reach the database, as the server's role and as its owner
	tenants *tenant.Service
	ident   *identity.Service
	rbac    *rbac.Engine
	oidc    *oidc.Service
	quota   *quota.Service
	billing *billing.Service
	gateway *gateway.Service
	clock   *testClock // the clock of the rate limiter, identity (key expiry, lockouts) and RBAC (time-bound grants)
}

// asOwner runs SQL as the schema owner (fault injection: triggers, locks).
func (a *api) asOwner(query string) {
	a.t.Helper()
	owner, err := store.Open(context.Background(), store.Config{URL: a.db.OwnerURL, MaxOpenConns: 1})
	storetest.Must(a.t, err)
	defer owner.Close()
	_, err = owner.SQL().Exec(query)
	storetest.Must(a.t, err)
}

// testClock follows the real time, moved by what a test adds, until a test
// stops it.
type testClock struct {
	mu      sync.Mutex
	stopped time.Time
	offset  time.Duration
}

func (c *testClock) now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	if !c.stopped.IsZero() {
		return c.stopped
	}
	return time.Now().Add(c.offset)
}

// advance moves the clock by d (back, for a negative d).
func (c *testClock) advance(d time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.offset += d
	if !c.stopped.IsZero() {
		c.stopped = c.stopped.Add(d)
	}
}

// stop holds the clock at the present moment.
func (c *testClock) stop() {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.stopped = time.Now()
}

func newAPI(t testing.TB, d store.Dialect) *api { return newAPIWithPlatformIdP(t, d, nil) }

// newAPIWithPlatformIdP is newAPI with a platform-wide identity provider.
func newAPIWithPlatformIdP(t testing.TB, d store.Dialect, platform *oidc.Platform) *api {
	t.Helper()
	db := storetest.New(t, d)
	s, err := store.Open(context.Background(), store.Config{URL: db.URL, PlatformURL: db.PlatformURL})
	storetest.Must(t, err)
	t.Cleanup(func() { s.Close() })
	a := newAPIWith(t, s, platform, nil)
	a.db = db
	return a
}

// newAPIWith builds the server over s; gwOpts may change the gateway's
// options (by default it journals usage in a temporary directory).
func newAPIWith(t testing.TB, s *store.Store, platform *oidc.Platform, gwOpts func(*gateway.Options)) *api {
	t.Helper()
	key := make([]byte, 32)
	_, _ = rand.Read(key)
	box, err := secret.NewBox(key)
	storetest.Must(t, err)
	ctx := context.Background()
	keys, err := identity.LoadKeys(ctx, s, box)
	storetest.Must(t, err)
	signer := identity.NewSigner(keys, identity.TokenConfig{Issuer: "http://tenantgate.test", Audience: "tenantgate",
		AccessTTL: 15 * time.Minute, RefreshTTL: time.Hour})
	cfg := tenant.DefaultConfig
	cfg.CacheTTL = 0 // every request sees the latest state
	q := quota.New(s)
	q.RegisterCounter("users", identity.CountUsersTx)
	q.RegisterCounter("apiKeys", identity.CountAPIKeysTx)
	q.RegisterCounter("roles", rbac.CountCustomRolesTx)
	cfg.PlanExists = q.PlanExists
	a := &api{t: t, store: s, tenants: tenant.New(s, cfg, nil), quota: q, clock: &testClock{}}
	a.ident = identity.New(s, signer, identity.Options{Password: identity.FastPasswordParams, Box: box, Quota: q,
		UserChanged: func(tenantID string) { a.rbac.Invalidate(tenantID) }, Now: a.clock.now})
	a.rbac = rbac.NewEngine(s, a.ident, q)
	a.rbac.SetClock(a.clock.now)
	a.ident.UseRanks(a.rbac)
	var handler http.Handler
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { handler.ServeHTTP(w, r) }))
	t.Cleanup(srv.Close)
	a.url = srv.URL
	a.oidc = oidc.New(s, a.ident, a.tenants, box, srv.URL, platform)
	a.oidc.SetEgress(egress.Policy{AllowPrivate: true}) // the test providers run on 127.0.0.1
	a.billing = billing.New(s, billing.Options{WebhookSecret: testWebhookSecret})
	gwo := gateway.Options{Box: box, Billing: a.billing, Meter: q, Limiter: quota.NewGuarded(quota.NewMemoryLimiterClock(a.clock.now), true, nil),
		PlanExists: q.PlanExists, AllowPrivateUpstreams: true, HealthWindow: 4, HealthFailures: 3, ProbeEvery: time.Hour, Now: a.clock.now}
	var recovered []*journal.Recovered
	if gwOpts != nil {
		gwOpts(&gwo)
	} else {
		j, rec, err := journal.Open(t.TempDir(), journal.Options{})
		storetest.Must(t, err)
		t.Cleanup(func() { _ = j.Close() })
		gwo.Journal, recovered = j, rec
	}
	a.gateway = gateway.New(s, gwo)
	storetest.Must(t, a.gateway.Reload(ctx)) // as serve does: /v1 is ready from the first request
	_, _, err = a.gateway.Recover(ctx, recovered)
	storetest.Must(t, err)
	gwCtx, stopGW := context.WithCancel(context.Background())
	gwDone := make(chan struct{})
	go func() { defer close(gwDone); a.gateway.Run(gwCtx) }()
	t.Cleanup(func() { stopGW(); <-gwDone })
	handler = NewServer(Deps{Store: s, Tenants: a.tenants, Identity: a.ident, RBAC: a.rbac, OIDC: a.oidc, Quota: a.quota,
		Limiter: quota.NewMemoryLimiterClock(a.clock.now), Counters: kv.NewMemory(), BaseDomain: testBaseDomain,
		PublicURL: "http://tenantgate.test", Version: "test", ServiceTokens: []ServiceToken{{Name: "billing", Token: testServiceToken}},
		Billing: a.billing, Gateway: a.gateway})
	return a
}

// resp is a decoded answer.
type resp struct {
	Status int
	Header http.Header
	Body   map[string]any
	Raw    string
}

func (r resp) code() string {
	e, _ := r.Body["error"].(map[string]any)
	c, _ := e["code"].(string)
	if _, openAIShape := e["type"]; openAIShape {
		return strings.ToUpper(c) // /v1/* answers OpenAI's shape, with the code lower-case
	}
	return c
}

func (r resp) str(path ...string) string {
	var v any = r.Body
	for _, p := range path {
		m, _ := v.(map[string]any)
		v = m[p]
	}
	s, _ := v.(string)
	return s
}

func (r resp) items() []map[string]any {
	list, _ := r.Body["items"].([]any)
	out := make([]map[string]any, 0, len(list))
	for _, it := range list {
		m, _ := it.(map[string]any)
		out = append(out, m)
	}
	return out
}

type hdr map[string]string

func (a *api) do(method, path, token string, body any, h hdr) resp {
	a.t.Helper()
	var rd io.Reader
	switch b := body.(type) {
	case nil:
	case string:
		rd = strings.NewReader(b)
	default:
		raw, err := json.Marshal(b)
		storetest.Must(a.t, err)
		rd = bytes.NewReader(raw)
	}
	req, err := http.NewRequest(method, a.url+path, rd)
	storetest.Must(a.t, err)
	if rd != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	for k, v := range h {
		if k == "Host" {
			req.Host = v
			continue
		}
		req.Header.Set(k, v)
	}
	res, err := http.DefaultClient.Do(req)
	storetest.Must(a.t, err)
	defer res.Body.Close()
	raw, _ := io.ReadAll(res.Body)
	out := resp{Status: res.StatusCode, Header: res.Header, Raw: string(raw)}
	if len(raw) > 0 && raw[0] == '{' {
		_ = json.Unmarshal(raw, &out.Body)
	}
	return out
}

// want fails unless the answer has the status (and the error code, if given).
func (a *api) want(r resp, status int, code string) resp {
	a.t.Helper()
	if r.Status != status || (code != "" && r.code() != code) {
		a.t.Fatalf("got %d %s, want %d %s; body: %s", r.Status, r.code(), status, code, r.Raw)
	}
	return r
}

// org is a signed-up tenant with its owner and one plain user.
type org struct {
	ID, Slug              string
	OwnerToken, OwnerID   string
	OwnerRefresh          string
	UserToken, UserID     string
	OwnerEmail, UserEmail string
}

const pw = "correct-horse-9"

func (a *api) signup(slug string) org {
	a.t.Helper()
	o := org{Slug: slug, OwnerEmail: "owner@" + slug + ".test", UserEmail: "member@" + slug + ".test"}
	r := a.want(a.do("POST", "/api/v1/tenants/signup", "", map[string]any{"slug": slug, "name": strings.ToUpper(slug),
		"ownerEmail": o.OwnerEmail, "ownerPassword": pw, "ownerName": "Owner Person", "plan": "pro"}, nil), 201, "")
	o.ID, o.OwnerID = r.str("tenant", "id"), r.str("user", "id")
	o.OwnerToken, o.OwnerRefresh = r.str("tokens", "accessToken"), r.str("tokens", "refreshToken")
	u := a.want(a.do("POST", "/api/v1/users", o.OwnerToken, map[string]any{"email": o.UserEmail, "password": pw, "firstName": "Mem"}, nil), 201, "")
	o.UserID = u.str("id")
	l := a.want(a.do("POST", "/api/v1/auth/login", "", map[string]any{"email": o.UserEmail, "password": pw, "tenant": slug}, nil), 200, "")
	o.UserToken = l.str("accessToken")
	return o
}

func (a *api) operator() string {
	a.t.Helper()
	_, err := a.ident.CreateOperator(actor.With(context.Background(), actor.System("test")), "ops@platform.test", "operator-pass-1", "Ops")
	if err != nil && err != identity.ErrOperatorExists {
		a.t.Fatal(err)
	}
	r := a.want(a.do("POST", "/api/v1/auth/login", "", map[string]any{"email": "ops@platform.test", "password": "operator-pass-1"}, nil), 200, "")
	return r.str("accessToken")
}

// countRows counts every row a tenant owns, in every table with tenant_id.
func (a *api) countRows(tenantID string) map[string]int64 {
	a.t.Helper()
	ctx := context.Background()
	tables, err := a.store.TablesWithTenantID(ctx)
	storetest.Must(a.t, err)
	out := map[string]int64{}
	storetest.Must(a.t, a.store.Tx(store.WithPlatform(ctx, "test"), func(tx *gorm.DB) error {
		for _, tb := range tables {
			var n int64
			if err := tx.Raw("SELECT count(*) FROM "+tb+" WHERE tenant_id = ?", tenantID).Scan(&n).Error; err != nil {
				return err
			}
			if n > 0 {
				out[tb] = n
			}
		}
		return nil
	}))
	return out
}

// newAPIWithPlatformIdPLate builds the API first, so the platform provider
// can be told our callback URL before it is configured.
func newAPIWithPlatformIdPLate(t *testing.T, mk func(callback string) *oidc.Platform) *api {
	t.Helper()
	a := newAPI(t, store.SQLite)
	p := mk(a.url + "/api/v1/auth/oidc/callback")
	a.oidc.SetPlatform(p)
	return a
}

func jsonInto(raw []byte, v any) error {
	if len(raw) == 0 || raw[0] != '{' {
		return nil
	}
	return json.Unmarshal(raw, v)
}

func stringsReader(s string) io.Reader { return strings.NewReader(s) }

func jsonDecode(res *http.Response, v any) error {
	defer res.Body.Close()
	return json.NewDecoder(res.Body).Decode(v)
}
