package web

import (
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/tenantgate/tenantgate/internal/store"
	"github.com/tenantgate/tenantgate/internal/tenant"
)

// BenchmarkPipeline measures one authenticated request through the whole
// pipeline (JWT verification, resolution by header, gate, permission check)
// to a handler that reads no database: GET /api/v1/tenants/current.
func BenchmarkPipeline(b *testing.B) {
	a := newAPI(b, store.SQLite)
	x := a.signup("bench")
	// The production tenant cache (the test API turns it off).
	cached := tenant.New(a.store, tenant.DefaultConfig, nil)
	h := NewServer(Deps{Store: a.store, Tenants: cached, Identity: a.ident, RBAC: a.rbac, Quota: a.quota, BaseDomain: testBaseDomain, PublicURL: "http://tenantgate.test"})
	req := httptest.NewRequest(http.MethodGet, "/api/v1/tenants/current", nil)
	req.Header.Set("Authorization", "Bearer "+x.UserToken)
	req.Header.Set("X-Tenant-Slug", "bench")
	b.ReportAllocs()
	b.ResetTimer()
	for b.Loop() {
		w := httptest.NewRecorder()
		h.ServeHTTP(w, req)
		if w.Code != 200 {
			b.Fatalf("status %d: %s", w.Code, w.Body)
		}
	}
}

// BenchmarkListUsers measures GET /api/v1/users (20 of 50 users) including the
// tenant-scoped database transaction.
func BenchmarkListUsers(b *testing.B) {
	a := newAPI(b, store.SQLite)
	x := a.signup("benchusers")
	for i := 0; i < 48; i++ {
		a.do("POST", "/api/v1/users", x.OwnerToken, map[string]any{"email": "u" + string(rune('a'+i%26)) + string(rune('a'+i/26)) + "@b.test", "password": pw}, nil)
	}
	h := NewServer(Deps{Store: a.store, Tenants: tenant.New(a.store, tenant.DefaultConfig, nil), Identity: a.ident, RBAC: a.rbac, Quota: a.quota, PublicURL: "http://tenantgate.test"})
	req := httptest.NewRequest(http.MethodGet, "/api/v1/users", nil)
	req.Header.Set("Authorization", "Bearer "+x.OwnerToken)
	b.ReportAllocs()
	b.ResetTimer()
	for b.Loop() {
		w := httptest.NewRecorder()
		h.ServeHTTP(w, req)
		if w.Code != 200 {
			b.Fatalf("status %d: %s", w.Code, w.Body)
		}
	}
}

// BenchmarkAuthzCheckHTTP measures POST /api/v1/authz/check through the
// whole pipeline (API key auth, tenant, permission) with warm caches.
func BenchmarkAuthzCheckHTTP(b *testing.B) {
	a := newAPI(b, store.SQLite)
	x := a.signup("benchcheck")
	key := a.want(a.do("POST", "/api/v1/api-keys", x.OwnerToken, map[string]any{"name": "bench"}, nil), 201, "").str("secret")
	h := NewServer(Deps{Store: a.store, Tenants: tenant.New(a.store, tenant.DefaultConfig, nil), Identity: a.ident, RBAC: a.rbac, Quota: a.quota, PublicURL: "http://tenantgate.test"})
	body := `{"userId":"` + x.UserID + `","resource":"user","action":"read"}`
	b.ReportAllocs()
	for b.Loop() {
		req := httptest.NewRequest(http.MethodPost, "/api/v1/authz/check", strings.NewReader(body))
		req.Header.Set("Authorization", "Bearer "+key)
		w := httptest.NewRecorder()
		h.ServeHTTP(w, req)
		if w.Code != 200 {
			b.Fatalf("status %d: %s", w.Code, w.Body)
		}
	}
}
