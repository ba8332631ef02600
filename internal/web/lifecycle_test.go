package web

import (
	"context"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"gorm.io/gorm"

	"github.com/tenantgate/tenantgate/internal/actor"
	"github.com/tenantgate/tenantgate/internal/store"
	"github.com/tenantgate/tenantgate/internal/store/storetest"
)

func TestTenantLifecycleThroughTheAPI(t *testing.T) {
	storetest.Each(t, func(t *testing.T, d store.Dialect) {
		a := newAPI(t, d)
		x, y := a.signup("wayne"), a.signup("stark")
		op := a.operator()
		path := "/api/v1/admin/tenants/" + x.ID

		// Tenants cannot use operator routes.
		a.want(a.do("GET", "/api/v1/admin/tenants", x.OwnerToken, nil, nil), 403, "PERMISSION_DENIED")

		// Suspend: the tenant's tokens, logins and refreshes stop; the other tenant is untouched.
		r := a.want(a.do("POST", path+"/suspend", op, map[string]any{"reason": "unpaid invoice"}, nil), 200, "")
		if r.str("status") != "suspended" {
			t.Fatalf("status after suspend = %s", r.str("status"))
		}
		a.want(a.do("GET", "/api/v1/users", x.OwnerToken, nil, nil), 403, "TENANT_SUSPENDED")
		a.want(a.do("POST", "/api/v1/auth/login", "", map[string]any{"email": x.OwnerEmail, "password": pw, "tenant": "wayne"}, nil), 403, "TENANT_SUSPENDED")
		a.want(a.do("POST", "/api/v1/auth/refresh", "", map[string]any{"refreshToken": x.OwnerRefresh}, nil), 403, "TENANT_SUSPENDED")
		a.want(a.do("GET", "/api/v1/users", y.OwnerToken, nil, nil), 200, "")
		// The operator still sees the suspended tenant's data.
		a.want(a.do("GET", "/api/v1/users", op, nil, hdr{"X-Tenant-ID": x.ID}), 200, "")

		// Invalid transitions answer 409.
		a.want(a.do("POST", path+"/suspend", op, nil, nil), 409, "INVALID_STATE_TRANSITION")
		a.want(a.do("POST", path+"/restore", op, nil, nil), 409, "INVALID_STATE_TRANSITION")

		a.want(a.do("POST", path+"/activate", op, nil, nil), 200, "")
		a.want(a.do("GET", "/api/v1/users", x.OwnerToken, nil, nil), 200, "")

		// Delete, then restore to where it was.
		r = a.want(a.do("DELETE", path, op, nil, nil), 200, "")
		if r.str("status") != "deleted" || r.str("purgeAt") == "" {
			t.Fatalf("after delete: %s", r.Raw)
		}
		a.want(a.do("GET", "/api/v1/users", x.OwnerToken, nil, nil), 410, "TENANT_DELETED")
		a.want(a.do("POST", path+"/activate", op, nil, nil), 409, "INVALID_STATE_TRANSITION")
		a.want(a.do("PATCH", path, op, map[string]any{"name": "X"}, nil), 409, "INVALID_STATE_TRANSITION")
		if got := a.want(a.do("POST", path+"/restore", op, nil, nil), 200, "").str("status"); got != "active" {
			t.Errorf("restored to %s, want active (its status before deletion)", got)
		}
		a.want(a.do("GET", "/api/v1/users", x.OwnerToken, nil, nil), 200, "")

		// Every step is in the tenant's audit log, by the operator.
		evs := a.want(a.do("GET", "/api/v1/audit?resource=tenant&limit=100", x.OwnerToken, nil, nil), 200, "").items()
		var types []string
		for _, e := range evs {
			if e["actorType"] == "operator" && e["eventType"] != "platform.cross_tenant_access" {
				types = append(types, e["eventType"].(string))
			}
		}
		want := []string{"tenant.restore", "tenant.delete", "tenant.activate", "tenant.suspend"}
		if diff := cmp.Diff(want, types); diff != "" {
			t.Errorf("operator lifecycle events, newest first (-want +got):\n%s", diff)
		}

		// Operators list and filter tenants, with pagination.
		all := a.want(a.do("GET", "/api/v1/admin/tenants?limit=1", op, nil, nil), 200, "")
		if len(all.items()) != 1 || all.Body["nextCursor"] == nil {
			t.Fatalf("first page: %s", all.Raw)
		}
		next := a.want(a.do("GET", "/api/v1/admin/tenants?limit=1&cursor="+all.Body["nextCursor"].(string), op, nil, nil), 200, "")
		if len(next.items()) != 1 || next.items()[0]["id"] == all.items()[0]["id"] || next.Body["nextCursor"] != nil {
			t.Errorf("second page: %s", next.Raw)
		}
		if got := a.want(a.do("GET", "/api/v1/admin/tenants?q=STA", op, nil, nil), 200, "").items(); len(got) != 1 || got[0]["slug"] != "stark" {
			t.Errorf("q=STA found %v", got)
		}
		a.want(a.do("GET", "/api/v1/admin/tenants?status=bogus", op, nil, nil), 400, "INVALID_REQUEST")

		// Rename: the old slug keeps answering as an alias; a third tenant cannot take it.
		r = a.want(a.do("PATCH", "/api/v1/admin/tenants/"+y.ID, op, map[string]any{"slug": "stark-industries", "plan": "pro"}, nil), 200, "")
		if r.str("slug") != "stark-industries" || r.str("plan") != "pro" {
			t.Fatalf("after rename: %s", r.Raw)
		}
		for _, slug := range []string{"stark", "stark-industries"} {
			if got := a.want(a.do("GET", "/api/v1/tenants/current", y.UserToken, nil, hdr{"X-Tenant-Slug": slug}), 200, "").str("id"); got != y.ID {
				t.Errorf("slug %s resolves to %s, want %s", slug, got, y.ID)
			}
		}
		a.want(a.do("POST", "/api/v1/tenants/signup", "", map[string]any{"slug": "stark", "name": "Squatter", "ownerEmail": "s@s.test", "ownerPassword": pw}, nil), 409, "TENANT_ALREADY_EXISTS")
		// Tenant admins cannot change their own slug or plan.
		a.want(a.do("PATCH", "/api/v1/tenants/current/settings", y.OwnerToken, map[string]any{"timezone": "Europe/Berlin", "currency": "EUR"}, nil), 200, "")
		if got := a.want(a.do("GET", "/api/v1/tenants/current", y.UserToken, nil, nil), 200, "").str("settings", "timezone"); got != "Europe/Berlin" {
			t.Errorf("timezone = %q", got)
		}
	})
}

// TestPurgeRemovesEveryRow deletes a tenant, lets its purge time pass, runs
// the purge job, and counts the rows it owns in every table with tenant_id.
func TestPurgeRemovesEveryRow(t *testing.T) {
	storetest.Each(t, func(t *testing.T, d store.Dialect) {
		a := newAPI(t, d)
		x, y := a.signup("doomed"), a.signup("survivor")
		op := a.operator()
		before := a.countRows(y.ID)
		if len(a.countRows(x.ID)) < 3 {
			t.Fatalf("the tenant owns rows in only %v; the test would prove little", a.countRows(x.ID))
		}
		a.want(a.do("DELETE", "/api/v1/admin/tenants/"+x.ID, op, nil, nil), 200, "")
		ctx := actor.With(context.Background(), actor.System("test"))
		// Not due yet: nothing is purged.
		ids, err := a.tenants.PurgeDue(ctx)
		storetest.Must(t, err)
		if len(ids) != 0 {
			t.Fatalf("purged %v before the purge time", ids)
		}
		// Once the purge time has passed, the job purges it.
		storetest.Must(t, a.store.Tx(store.WithPlatform(ctx, "test"), func(tx *gorm.DB) error {
			return tx.Exec("UPDATE tenants SET purge_at = ? WHERE id = ?", time.Now().UTC().Add(-time.Minute), x.ID).Error
		}))
		ids, err = a.tenants.PurgeDue(ctx)
		storetest.Must(t, err)
		if diff := cmp.Diff([]string{x.ID}, ids); diff != "" {
			t.Fatalf("purged (-want +got):\n%s", diff)
		}
		if left := a.countRows(x.ID); len(left) != 0 {
			t.Errorf("rows left after purge: %v", left)
		}
		if diff := cmp.Diff(before, a.countRows(y.ID)); diff != "" {
			t.Errorf("the other tenant's rows changed (-before +after):\n%s", diff)
		}
		a.want(a.do("GET", "/api/v1/admin/tenants/"+x.ID, op, nil, nil), 404, "TENANT_NOT_FOUND")
		a.want(a.do("POST", "/api/v1/admin/tenants/"+x.ID+"/restore", op, nil, nil), 404, "TENANT_NOT_FOUND")
		// The purged slug is free again.
		a.signup("doomed")
	})
}

// TestAnonymousLearnsNoStatus: public endpoints answer the same whether the
// tenant they name is active, suspended, deleted or missing.
func TestAnonymousLearnsNoStatus(t *testing.T) {
	a := newAPI(t, store.SQLite)
	x := a.signup("quiet")
	op := a.operator()
	a.want(a.do("POST", "/api/v1/admin/tenants/"+x.ID+"/suspend", op, nil, nil), 200, "")
	for _, h := range []hdr{{"X-Tenant-Slug": "quiet"}, {"X-Tenant-Slug": "no-such-org"}, {"X-Tenant-ID": x.ID}, {"Host": "quiet." + testBaseDomain}} {
		a.want(a.do("GET", "/healthz", "", nil, h), 200, "")
		a.want(a.do("GET", "/.well-known/jwks.json", "", nil, h), 200, "")
	}
	// Login at the host of an unknown tenant still says so, instead of trying an operator login.
	a.want(a.do("POST", "/api/v1/auth/login", "", map[string]any{"email": "ops@platform.test", "password": "operator-pass-1"},
		hdr{"Host": "no-such-org." + testBaseDomain}), 404, "TENANT_NOT_FOUND")
}

// TestTrialExpiryAndBillingHook: at the end of its trial a tenant on a paid
// plan that has not paid is suspended, one on the free plan becomes active;
// billing reports payments through the service API.
func TestTrialExpiryAndBillingHook(t *testing.T) {
	storetest.Each(t, func(t *testing.T, d store.Dialect) {
		a := newAPI(t, d)
		paid := a.signup("paying") // pro plan
		free := a.want(a.do("POST", "/api/v1/tenants/signup", "", map[string]any{"slug": "gratis", "name": "Gratis",
			"ownerEmail": "o@gratis.test", "ownerPassword": pw}, nil), 201, "").str("tenant", "id")
		ctx := actor.With(context.Background(), actor.System("test"))
		if n, err := a.tenants.ExpireTrials(ctx, a.quota.PaidPlan); err != nil || n != 0 {
			t.Fatalf("before the trials end: %d moved, %v", n, err)
		}
		storetest.Must(t, a.store.Tx(store.WithPlatform(ctx, "test"), func(tx *gorm.DB) error {
			return tx.Exec("UPDATE tenants SET trial_ends_at = ?", time.Now().UTC().Add(-time.Minute)).Error
		}))
		if n, err := a.tenants.ExpireTrials(ctx, a.quota.PaidPlan); err != nil || n != 2 {
			t.Fatalf("trial expiry moved %d, %v; want 2", n, err)
		}
		op := a.operator()
		if s := a.want(a.do("GET", "/api/v1/admin/tenants/"+paid.ID, op, nil, nil), 200, "").str("status"); s != "suspended" {
			t.Errorf("paid plan after its trial: %s, want suspended", s)
		}
		if s := a.want(a.do("GET", "/api/v1/admin/tenants/"+free, op, nil, nil), 200, "").str("status"); s != "active" {
			t.Errorf("free plan after its trial: %s, want active", s)
		}
		a.want(a.do("GET", "/api/v1/users", paid.OwnerToken, nil, nil), 403, "TENANT_SUSPENDED")
		// Billing: a payment reactivates; a failed one suspends; repeating is harmless.
		svc := hdr{"X-Service-Token": testServiceToken, "X-Service-Name": "billing"}
		for _, c := range []struct{ status, want string }{{"succeeded", "active"}, {"succeeded", "active"}, {"failed", "suspended"}, {"succeeded", "active"}} {
			r := a.want(a.do("POST", "/internal/billing/payment-status", "", map[string]any{"tenantId": paid.ID, "status": c.status, "reason": "invoice 7"}, svc), 200, "")
			if r.str("status") != c.want {
				t.Errorf("payment %s: %s, want %s", c.status, r.str("status"), c.want)
			}
		}
		a.want(a.do("POST", "/internal/billing/payment-status", "", map[string]any{"tenantId": paid.ID, "status": "maybe"}, svc), 400, "INVALID_REQUEST")
		a.want(a.do("GET", "/api/v1/users", paid.OwnerToken, nil, nil), 200, "")
		ev := a.want(a.do("GET", "/api/v1/audit?resource=tenant&eventType=tenant.suspend", paid.OwnerToken, nil, nil), 200, "").items()
		if len(ev) != 2 {
			t.Errorf("suspensions audited: %d, want 2 (trial end and failed payment)", len(ev))
		}
	})
}

// TestDataRetention: a tenant's activity records older than its retention
// setting are removed by the maintenance job; other tenants keep theirs.
func TestDataRetention(t *testing.T) {
	storetest.Each(t, func(t *testing.T, d store.Dialect) {
		a := newAPI(t, d)
		x, y := a.signup("forgetful"), a.signup("hoarder")
		a.want(a.do("PATCH", "/api/v1/tenants/current/compliance", x.OwnerToken, map[string]any{"dataRetentionDays": 30}, nil), 200, "")
		ctx := actor.With(context.Background(), actor.System("test"))
		old := time.Now().UTC().AddDate(0, 0, -40)
		for _, tid := range []string{x.ID, y.ID} {
			storetest.Must(t, a.store.Tx(store.WithTenant(ctx, tid), func(tx *gorm.DB) error {
				return tx.Exec("UPDATE audit_events SET occurred_at = ? WHERE event_type = ?", old, "tenant.created").Error
			}))
		}
		n, err := a.tenants.ApplyRetention(ctx)
		storetest.Must(t, err)
		if n != 1 {
			t.Errorf("retention removed %d rows, want the one old event of tenant x", n)
		}
		if ev := a.want(a.do("GET", "/api/v1/audit?eventType=tenant.created", x.OwnerToken, nil, nil), 200, "").items(); len(ev) != 0 {
			t.Errorf("x still has its old event: %v", ev)
		}
		if ev := a.want(a.do("GET", "/api/v1/audit?eventType=tenant.created", y.OwnerToken, nil, nil), 200, "").items(); len(ev) != 1 {
			t.Errorf("y (no retention) lost its event: %v", ev)
		}
		if ev := a.want(a.do("GET", "/api/v1/audit?eventType=user.created", x.OwnerToken, nil, nil), 200, "").items(); len(ev) == 0 {
			t.Error("retention removed recent events too")
		}
	})
}
