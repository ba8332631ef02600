package web

import (
	"context"
	"fmt"
	"strings"
	"sync"
	"testing"

	"gorm.io/gorm"

	"github.com/tenantgate/tenantgate/internal/store"
	"github.com/tenantgate/tenantgate/internal/store/storetest"
	"github.com/tenantgate/tenantgate/pkg/snapshot"
)

// TestQuotaReservationIsAtomic: 50 parallel creations at a limit of 10 end
// with exactly 10 users, on SQLite and PostgreSQL.
func TestQuotaReservationIsAtomic(t *testing.T) {
	storetest.Each(t, func(t *testing.T, d store.Dialect) {
		a := newAPI(t, d)
		op := a.operator()
		for round := 0; round < 3; round++ { // the race is probabilistic: several rounds
			x := a.signup(fmt.Sprintf("crowded%d", round)) // owner + member: 2 users
			a.want(a.do("PUT", "/api/v1/admin/tenants/"+x.ID+"/entitlements", op, map[string]any{"limits": map[string]int64{"users": 10}}, nil), 200, "")
			var wg sync.WaitGroup
			var mu sync.Mutex
			codes := map[int]int{}
			for i := 0; i < 50; i++ {
				wg.Add(1)
				go func(i int) {
					defer wg.Done()
					r := a.do("POST", "/api/v1/users", x.OwnerToken, map[string]any{"email": "p" + strings.Repeat("x", i%7) + string(rune('a'+i%26)) + string(rune('a'+i/26)) + "@crowded.test", "password": pw}, nil)
					mu.Lock()
					codes[r.Status]++
					mu.Unlock()
					if r.Status != 201 && r.code() != "TENANT_QUOTA_EXCEEDED" {
						t.Errorf("a parallel create: %d %s", r.Status, r.Raw)
					}
				}(i)
			}
			wg.Wait()
			if codes[201] != 8 || codes[403] != 42 {
				t.Errorf("50 parallel creates at a limit of 10 (2 existing): %v, want 8 created and 42 refused", codes)
			}
			e := a.want(a.do("GET", "/api/v1/tenants/current/entitlements", x.OwnerToken, nil, nil), 200, "")
			users := e.Body["limits"].(map[string]any)["users"].(map[string]any)
			if users["used"].(float64) != 10 || users["limit"].(float64) != 10 {
				t.Errorf("entitlements after the race: %s", e.Raw)
			}
			r := a.want(a.do("POST", "/api/v1/users", x.OwnerToken, map[string]any{"email": "late@crowded.test", "password": pw}, nil), 403, "TENANT_QUOTA_EXCEEDED")
			if !strings.Contains(r.Raw, `"limit":"10"`) || !strings.Contains(r.Raw, `"used":"10"`) {
				t.Errorf("the refusal should name limit and use: %s", r.Raw)
			}
		}
	})
}

func TestPlansAndFeatures(t *testing.T) {
	storetest.Each(t, func(t *testing.T, d store.Dialect) {
		a := newAPI(t, d)
		op := a.operator()
		free := a.want(a.do("POST", "/api/v1/tenants/signup", "", map[string]any{"slug": "freebie", "name": "Freebie",
			"ownerEmail": "o@freebie.test", "ownerPassword": pw}, nil), 201, "")
		tok, id := free.str("tokens", "accessToken"), free.str("tenant", "id")
		// The catalogue is public.
		if n := len(a.want(a.do("GET", "/api/v1/plans", "", nil, nil), 200, "").items()); n != 5 {
			t.Errorf("%d plans in the catalogue, want 5", n)
		}
		// A feature the plan lacks names the plan that has it.
		r := a.want(a.do("POST", "/api/v1/api-keys", tok, map[string]any{"name": "k"}, nil), 403, "FEATURE_NOT_ENABLED")
		if !strings.Contains(r.Raw, `"plan":"starter"`) {
			t.Errorf("feature refusal: %s", r.Raw)
		}
		a.want(a.do("POST", "/api/v1/identity-providers", tok, map[string]any{"name": "x"}, nil), 403, "FEATURE_NOT_ENABLED")
		e := a.want(a.do("GET", "/api/v1/tenants/current/entitlements", tok, nil, nil), 200, "")
		if e.str("plan") != "free" || e.Body["features"].(map[string]any)["sso"] != false {
			t.Errorf("entitlements: %s", e.Raw)
		}
		// Upgrade applies at once.
		a.want(a.do("PATCH", "/api/v1/admin/tenants/"+id, op, map[string]any{"plan": "starter"}, nil), 200, "")
		a.want(a.do("POST", "/api/v1/api-keys", tok, map[string]any{"name": "k1"}, nil), 201, "")
		// A downgrade that usage exceeds is refused, naming the limit.
		r = a.want(a.do("PATCH", "/api/v1/admin/tenants/"+id, op, map[string]any{"plan": "free"}, nil), 409, "PLAN_DOWNGRADE_EXCEEDS_USAGE")
		if !strings.Contains(r.Raw, `"apiKeys":"1 in use, the free plan allows 0"`) {
			t.Errorf("downgrade refusal: %s", r.Raw)
		}
		a.want(a.do("PATCH", "/api/v1/admin/tenants/"+id, op, map[string]any{"plan": "nonexistent"}, nil), 400, "INVALID_REQUEST")
		// Overrides beat the plan: more keys for this tenant only.
		a.want(a.do("PUT", "/api/v1/admin/tenants/"+id+"/entitlements", op, map[string]any{"limits": map[string]int64{"apiKeys": 1},
			"features": map[string]bool{"sso": true}}, nil), 200, "")
		a.want(a.do("POST", "/api/v1/api-keys", tok, map[string]any{"name": "k2"}, nil), 403, "TENANT_QUOTA_EXCEEDED")
		a.want(a.do("PUT", "/api/v1/admin/tenants/"+id+"/entitlements", op, map[string]any{"limits": map[string]int64{"apiKeys": -5}}, nil), 400, "INVALID_REQUEST")
		// Operators edit plans.
		p := a.want(a.do("GET", "/api/v1/admin/plans/free", op, nil, nil), 200, "")
		if p.str("isolation") != "shared" {
			t.Errorf("free plan: %s", p.Raw)
		}
		a.want(a.do("PUT", "/api/v1/admin/plans/free", op, map[string]any{"displayName": "Free", "isolation": "shared",
			"features": map[string]bool{"apiAccess": true}, "limits": map[string]int64{"users": 5, "apiKeys": 3}}, nil), 200, "")
		a.want(a.do("PUT", "/api/v1/admin/plans/free", op, map[string]any{"displayName": "Free", "isolation": "moon"}, nil), 400, "INVALID_REQUEST")
		a.want(a.do("PUT", "/api/v1/admin/plans/free", tok, map[string]any{"displayName": "x"}, nil), 403, "PERMISSION_DENIED")
		a.want(a.do("GET", "/api/v1/admin/plans/nope", op, nil, nil), 404, "PLAN_NOT_FOUND")
		// Custom roles count too.
		a.want(a.do("PUT", "/api/v1/admin/tenants/"+id+"/entitlements", op, map[string]any{"limits": map[string]int64{"roles": 1}}, nil), 200, "")
		a.want(a.do("POST", "/api/v1/roles", tok, map[string]any{"name": "one"}, nil), 201, "")
		a.want(a.do("POST", "/api/v1/roles", tok, map[string]any{"name": "two"}, nil), 403, "TENANT_QUOTA_EXCEEDED")
	})
}

// TestEntitlementSnapshot fetches a snapshot with an API key, the way a
// dedicated instance would, and verifies it offline with the public JWKS.
func TestEntitlementSnapshot(t *testing.T) {
	storetest.Each(t, func(t *testing.T, d store.Dialect) {
		a := newAPI(t, d)
		x, y := a.signup("snappy"), a.signup("other-snap")
		key := a.want(a.do("POST", "/api/v1/api-keys", x.OwnerToken, map[string]any{"name": "instance", "scopes": []string{"tenant:read"}}, nil), 201, "").str("secret")
		a.want(a.do("POST", "/api/v1/usage/events", x.OwnerToken, map[string]any{"id": "snap-1", "meter": "tokens", "value": 1234}, nil), 202, "")
		r := a.do("GET", "/api/v1/tenants/"+x.ID+"/entitlement-snapshot", key, nil, nil)
		if r.Status != 200 || !strings.HasPrefix(r.Header.Get("Content-Type"), "application/jwt") {
			t.Fatalf("snapshot: %d %s", r.Status, r.Raw)
		}
		jwks := a.want(a.do("GET", "/.well-known/jwks.json", "", nil, nil), 200, "").Raw
		v, err := snapshot.NewVerifier([]byte(jwks), "http://tenantgate.test")
		storetest.Must(t, err)
		snap, err := v.Verify([]byte(r.Raw))
		storetest.Must(t, err)
		if snap.TenantID != x.ID || snap.Plan != "pro" || !snap.Allows("sso") || snap.TTL != 600 ||
			snap.Quotas["users"].Used == nil || *snap.Quotas["users"].Used != 2 || snap.Quotas["monthlyTokens"].Period != "month" ||
			snap.Quotas["monthlyTokens"].Used == nil || *snap.Quotas["monthlyTokens"].Used != 1234 {
			t.Errorf("snapshot content: %+v", snap)
		}
		// It is not an access token, and another tenant's snapshot is not reachable.
		a.want(a.do("GET", "/api/v1/users/me", r.Raw, nil, nil), 401, "TOKEN_INVALID")
		a.want(a.do("GET", "/api/v1/tenants/"+y.ID+"/entitlement-snapshot", key, nil, nil), 404, "TENANT_NOT_FOUND")
		a.want(a.do("GET", "/api/v1/tenants/"+x.ID+"/entitlement-snapshot?ttl=5", key, nil, nil), 400, "INVALID_REQUEST")
		if r := a.do("GET", "/api/v1/tenants/"+y.ID+"/entitlement-snapshot?ttl=60", a.operator(), nil, nil); r.Status != 200 {
			t.Errorf("operator snapshot: %d %s", r.Status, r.Raw)
		}
	})
}

// BenchmarkQuotaReserve measures the quota check at creation (lock, plan,
// count) inside a transaction, as creating a user runs it.
func BenchmarkQuotaReserve(b *testing.B) {
	for _, d := range storetest.Dialects() {
		b.Run(string(d), func(b *testing.B) {
			a := newAPI(b, d)
			x := a.signup("bench-reserve")
			ctx := store.WithTenant(context.Background(), x.ID)
			for b.Loop() {
				err := a.store.Tx(ctx, func(tx *gorm.DB) error { return a.quota.Reserve(ctx, tx, "users") })
				if err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}
