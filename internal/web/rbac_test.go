package web

import (
	"testing"
	"time"

	"github.com/tenantgate/tenantgate/internal/rbac"
	"github.com/tenantgate/tenantgate/internal/store"
	"github.com/tenantgate/tenantgate/internal/store/storetest"
)

func TestRBAC(t *testing.T) {
	storetest.Each(t, func(t *testing.T, d store.Dialect) {
		a := newAPI(t, d)
		x, y := a.signup("aperture"), a.signup("blackmesa")
		// The catalogue and the built-in roles.
		if n := len(a.want(a.do("GET", "/api/v1/permissions", x.OwnerToken, nil, nil), 200, "").items()); n < 10 {
			t.Errorf("catalogue has %d permissions", n)
		}
		roles := a.want(a.do("GET", "/api/v1/roles", x.OwnerToken, nil, nil), 200, "").items()
		if len(roles) != 4 || roles[0]["isBuiltIn"] != true || roles[0]["type"] != "system" {
			t.Fatalf("built-in roles: %v", roles)
		}
		ownerID := rbac.BuiltinRoleID("owner")
		a.want(a.do("DELETE", "/api/v1/roles/"+ownerID, x.OwnerToken, nil, nil), 403, "FORBIDDEN")
		a.want(a.do("PATCH", "/api/v1/roles/"+ownerID, x.OwnerToken, map[string]any{"level": 1}, nil), 403, "FORBIDDEN")

		// A custom hierarchy: auditor inherits from reader.
		reader := a.want(a.do("POST", "/api/v1/roles", x.OwnerToken, map[string]any{"name": "reader", "permissions": []map[string]any{{"permission": "user:read"}}}, nil), 201, "")
		auditor := a.want(a.do("POST", "/api/v1/roles", x.OwnerToken, map[string]any{"name": "auditor", "parentRoleId": reader.str("id"),
			"permissions": []map[string]any{{"permission": "audit:read"}}}, nil), 201, "")
		// Cycles are refused.
		a.want(a.do("PATCH", "/api/v1/roles/"+reader.str("id"), x.OwnerToken, map[string]any{"parentRoleId": auditor.str("id")}, nil), 409, rbac.CodeRoleHierarchyConflict)
		a.want(a.do("PATCH", "/api/v1/roles/"+reader.str("id"), x.OwnerToken, map[string]any{"parentRoleId": reader.str("id")}, nil), 409, rbac.CodeRoleHierarchyConflict)
		// Bad roles.
		a.want(a.do("POST", "/api/v1/roles", x.OwnerToken, map[string]any{"name": "reader"}, nil), 409, "ROLE_ALREADY_EXISTS")
		a.want(a.do("POST", "/api/v1/roles", x.OwnerToken, map[string]any{"name": "owner"}, nil), 400, "INVALID_REQUEST")
		a.want(a.do("POST", "/api/v1/roles", x.OwnerToken, map[string]any{"name": "x1", "permissions": []map[string]any{{"permission": "made:up"}}}, nil), 400, "INVALID_REQUEST")
		a.want(a.do("POST", "/api/v1/roles", x.OwnerToken, map[string]any{"name": "x2", "permissions": []map[string]any{{"permission": "platform:tenants"}}}, nil), 400, "INVALID_REQUEST")
		a.want(a.do("POST", "/api/v1/roles", x.OwnerToken, map[string]any{"name": "x3", "permissions": []map[string]any{{"permission": "user:read",
			"conditions": []map[string]any{{"type": "location_based", "operator": "in", "value": "nonsense"}}}}}, nil), 400, "INVALID_REQUEST")
		// The other tenant sees none of it.
		if n := len(a.want(a.do("GET", "/api/v1/roles", y.OwnerToken, nil, nil), 200, "").items()); n != 4 {
			t.Errorf("tenant y sees %d roles, want its 4 built-ins", n)
		}
		a.want(a.do("GET", "/api/v1/roles/"+auditor.str("id"), y.OwnerToken, nil, nil), 404, rbac.CodeRoleNotFound)
		a.want(a.do("POST", "/api/v1/users/"+y.UserID+"/roles", x.OwnerToken, map[string]any{"roleId": auditor.str("id")}, nil), 404, "USER_NOT_FOUND")
		a.want(a.do("POST", "/api/v1/users/"+y.UserID+"/roles", y.OwnerToken, map[string]any{"roleId": auditor.str("id")}, nil), 404, rbac.CodeRoleNotFound)

		// A plain user given auditor (time-bound) can read the audit log, by inheritance too.
		a.want(a.do("GET", "/api/v1/audit", x.UserToken, nil, nil), 403, "PERMISSION_DENIED")
		until := time.Now().Add(time.Hour).UTC()
		as := a.want(a.do("POST", "/api/v1/users/"+x.UserID+"/roles", x.OwnerToken, map[string]any{"roleId": auditor.str("id"),
			"validUntil": until.Format(time.RFC3339Nano), "metadata": map[string]any{"reason": "quarterly audit"}}, nil), 201, "")
		if as.str("assignedBy") == "" || as.str("roleName") != "auditor" {
			t.Errorf("assignment: %s", as.Raw)
		}
		a.want(a.do("GET", "/api/v1/audit", x.UserToken, nil, nil), 200, "")
		check := a.want(a.do("POST", "/api/v1/authz/check", x.OwnerToken, map[string]any{"userId": x.UserID, "resource": "user", "action": "read"}, nil), 200, "")
		if check.Body["allowed"] != true || check.Body["reason"] != nil {
			t.Errorf("check: %s", check.Raw)
		}
		ur := a.want(a.do("GET", "/api/v1/users/"+x.UserID+"/roles", x.OwnerToken, nil, nil), 200, "")
		if rs, _ := ur.Body["roles"].([]any); len(rs) != 2 {
			t.Errorf("user roles: %s", ur.Raw)
		}
		// A held role cannot be deleted.
		a.want(a.do("DELETE", "/api/v1/roles/"+auditor.str("id"), x.OwnerToken, nil, nil), 409, rbac.CodeRoleHierarchyConflict)
		// The grant expires: refused through the warm cache, never served stale.
		a.clock.advance(time.Hour + time.Second) // RBAC's clock, not the access tokens'
		defer a.clock.advance(-time.Hour - time.Second)
		a.want(a.do("GET", "/api/v1/audit", x.UserToken, nil, nil), 403, "PERMISSION_DENIED")
		r := a.want(a.do("POST", "/api/v1/authz/check", x.UserToken, map[string]any{"userId": x.UserID, "resource": "audit", "action": "read"}, nil), 200, "")
		if r.Body["allowed"] != false || r.str("reason") != "insufficient_permissions" {
			t.Errorf("after expiry: %s", r.Raw)
		}
		// Removing it works; then the role can go.
		a.want(a.do("DELETE", "/api/v1/users/"+x.UserID+"/roles/"+auditor.str("id"), x.OwnerToken, nil, nil), 204, "")
		a.want(a.do("DELETE", "/api/v1/roles/"+auditor.str("id"), x.OwnerToken, nil, nil), 204, "")

		// Nobody assigns what they do not hold: an admin cannot hand out billing:manage.
		billing := a.want(a.do("POST", "/api/v1/roles", x.OwnerToken, map[string]any{"name": "payer", "permissions": []map[string]any{{"permission": "billing:manage"}}}, nil), 201, "")
		adm := a.want(a.do("POST", "/api/v1/users", x.OwnerToken, map[string]any{"email": "adm@aperture.test", "password": pw, "roles": []string{"admin"}}, nil), 201, "")
		admTok := a.want(a.do("POST", "/api/v1/auth/login", "", map[string]any{"email": "adm@aperture.test", "password": pw, "tenant": "aperture"}, nil), 200, "").str("accessToken")
		a.want(a.do("POST", "/api/v1/users/"+x.UserID+"/roles", admTok, map[string]any{"roleId": billing.str("id")}, nil), 403, rbac.CodeInvalidRoleAssignment)
		_ = adm
		// Checking someone else needs authz:check; another tenant's id is not found.
		a.want(a.do("POST", "/api/v1/authz/check", x.UserToken, map[string]any{"userId": x.OwnerID, "resource": "user", "action": "read"}, nil), 403, "PERMISSION_DENIED")
		a.want(a.do("POST", "/api/v1/authz/check", x.OwnerToken, map[string]any{"tenantId": y.ID, "userId": y.UserID, "resource": "user", "action": "read"}, nil), 404, "TENANT_NOT_FOUND")
		other := a.want(a.do("POST", "/api/v1/authz/check", x.OwnerToken, map[string]any{"userId": y.UserID, "resource": "user", "action": "read"}, nil), 200, "")
		if other.Body["allowed"] != false {
			t.Errorf("a user of another tenant is allowed in this one: %s", other.Raw)
		}
		// Batch.
		b := a.want(a.do("POST", "/api/v1/authz/check-batch", x.OwnerToken, map[string]any{"userId": x.UserID, "checks": []map[string]any{
			{"resource": "user", "action": "read", "resourceId": "u1"}, {"resource": "user", "action": "delete", "resourceId": "u2"}}}, nil), 200, "")
		res, _ := b.Body["results"].([]any)
		if len(res) != 2 || res[0].(map[string]any)["allowed"] != true || res[1].(map[string]any)["allowed"] != false ||
			res[1].(map[string]any)["resourceId"] != "u2" {
			t.Errorf("batch: %s", b.Raw)
		}
	})
}

func TestRBACConditions(t *testing.T) {
	a := newAPI(t, store.SQLite)
	x := a.signup("conditions")
	mk := func(name string, cond map[string]any) string {
		r := a.want(a.do("POST", "/api/v1/roles", x.OwnerToken, map[string]any{"name": name, "permissions": []map[string]any{
			{"permission": "audit:read", "conditions": []map[string]any{cond}}}}, nil), 201, "")
		return r.str("id")
	}
	check := func(ctx map[string]any) resp {
		return a.want(a.do("POST", "/api/v1/authz/check", x.OwnerToken, map[string]any{"userId": x.UserID, "resource": "audit", "action": "read", "context": ctx}, nil), 200, "")
	}
	assign := func(id string) {
		a.want(a.do("POST", "/api/v1/users/"+x.UserID+"/roles", x.OwnerToken, map[string]any{"roleId": id}, nil), 201, "")
	}
	unassign := func(id string) {
		a.want(a.do("DELETE", "/api/v1/users/"+x.UserID+"/roles/"+id, x.OwnerToken, nil, nil), 204, "")
	}
	for _, c := range []struct {
		name  string
		cond  map[string]any
		ctx   map[string]any
		allow bool
	}{
		{"ip inside", map[string]any{"type": "location_based", "operator": "in", "value": []string{"127.0.0.0/8"}}, nil, true},
		{"ip outside", map[string]any{"type": "location_based", "operator": "in", "value": "10.0.0.0/8"}, nil, false},
		{"ip from context", map[string]any{"type": "location_based", "operator": "in", "value": "10.0.0.0/8"}, map[string]any{"requestIp": "10.2.3.4"}, true},
		{"not_in", map[string]any{"type": "location_based", "operator": "not_in", "value": "10.0.0.0/8"}, nil, true},
		{"owner matches", map[string]any{"type": "resource_based", "operator": "equals", "value": "$user.id"}, map[string]any{"ownerId": x.UserID}, true},
		{"owner differs", map[string]any{"type": "resource_based", "operator": "equals", "value": "$user.id"}, map[string]any{"ownerId": x.OwnerID}, false},
		{"owner missing", map[string]any{"type": "resource_based", "operator": "equals", "value": "$user.id"}, nil, false},
		{"custom greater", map[string]any{"type": "custom", "operator": "greater_than", "value": 3, "metadata": map[string]string{"attribute": "clearance"}}, map[string]any{"clearance": 5}, true},
		{"custom less", map[string]any{"type": "custom", "operator": "greater_than", "value": 3, "metadata": map[string]string{"attribute": "clearance"}}, map[string]any{"clearance": 1}, false},
		{"before a future time", map[string]any{"type": "time_based", "operator": "less_than", "value": time.Now().Add(time.Hour).UTC().Format(time.RFC3339)}, nil, true},
		{"after a future time", map[string]any{"type": "time_based", "operator": "greater_than", "value": time.Now().Add(time.Hour).UTC().Format(time.RFC3339)}, nil, false},
		{"weekday", map[string]any{"type": "time_based", "operator": "in", "value": []string{"mon", "tue", "wed", "thu", "fri", "sat", "sun"}, "metadata": map[string]string{"attribute": "weekday"}}, nil, true},
		{"no hour", map[string]any{"type": "time_based", "operator": "in", "value": []int{}, "metadata": map[string]string{"attribute": "hour"}}, nil, false},
	} {
		id := mk("c-"+time.Now().Format("150405.000000"), c.cond)
		assign(id)
		r := check(c.ctx)
		if got := r.Body["allowed"] == true; got != c.allow {
			t.Errorf("%s: allowed = %v, want %v (%s)", c.name, got, c.allow, r.Raw)
		}
		if !c.allow && r.str("reason") == "" {
			t.Errorf("%s: a refusal without a reason", c.name)
		}
		unassign(id)
	}
}
