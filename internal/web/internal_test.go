package web

import (
	"strings"
	"testing"
	"time"

	"github.com/tenantgate/tenantgate/internal/rbac"
	"github.com/tenantgate/tenantgate/internal/store"
	"github.com/tenantgate/tenantgate/internal/store/storetest"
)

func TestServiceAPI(t *testing.T) {
	storetest.Each(t, func(t *testing.T, d store.Dialect) {
		a := newAPI(t, d)
		x, y := a.signup("umbrella-corp"), a.signup("weyland")
		svc := hdr{"X-Service-Token": testServiceToken, "X-Service-Name": "billing"}
		// Credentials: the token, bound to its name; bearer tokens never work here.
		for _, h := range []hdr{{}, {"X-Service-Token": testServiceToken}, {"X-Service-Token": testServiceToken, "X-Service-Name": "other"},
			{"X-Service-Token": testServiceToken + "x", "X-Service-Name": "billing"}} {
			a.want(a.do("GET", "/internal/users/"+x.UserID, "", nil, h), 401, "UNAUTHORIZED")
		}
		a.want(a.do("GET", "/internal/users/"+x.UserID, x.OwnerToken, nil, nil), 401, "UNAUTHORIZED")

		// Users.
		if got := a.want(a.do("GET", "/internal/users/"+x.UserID, "", nil, svc), 200, "").str("tenantId"); got != x.ID {
			t.Errorf("user lookup: tenant %s", got)
		}
		a.want(a.do("GET", "/internal/users/"+x.UserID+"?tenantId="+y.ID, "", nil, svc), 404, "USER_NOT_FOUND")
		ok := a.want(a.do("POST", "/internal/users/validate-credentials", "", map[string]any{"email": x.UserEmail, "password": pw, "tenantId": x.ID}, svc), 200, "")
		if ok.Body["valid"] != true || ok.str("user", "id") != x.UserID || strings.Contains(ok.Raw, "argon2") {
			t.Errorf("validate-credentials: %s", ok.Raw)
		}
		bad := a.want(a.do("POST", "/internal/users/validate-credentials", "", map[string]any{"email": x.UserEmail, "password": pw, "tenantId": y.ID}, svc), 200, "")
		if bad.Body["valid"] != false {
			t.Errorf("credentials of tenant x accepted in tenant y: %s", bad.Raw)
		}
		st := a.want(a.do("POST", "/internal/users/validate-status", "", map[string]any{"userIds": []string{x.UserID, y.UserID}, "tenantId": x.ID}, svc), 200, "")
		res := st.Body["results"].([]any)
		if res[0].(map[string]any)["valid"] != true || res[1].(map[string]any)["status"] != "not_found" {
			t.Errorf("validate-status: %s", st.Raw)
		}

		// Tokens.
		v := a.want(a.do("POST", "/internal/tokens/verify", "", map[string]any{"token": x.UserToken}, svc), 200, "")
		if v.Body["valid"] != true || v.str("payload", "tenant") != x.ID || v.str("user", "id") != x.UserID {
			t.Errorf("verify: %s", v.Raw)
		}
		if v := a.want(a.do("POST", "/internal/tokens/verify", "", map[string]any{"token": "nope"}, svc), 200, ""); v.Body["valid"] != false {
			t.Errorf("verify garbage: %s", v.Raw)
		}
		// Revoking a user's sessions ends their tokens everywhere.
		r := a.want(a.do("POST", "/internal/sessions/revoke-user", "", map[string]any{"userId": x.UserID, "reason": "user_deleted"}, svc), 200, "")
		if r.Body["revokedSessions"].(float64) < 1 {
			t.Errorf("revoke-user: %s", r.Raw)
		}
		a.want(a.do("GET", "/api/v1/users/me", x.UserToken, nil, nil), 401, "TOKEN_INVALID")
		if v := a.want(a.do("POST", "/internal/tokens/verify", "", map[string]any{"token": x.UserToken}, svc), 200, ""); v.Body["valid"] != false {
			t.Errorf("a revoked token verifies: %s", v.Raw)
		}

		// Permissions and roles.
		c := a.want(a.do("POST", "/internal/permissions/check", "", map[string]any{"userId": x.OwnerID, "tenantId": x.ID, "resource": "user", "action": "read"}, svc), 200, "")
		if c.Body["allowed"] != true {
			t.Errorf("check: %s", c.Raw)
		}
		if c := a.want(a.do("POST", "/internal/permissions/check", "", map[string]any{"userId": x.OwnerID, "tenantId": y.ID, "resource": "user", "action": "read"}, svc), 200, ""); c.Body["allowed"] != false {
			t.Errorf("x's owner allowed in y: %s", c.Raw)
		}
		b := a.want(a.do("POST", "/internal/permissions/check-batch", "", map[string]any{"userId": x.UserID, "tenantId": x.ID,
			"checks": []map[string]any{{"resource": "user", "action": "read"}, {"resource": "user", "action": "delete"}}}, svc), 200, "")
		if rs := b.Body["results"].([]any); len(rs) != 2 || rs[1].(map[string]any)["allowed"] != false {
			t.Errorf("check-batch: %s", b.Raw)
		}
		adminID := rbac.BuiltinRoleID("admin")
		as := a.want(a.do("POST", "/internal/users/"+x.UserID+"/roles", "", map[string]any{"tenantId": x.ID, "roleId": adminID,
			"assignedBy": x.OwnerID, "validUntil": time.Now().Add(time.Hour).UTC().Format(time.RFC3339)}, svc), 201, "")
		if as.str("assignedBy") != "service:billing" {
			t.Errorf("assignment: %s", as.Raw)
		}
		roles := a.want(a.do("GET", "/internal/users/"+x.UserID+"/roles?tenantId="+x.ID, "", nil, svc), 200, "")
		if !strings.Contains(roles.Raw, `"user:delete"`) {
			t.Errorf("effective permissions after the grant: %s", roles.Raw)
		}
		a.want(a.do("GET", "/internal/users/"+x.UserID+"/roles?tenantId="+y.ID, "", nil, svc), 404, "USER_NOT_FOUND")
		a.want(a.do("DELETE", "/internal/users/"+x.UserID+"/roles/"+adminID, "", map[string]any{"tenantId": x.ID, "reason": "done"}, svc), 204, "")

		// Audit events from the service land in the right tenant, secrets removed.
		e := a.want(a.do("POST", "/internal/events", "", map[string]any{"tenantId": x.ID, "userId": x.UserID, "serviceId": "spoofed",
			"eventType": "invoice.paid", "resource": "invoice", "resourceId": "inv_1", "action": "pay", "outcome": "success",
			"metadata": map[string]any{"amount": "10.00", "cardToken": "tok_secret"}}, svc), 201, "")
		_ = e
		a.want(a.do("POST", "/internal/events/batch", "", []map[string]any{
			{"tenantId": y.ID, "eventType": "invoice.sent", "resource": "invoice", "action": "send"},
			{"tenantId": x.ID, "eventType": "invoice.sent", "resource": "invoice", "action": "send"}}, svc), 201, "")
		a.want(a.do("POST", "/internal/events/batch", "", []map[string]any{{"tenantId": x.ID}, {"tenantId": "bad"}}, svc), 400, "INVALID_REQUEST")
		evs := a.want(a.do("GET", "/api/v1/audit?resource=invoice", x.OwnerToken, nil, nil), 200, "")
		if len(evs.items()) != 2 || strings.Contains(evs.Raw, "tok_secret") || !strings.Contains(evs.Raw, `"serviceId":"billing"`) {
			t.Errorf("ingested events in x: %s", evs.Raw)
		}
		if n := len(a.want(a.do("GET", "/api/v1/audit?resource=invoice", y.OwnerToken, nil, nil), 200, "").items()); n != 1 {
			t.Errorf("tenant y sees %d invoice events, want its 1", n)
		}
	})
}
