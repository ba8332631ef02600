package web

import (
	"context"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/tenantgate/tenantgate/internal/identity"
	"github.com/tenantgate/tenantgate/internal/store"
	"github.com/tenantgate/tenantgate/internal/store/storetest"
	"github.com/tenantgate/tenantgate/internal/tenant"
)

func TestAPIKeys(t *testing.T) {
	storetest.Each(t, func(t *testing.T, d store.Dialect) {
		a := newAPI(t, d)
		x, y := a.signup("soylent"), a.signup("oscorp")
		// Create: the secret is shown once, the key is stored without it.
		r := a.want(a.do("POST", "/api/v1/api-keys", x.OwnerToken, map[string]any{"name": "ci", "budget": "25.50",
			"allowedModels": []string{"gpt-4o-mini"}}, nil), 201, "")
		key, keyID := r.str("secret"), r.str("apiKey", "id")
		if !strings.HasPrefix(key, "tg_") || len(key) != 67 || !strings.HasPrefix(key, r.str("apiKey", "prefix")) {
			t.Fatalf("create: %s", r.Raw)
		}
		if r.str("apiKey", "budget") != "25.50" {
			t.Errorf("budget = %q", r.str("apiKey", "budget"))
		}
		list := a.want(a.do("GET", "/api/v1/api-keys", x.OwnerToken, nil, nil), 200, "")
		if strings.Contains(list.Raw, key) || strings.Contains(list.Raw, key[11:]) || len(list.items()) != 1 {
			t.Errorf("the list shows the secret or the wrong keys: %s", list.Raw)
		}
		// It works wherever a token does, as its user.
		a.want(a.do("GET", "/api/v1/users", key, nil, nil), 200, "")
		if got := a.want(a.do("GET", "/api/v1/users/me", key, nil, nil), 200, "").str("id"); got != x.OwnerID {
			t.Errorf("/users/me with the key = %s, want the owner", got)
		}
		// ...but only in its own tenant.
		a.want(a.do("GET", "/api/v1/users", key, nil, hdr{"X-Tenant-ID": y.ID}), 404, "TENANT_NOT_FOUND")
		a.want(a.do("GET", "/api/v1/users", key, nil, hdr{"Host": "oscorp." + testBaseDomain}), 404, "TENANT_NOT_FOUND")
		// Keys cannot mint keys; they are audited as the key.
		a.want(a.do("POST", "/api/v1/api-keys", key, map[string]any{"name": "child"}, nil), 403, "FORBIDDEN")
		a.want(a.do("POST", "/api/v1/users", key, map[string]any{"email": "viakey@soylent.test", "password": pw}, nil), 201, "")
		if ev := a.want(a.do("GET", "/api/v1/audit?eventType=user.created&limit=1", x.OwnerToken, nil, nil), 200, "").items(); len(ev) != 1 ||
			ev[0]["userId"] != x.OwnerID {
			t.Errorf("audit of a key's action: %v", ev)
		}
		// Scopes narrow a key; they cannot exceed the creator's permissions.
		ro := a.want(a.do("POST", "/api/v1/api-keys", x.OwnerToken, map[string]any{"name": "ro", "scopes": []string{"tenant:read"}}, nil), 201, "").str("secret")
		a.want(a.do("GET", "/api/v1/tenants/current", ro, nil, nil), 200, "")
		a.want(a.do("GET", "/api/v1/users", ro, nil, nil), 403, "PERMISSION_DENIED")
		a.want(a.do("POST", "/api/v1/api-keys", x.UserToken, map[string]any{"name": "greedy", "scopes": []string{"user:delete"}}, nil), 400, "INVALID_REQUEST")
		// A plain user manages only their own keys; an admin sees all.
		mine := a.want(a.do("POST", "/api/v1/api-keys", x.UserToken, map[string]any{"name": "mine"}, nil), 201, "")
		if n := len(a.want(a.do("GET", "/api/v1/api-keys", x.UserToken, nil, nil), 200, "").items()); n != 1 {
			t.Errorf("a user lists %d keys, want their 1", n)
		}
		if n := len(a.want(a.do("GET", "/api/v1/api-keys", x.OwnerToken, nil, nil), 200, "").items()); n != 3 {
			t.Errorf("the owner lists %d keys, want 3", n)
		}
		a.want(a.do("DELETE", "/api/v1/api-keys/"+keyID, x.UserToken, nil, nil), 404, "NOT_FOUND")
		a.want(a.do("DELETE", "/api/v1/api-keys/"+mine.str("apiKey", "id"), y.OwnerToken, nil, nil), 404, "NOT_FOUND")
		// Validation.
		for _, body := range []map[string]any{
			{"name": ""}, {"name": "x", "expiresAt": "2001-01-01T00:00:00Z"}, {"name": "x", "ipAllowlist": []string{"nope"}},
			{"name": "x", "budget": "-5"}, {"name": "x", "scopes": []string{"made:up"}},
		} {
			a.want(a.do("POST", "/api/v1/api-keys", x.OwnerToken, body, nil), 400, "INVALID_REQUEST")
		}
		// IP allowlist: the tests call from 127.0.0.1.
		far := a.want(a.do("POST", "/api/v1/api-keys", x.OwnerToken, map[string]any{"name": "far", "ipAllowlist": []string{"10.0.0.0/8"}}, nil), 201, "").str("secret")
		a.want(a.do("GET", "/api/v1/tenants/current", far, nil, nil), 403, "FORBIDDEN")
		near := a.want(a.do("POST", "/api/v1/api-keys", x.OwnerToken, map[string]any{"name": "near", "ipAllowlist": []string{"127.0.0.1"}}, nil), 201, "").str("secret")
		a.want(a.do("GET", "/api/v1/tenants/current", near, nil, nil), 200, "")
		// Expiry.
		soon := a.want(a.do("POST", "/api/v1/api-keys", x.OwnerToken, map[string]any{"name": "soon",
			"expiresAt": time.Now().Add(time.Hour).UTC().Format(time.RFC3339Nano)}, nil), 201, "").str("secret")
		a.want(a.do("GET", "/api/v1/tenants/current", soon, nil, nil), 200, "")
		a.clock.advance(time.Hour + time.Second) // the key's clock, not the access tokens'
		a.want(a.do("GET", "/api/v1/tenants/current", soon, nil, nil), 401, "TOKEN_EXPIRED")
		a.clock.advance(-time.Hour - time.Second)
		// Revocation takes effect at once on this server, despite the cache.
		a.want(a.do("DELETE", "/api/v1/api-keys/"+keyID, x.OwnerToken, nil, nil), 204, "")
		a.want(a.do("GET", "/api/v1/users", key, nil, nil), 401, "TOKEN_INVALID")
		// A user who is suspended loses their keys; a suspended tenant's keys stop.
		userKey := mine.str("secret")
		a.want(a.do("GET", "/api/v1/tenants/current", userKey, nil, nil), 200, "")
		a.want(a.do("PATCH", "/api/v1/users/"+x.UserID, x.OwnerToken, map[string]any{"status": "suspended"}, nil), 200, "")
		a.want(a.do("GET", "/api/v1/tenants/current", userKey, nil, nil), 401, "TOKEN_INVALID")
		op := a.operator()
		a.want(a.do("POST", "/api/v1/admin/tenants/"+x.ID+"/suspend", op, nil, nil), 200, "")
		a.want(a.do("GET", "/api/v1/tenants/current", near, nil, nil), 403, "TENANT_SUSPENDED")
		// Garbage that looks like a key.
		for _, bad := range []string{"tg_", "tg_short", "tg_" + strings.Repeat("A", 64), key[:66] + "x"} {
			a.want(a.do("GET", "/api/v1/tenants/current", bad, nil, nil), 401, "")
		}
	})
}

// BenchmarkAPIKeyAuth measures a request authenticated by an API key, warm cache.
func BenchmarkAPIKeyAuth(b *testing.B) {
	a := newAPI(b, store.SQLite)
	x := a.signup("benchkeys")
	key := a.want(a.do("POST", "/api/v1/api-keys", x.OwnerToken, map[string]any{"name": "bench"}, nil), 201, "").str("secret")
	h := NewServer(Deps{Store: a.store, Tenants: tenant.New(a.store, tenant.DefaultConfig, nil), Identity: a.ident, RBAC: a.rbac, Quota: a.quota, PublicURL: "http://tenantgate.test"})
	req := httptest.NewRequest(http.MethodGet, "/api/v1/tenants/current", nil)
	req.Header.Set("Authorization", "Bearer "+key)
	b.ReportAllocs()
	for b.Loop() {
		w := httptest.NewRecorder()
		h.ServeHTTP(w, req)
		if w.Code != 200 {
			b.Fatalf("status %d: %s", w.Code, w.Body)
		}
	}
}

// Authenticating an API key never writes to the database: with api_keys
// refusing every update (a database that takes no writes), a key still works
// after its cache entry expired, and its last use is recorded in a batch once
// writes work again.
func TestAPIKeyUseIsNotWrittenOnTheRequestPath(t *testing.T) {
	storetest.Each(t, func(t *testing.T, d store.Dialect) {
		a := newAPI(t, d)
		x := a.signup("keyuse")
		created := a.want(a.do("POST", "/api/v1/api-keys", x.OwnerToken, map[string]any{"name": "ci"}, nil), 201, "")
		key, keyID := created.str("secret"), created.str("apiKey", "id")
		lastUsed := func() string {
			for _, k := range a.want(a.do("GET", "/api/v1/api-keys", x.OwnerToken, nil, nil), 200, "").items() {
				if k["id"] == keyID {
					s, _ := k["lastUsedAt"].(string)
					return s
				}
			}
			t.Fatalf("key %s is not listed", keyID)
			return ""
		}
		a.want(a.do("GET", "/api/v1/tenants/current", key, nil, nil), 200, "")
		if got := lastUsed(); got != "" {
			t.Errorf("last use was written on the request path: %s", got)
		}
		if n, err := a.ident.FlushKeyUse(context.Background()); err != nil || n != 1 {
			t.Fatalf("FlushKeyUse = %d, %v; want 1 key", n, err)
		}
		first := lastUsed()
		if first == "" {
			t.Fatal("the flush did not record the key's use")
		}

		if d == store.Postgres {
			a.asOwner(`CREATE FUNCTION refuse_writes() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN RAISE EXCEPTION 'the disk is full'; END $$;
				CREATE TRIGGER refuse_writes BEFORE UPDATE ON api_keys FOR EACH ROW EXECUTE FUNCTION refuse_writes()`)
		} else {
			a.asOwner(`CREATE TRIGGER refuse_writes BEFORE UPDATE ON api_keys BEGIN SELECT RAISE(ABORT, 'the disk is full'); END`)
		}
		a.clock.advance(identity.KeyCacheTTL + time.Minute) // the cached key is stale: the next use reads the database
		a.want(a.do("GET", "/api/v1/tenants/current", key, nil, nil), 200, "")
		if _, err := a.ident.FlushKeyUse(context.Background()); err == nil {
			t.Fatal("FlushKeyUse succeeded against a table that refuses updates")
		}
		a.asOwner(`DROP TRIGGER refuse_writes` + map[bool]string{true: ` ON api_keys`}[d == store.Postgres])
		if n, err := a.ident.FlushKeyUse(context.Background()); err != nil || n != 1 {
			t.Fatalf("FlushKeyUse after writes work again = %d, %v; want the kept use of 1 key", n, err)
		}
		if second := lastUsed(); second <= first {
			t.Errorf("last use after the outage = %s, want later than %s", second, first)
		}
	})
}
