package web

import (
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"net/http/httptest"
	"slices"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
	"github.com/google/uuid"

	"github.com/tenantgate/tenantgate/internal/identity/oidc"
	"github.com/tenantgate/tenantgate/internal/store"
	"github.com/tenantgate/tenantgate/internal/store/storetest"
)

// fieldsOf returns the per-field problems of an error answer.
func fieldsOf(r resp) map[string]string {
	out := map[string]string{}
	e, _ := r.Body["error"].(map[string]any)
	d, _ := e["details"].(map[string]any)
	f, _ := d["fields"].(map[string]any)
	for k, v := range f {
		s, _ := v.(string)
		out[k] = s
	}
	return out
}

// fieldNames lists the fields an error answer names.
func fieldNames(r resp) []string {
	out := []string{}
	for k := range fieldsOf(r) {
		out = append(out, k)
	}
	slices.Sort(out)
	return out
}

// A permission check without a userId is refused, never read as "the
// caller" (which answered allowed: true for whoever asked).
func TestAuthzCheckNeedsUserID(t *testing.T) {
	storetest.Each(t, func(t *testing.T, d store.Dialect) {
		a := newAPI(t, d)
		x := a.signup("authz-empty")
		svc := hdr{"X-Service-Token": testServiceToken, "X-Service-Name": "billing"}
		for _, tc := range []struct {
			name, path, token string
			body              map[string]any
			h                 hdr
			fields            []string
		}{
			{"check", "/api/v1/authz/check", x.OwnerToken, map[string]any{"resource": "user", "action": "delete"}, nil, []string{"userId"}},
			{"check, empty string", "/api/v1/authz/check", x.OwnerToken, map[string]any{"userId": "", "resource": "user", "action": "delete"}, nil, []string{"userId"}},
			{"batch", "/api/v1/authz/check-batch", x.OwnerToken, map[string]any{"checks": []map[string]any{{"resource": "user", "action": "read"}}}, nil,
				[]string{"checks[0].userId"}},
			{"service batch", "/internal/permissions/check-batch", "", map[string]any{"tenantId": x.ID, "checks": []map[string]any{
				{"userId": x.UserID, "resource": "user", "action": "read"}, {"resource": "user", "action": "read"}}}, svc, []string{"checks[1].userId"}},
		} {
			t.Run(tc.name, func(t *testing.T) {
				r := a.want(a.do("POST", tc.path, tc.token, tc.body, tc.h), 400, "INVALID_REQUEST")
				if diff := cmp.Diff(fieldNames(r), tc.fields); diff != "" {
					t.Errorf("fields named (-got +want):\n%s", diff)
				}
			})
		}
		// Naming oneself still works.
		r := a.want(a.do("POST", "/api/v1/authz/check", x.UserToken, map[string]any{"userId": x.UserID, "resource": "user", "action": "delete"}, nil), 200, "")
		if diff := cmp.Diff(r.Body["allowed"], any(false)); diff != "" {
			t.Errorf("self check (-got +want):\n%s", diff)
		}
	})
}

// A quota check that asks for more than remains says so, rather than that
// the limit is used up when it is not.
func TestQuotaCheckSaysWhatRemains(t *testing.T) {
	storetest.Each(t, func(t *testing.T, d store.Dialect) {
		a := newAPI(t, d)
		x := a.signup("quota-words")
		op := a.operator()
		a.want(a.do("PUT", "/api/v1/admin/tenants/"+x.ID+"/entitlements", op, map[string]any{"limits": map[string]int64{"monthlyTokens": 1000}}, nil), 200, "")
		svc := hdr{"X-Service-Token": testServiceToken, "X-Service-Name": "billing"}
		check := func(amount int64) resp {
			return a.do("POST", "/internal/quota/check", "", map[string]any{"tenantId": x.ID, "meter": "tokens", "amount": amount}, svc)
		}
		ingest := func(id string, v int64) {
			a.want(a.do("POST", "/api/v1/usage/events", x.OwnerToken, map[string]any{"id": id, "meter": "tokens", "value": v}, nil), 202, "")
		}
		ingest("q1", 800)
		for _, tc := range []struct {
			name    string
			before  func()
			amount  int64
			message string
		}{
			{"more than remains", func() {}, 5000, "this asks for 5000 but only 200 of the monthlyTokens limit of 1000 remain this month"},
			{"used up", func() { ingest("q2", 200) }, 1, "the monthlyTokens limit of 1000 this month is used up (1000 used)"},
		} {
			t.Run(tc.name, func(t *testing.T) {
				tc.before()
				r := a.want(check(tc.amount), 429, "TENANT_QUOTA_EXCEEDED")
				msg := r.str("error", "message")
				if got, _, _ := strings.Cut(msg, "; it resets"); got != tc.message {
					t.Errorf("message (-got +want):\n%s", cmp.Diff(got, tc.message))
				}
			})
		}
	})
}

// On /v1/* a balance or key budget that does not cover a call is OpenAI's
// 429 insufficient_quota (which the SDKs raise as their typed rate-limit
// error); the control-plane API keeps 402.
func TestInsufficientQuotaStatusByPath(t *testing.T) {
	storetest.Each(t, func(t *testing.T, d store.Dialect) {
		a := newAPI(t, d)
		x := a.signup("broke-v1")
		budget := int64(0)
		_, errBalance := a.billing.Reserve(context.Background(), x.ID, "", nil, 1_500_000)
		_, _, err := a.billing.TopUp(context.Background(), x.ID, 5_000_000, "", "")
		storetest.Must(t, err)
		_, errBudget := a.billing.Reserve(context.Background(), x.ID, uuid.Must(uuid.NewV7()).String(), &budget, 1)
		srv := &server{log: slog.New(slog.DiscardHandler)}
		for _, tc := range []struct {
			name, path string
			err        error
			want       string
		}{
			{"balance on /v1", "/v1/chat/completions", errBalance, "429 insufficient_quota insufficient_quota"},
			{"key budget on /v1", "/v1/embeddings", errBudget, "429 insufficient_quota insufficient_quota"},
			{"balance on the API", "/api/v1/billing/balance", errBalance, "402 INSUFFICIENT_BALANCE "},
		} {
			t.Run(tc.name, func(t *testing.T) {
				rec := httptest.NewRecorder()
				srv.writeError(rec, httptest.NewRequest("POST", tc.path, nil), tc.err)
				var body struct {
					Error struct{ Code, Type string }
				}
				storetest.Must(t, json.Unmarshal(rec.Body.Bytes(), &body))
				if diff := cmp.Diff(fmt.Sprint(rec.Code, " ", body.Error.Code, " ", body.Error.Type), tc.want); diff != "" {
					t.Errorf("(-got +want):\n%s\n%s", diff, rec.Body)
				}
			})
		}
	})
}

// No answer carries a zero time or an empty id: a time never set (settings
// never saved, a built-in role) is null, and built-in roles and permanent
// role grants have stable ids.
func TestAnswersHaveNoZeroTimesOrEmptyIDs(t *testing.T) {
	storetest.Each(t, func(t *testing.T, d store.Dialect) {
		a := newAPI(t, d)
		x := a.signup("zero-times")
		op := a.operator()
		role := a.want(a.do("POST", "/api/v1/roles", x.OwnerToken, map[string]any{"name": "auditor", "permissions": []map[string]any{{"permission": "audit:read"}}}, nil), 201, "")
		a.want(a.do("POST", "/api/v1/users/"+x.UserID+"/roles", x.OwnerToken, map[string]any{"roleId": role.str("id")}, nil), 201, "")
		roles := a.want(a.do("GET", "/api/v1/roles", x.OwnerToken, nil, nil), 200, "").items()
		var ownerRoleID string
		for _, r := range roles {
			if r["name"] == "owner" {
				ownerRoleID, _ = r["id"].(string)
			}
		}
		for _, tc := range []struct {
			name, method, path, token string
			body                      any
			nullTimes                 []string // top-level times that must be null here
		}{
			{"billing settings, first save", "PUT", "/api/v1/billing/settings", x.OwnerToken, map[string]any{"lowBalanceThreshold": "5.00"}, nil},
			{"billing settings, again", "PUT", "/api/v1/billing/settings", x.OwnerToken, map[string]any{"lowBalanceThreshold": nil}, nil},
			{"gateway settings, never saved", "GET", "/api/v1/gateway/settings", x.OwnerToken, nil, []string{"updatedAt"}},
			{"roles", "GET", "/api/v1/roles", x.OwnerToken, nil, nil},
			{"a built-in role", "GET", "/api/v1/roles/" + ownerRoleID, x.OwnerToken, nil, []string{"createdAt", "updatedAt"}},
			{"a user's roles", "GET", "/api/v1/users/" + x.UserID + "/roles", x.OwnerToken, nil, nil},
			{"the plan catalogue", "GET", "/api/v1/plans", "", nil, nil},
			{"entitlements", "GET", "/api/v1/tenants/current/entitlements", x.OwnerToken, nil, nil},
			{"balance", "GET", "/api/v1/billing/balance", x.OwnerToken, nil, nil},
			{"sessions", "GET", "/api/v1/sessions", x.OwnerToken, nil, nil},
			{"tenant", "GET", "/api/v1/tenants/current", x.OwnerToken, nil, nil},
			{"admin tenant", "GET", "/api/v1/admin/tenants/" + x.ID, op, nil, nil},
			{"admin plans", "GET", "/api/v1/admin/plans", op, nil, nil},
			{"gateway settings, saved", "PATCH", "/api/v1/gateway/settings", x.OwnerToken, map[string]any{"storeContent": false}, nil},
		} {
			t.Run(tc.name, func(t *testing.T) {
				r := a.want(a.do(tc.method, tc.path, tc.token, tc.body, nil), 200, "")
				for _, bad := range []string{"0001-01-01", `"id":""`} {
					if strings.Contains(r.Raw, bad) {
						t.Errorf("the answer has %s: %s", bad, r.Raw)
					}
				}
				for _, f := range tc.nullTimes {
					if v, ok := r.Body[f]; !ok || v != nil {
						t.Errorf("%s = %v (present %v), want null: %s", f, v, ok, r.Raw)
					}
				}
			})
		}
	})
}

// A tenant's admin cannot set a retention that erases the audit trail within
// days (operators may); a refresh obeys the tenant's IP allowlist as a login
// does; no name or display field takes control characters.
func TestRetentionFloorRefreshAllowlistAndControlCharacters(t *testing.T) {
	storetest.Each(t, func(t *testing.T, d store.Dialect) {
		a := newAPI(t, d)
		x := a.signup("hardening")
		op := a.operator()
		t.Run("retention", func(t *testing.T) {
			for _, tc := range []struct {
				name, path, token string
				body              map[string]any
				status            int
			}{
				{"admin, 1 day", "/api/v1/tenants/current/compliance", x.OwnerToken, map[string]any{"dataRetentionDays": 1}, 400},
				{"admin, 29 days", "/api/v1/tenants/current/compliance", x.OwnerToken, map[string]any{"dataRetentionDays": 29}, 400},
				{"admin, 30 days", "/api/v1/tenants/current/compliance", x.OwnerToken, map[string]any{"dataRetentionDays": 30}, 200},
				{"admin, keep everything", "/api/v1/tenants/current/compliance", x.OwnerToken, map[string]any{"dataRetentionDays": 0}, 200},
				{"admin, 3651 days", "/api/v1/tenants/current/compliance", x.OwnerToken, map[string]any{"dataRetentionDays": 3651}, 400},
				{"operator, 1 day", "/api/v1/admin/tenants/" + x.ID, op, map[string]any{"compliance": map[string]any{"dataRetentionDays": 1}}, 200},
				{"operator, -1", "/api/v1/admin/tenants/" + x.ID, op, map[string]any{"compliance": map[string]any{"dataRetentionDays": -1}}, 400},
			} {
				t.Run(tc.name, func(t *testing.T) {
					r := a.do("PATCH", tc.path, tc.token, tc.body, nil)
					got := fmt.Sprint(r.Status, fieldNames(r))
					want := fmt.Sprint(tc.status, []string{})
					if tc.status == 400 {
						want = fmt.Sprint(400, []string{"compliance.dataRetentionDays"})
					}
					if diff := cmp.Diff(got, want); diff != "" {
						t.Errorf("(-got +want):\n%s\n%s", diff, r.Raw)
					}
				})
			}
		})
		t.Run("control characters", func(t *testing.T) {
			for _, tc := range []struct {
				name, method, path, token string
				body                      map[string]any
				field                     string
			}{
				{"operator creates a tenant", "POST", "/api/v1/admin/tenants", op, map[string]any{"slug": "ctl-one", "name": "Acme\nInc",
					"ownerEmail": "o@ctl-one.test", "ownerPassword": pw}, "name"},
				{"operator renames a tenant", "PATCH", "/api/v1/admin/tenants/" + x.ID, op, map[string]any{"name": "Evil\x1b[2J"}, "name"},
				{"signup", "POST", "/api/v1/tenants/signup", "", map[string]any{"slug": "ctl-two", "name": "Acme\u202eInc",
					"ownerEmail": "o@ctl-two.test", "ownerPassword": pw}, "name"},
				{"operator renames, line separator", "PATCH", "/api/v1/admin/tenants/" + x.ID, op, map[string]any{"name": "Acme\u2028Inc"}, "name"},
				{"the GDPR contact", "PATCH", "/api/v1/tenants/current/compliance", x.OwnerToken, map[string]any{"gdprContact": "dpo@hardening.test\nBcc: x@evil.test"},
					"compliance.gdprContact"},
				{"a user's first name", "POST", "/api/v1/users", x.OwnerToken, map[string]any{"email": "c@hardening.test", "password": pw, "firstName": "Bob\tby"}, "firstName"},
				{"one's own last name", "PATCH", "/api/v1/users/me", x.UserToken, map[string]any{"lastName": "Lee\r\nX-Injected: 1"}, "lastName"},
				{"an API key", "POST", "/api/v1/api-keys", x.OwnerToken, map[string]any{"name": "ci\nkey"}, "name"},
				{"a role's display name", "POST", "/api/v1/roles", x.OwnerToken, map[string]any{"name": "ctl", "displayName": "A\u0007B",
					"permissions": []map[string]any{{"permission": "audit:read"}}}, "displayName"},
				{"a channel", "POST", "/api/v1/admin/channels", op, map[string]any{"name": "up\nstream", "provider": "openai",
					"baseUrl": "https://api.example.com/v1", "keys": []string{"k"}, "models": []string{"m"}}, "name"},
				{"an identity provider", "POST", "/api/v1/identity-providers", x.OwnerToken, map[string]any{"name": "Okta\x00", "issuer": "https://idp.example.com",
					"clientId": "c", "clientSecret": "s"}, "body"},
				{"an identity provider, escape", "POST", "/api/v1/identity-providers", x.OwnerToken, map[string]any{"name": "Okta\x1b", "issuer": "https://idp.example.com",
					"clientId": "c", "clientSecret": "s"}, "name"},
				{"an operator's plan", "PUT", "/api/v1/admin/plans/ctlplan", op, map[string]any{"displayName": "Pro\x7f", "features": map[string]bool{},
					"limits": map[string]int64{}, "isolation": "shared"}, "displayName"},
			} {
				t.Run(tc.name, func(t *testing.T) {
					r := a.want(a.do(tc.method, tc.path, tc.token, tc.body, nil), 400, "INVALID_REQUEST")
					if _, ok := fieldsOf(r)[tc.field]; !ok {
						t.Errorf("fields %v, want %s among them: %s", fieldNames(r), tc.field, r.Raw)
					}
				})
			}
			if got := a.want(a.do("GET", "/api/v1/tenants/current", x.OwnerToken, nil, nil), 200, "").str("name"); got != "HARDENING" {
				t.Errorf("the tenant's name became %q", got)
			}
		})
		t.Run("refresh and the IP allowlist", func(t *testing.T) {
			a.want(a.do("PATCH", "/api/v1/admin/tenants/"+x.ID, op, map[string]any{"compliance": map[string]any{"ipAllowlist": []string{"10.0.0.0/8"}}}, nil), 200, "")
			a.want(a.do("POST", "/api/v1/auth/refresh", "", map[string]any{"refreshToken": x.OwnerRefresh}, nil), 403, CodeIPNotAllowed)
			a.want(a.do("PATCH", "/api/v1/admin/tenants/"+x.ID, op, map[string]any{"compliance": map[string]any{"ipAllowlist": []string{"127.0.0.0/8", "::1"}}}, nil), 200, "")
			a.want(a.do("POST", "/api/v1/auth/refresh", "", map[string]any{"refreshToken": x.OwnerRefresh}, nil), 200, "")
		})
	})
}

// PATCH is partial on every route: a one-field body changes that field and
// keeps the others. An identity provider created with a loopback http issuer
// can be disabled alone, and create and change apply one issuer rule.
func TestPatchIsPartialEverywhere(t *testing.T) {
	storetest.Each(t, func(t *testing.T, d store.Dialect) {
		a := newAPI(t, d)
		x := a.signup("partial")
		op := a.operator()
		idp := a.want(a.do("POST", "/api/v1/identity-providers", x.OwnerToken, map[string]any{"name": "Local IdP", "issuer": "http://127.0.0.1:9/",
			"clientId": "cid", "clientSecret": "sec", "allowedDomains": []string{"partial.test"}, "jit": false, "defaultRole": "billing_manager"}, nil), 201, "")
		idpID := idp.str("provider", "id")
		role := a.want(a.do("POST", "/api/v1/roles", x.OwnerToken, map[string]any{"name": "auditor", "displayName": "Auditor", "description": "reads the log",
			"permissions": []map[string]any{{"permission": "audit:read"}}}, nil), 201, "")
		own := a.want(a.do("POST", "/api/v1/channels", x.OwnerToken, map[string]any{"name": "mine", "provider": "openai_compatible",
			"baseUrl": "https://llm.partial.test/v1", "keys": []string{"k"}, "models": []string{"m1"}, "priority": 3}, nil), 201, "")
		plat := a.want(a.do("POST", "/api/v1/admin/channels", op, map[string]any{"name": "theirs", "provider": "openai",
			"baseUrl": "https://api.partial.test/v1", "keys": []string{"k"}, "models": []string{"m2"}, "weight": 3}, nil), 201, "")
		a.want(a.do("PATCH", "/api/v1/gateway/settings", x.OwnerToken, map[string]any{"logRetentionDays": 12}, nil), 200, "")
		a.want(a.do("PATCH", "/api/v1/users/me", x.UserToken, map[string]any{"lastName": "Member"}, nil), 200, "")
		idpOf := func() map[string]any {
			for _, p := range a.want(a.do("GET", "/api/v1/identity-providers", x.OwnerToken, nil, nil), 200, "").items() {
				if p["id"] == idpID {
					return p
				}
			}
			t.Fatalf("provider %s is gone", idpID)
			return nil
		}
		get := func(path, token string) func() map[string]any {
			return func() map[string]any { return a.want(a.do("GET", path, token, nil, nil), 200, "").Body }
		}
		tenantOf := get("/api/v1/tenants/current", x.OwnerToken)
		for _, tc := range []struct {
			name, path, token string
			body              map[string]any
			read              func() map[string]any
			changed           []string // top-level keys the patch may change (updatedAt always may)
		}{
			{"identity provider", "/api/v1/identity-providers/" + idpID, x.OwnerToken, map[string]any{"enabled": false}, idpOf, []string{"enabled"}},
			{"tenant settings", "/api/v1/tenants/current/settings", x.OwnerToken, map[string]any{"locale": "de"}, tenantOf, []string{"settings"}},
			{"tenant branding", "/api/v1/tenants/current/branding", x.OwnerToken, map[string]any{"primaryColor": "#123456"}, tenantOf, []string{"branding"}},
			{"tenant compliance", "/api/v1/tenants/current/compliance", x.OwnerToken, map[string]any{"require2fa": false}, tenantOf, nil},
			{"own profile", "/api/v1/users/me", x.UserToken, map[string]any{"firstName": "Mia"}, get("/api/v1/users/me", x.UserToken), []string{"firstName"}},
			{"a user", "/api/v1/users/" + x.UserID, x.OwnerToken, map[string]any{"firstName": "Max"}, get("/api/v1/users/"+x.UserID, x.OwnerToken), []string{"firstName"}},
			{"a role", "/api/v1/roles/" + role.str("id"), x.OwnerToken, map[string]any{"displayName": "Auditors"}, get("/api/v1/roles/"+role.str("id"), x.OwnerToken), []string{"displayName"}},
			{"own channel", "/api/v1/channels/" + own.str("id"), x.OwnerToken, map[string]any{"weight": 7}, get("/api/v1/channels/"+own.str("id"), x.OwnerToken), []string{"weight"}},
			{"gateway settings", "/api/v1/gateway/settings", x.OwnerToken, map[string]any{"storeContent": true}, get("/api/v1/gateway/settings", x.OwnerToken), []string{"storeContent"}},
			{"admin tenant", "/api/v1/admin/tenants/" + x.ID, op, map[string]any{"name": "Partial Ltd"}, tenantOf, []string{"name"}},
			{"platform channel", "/api/v1/admin/channels/" + plat.str("id"), op, map[string]any{"priority": 9}, get("/api/v1/admin/channels/"+plat.str("id"), op), []string{"priority"}},
		} {
			t.Run(tc.name, func(t *testing.T) {
				before := tc.read()
				a.want(a.do("PATCH", tc.path, tc.token, tc.body, nil), 200, "")
				after := tc.read()
				for _, k := range append(tc.changed, "updatedAt") {
					delete(before, k)
					delete(after, k)
				}
				if diff := cmp.Diff(after, before); diff != "" {
					t.Errorf("fields the patch did not name changed (-after +before):\n%s", diff)
				}
			})
		}
		if got := idpOf()["enabled"]; got != false {
			t.Errorf("provider enabled = %v after PATCH enabled:false", got)
		}
		t.Run("one issuer rule", func(t *testing.T) {
			for _, tc := range []struct {
				name, method, path string
				body               map[string]any
				status             int
				fields             []string
			}{
				{"create, http off loopback", "POST", "/api/v1/identity-providers", map[string]any{"name": "n", "issuer": "http://idp.example.com",
					"clientId": "c", "clientSecret": "s"}, 400, []string{"issuer"}},
				{"change, http off loopback", "PATCH", "/api/v1/identity-providers/" + idpID, map[string]any{"issuer": "http://idp.example.com"}, 400, []string{"issuer"}},
				{"change, http on localhost", "PATCH", "/api/v1/identity-providers/" + idpID, map[string]any{"issuer": "http://localhost:9"}, 200, []string{}},
				{"change, https", "PATCH", "/api/v1/identity-providers/" + idpID, map[string]any{"issuer": "https://idp.example.com"}, 200, []string{}},
				{"change, every bad field", "PATCH", "/api/v1/identity-providers/" + idpID, map[string]any{"name": " ", "clientSecret": "",
					"scopes": []string{"email"}, "defaultRole": "owner"}, 400, []string{"clientSecret", "defaultRole", "name", "scopes"}},
				{"change, unknown id", "PATCH", "/api/v1/identity-providers/" + x.ID, map[string]any{"enabled": true}, 404, []string{}},
			} {
				t.Run(tc.name, func(t *testing.T) {
					r := a.do(tc.method, tc.path, x.OwnerToken, tc.body, nil)
					if diff := cmp.Diff(fmt.Sprint(r.Status, fieldNames(r)), fmt.Sprint(tc.status, tc.fields)); diff != "" {
						t.Errorf("(-got +want):\n%s\n%s", diff, r.Raw)
					}
					if msg := fieldsOf(r)["issuer"]; msg != "" && !strings.Contains(msg, "plain http only on localhost or a loopback address") {
						t.Errorf("the issuer rule is not stated: %q", msg)
					}
				})
			}
		})
	})
}

// With several identity providers the login is for the one the user names
// (by id, or by email domain), never simply the oldest: an unreachable
// oldest provider no longer stops everyone.
func TestSSOChoosesTheProvider(t *testing.T) {
	storetest.Each(t, func(t *testing.T, d store.Dialect) {
		a := newAPI(t, d)
		x := a.signup("two-idps")
		issuer, _ := testIdP(t, a.url+"/api/v1/auth/oidc/callback", person("alice", "alice@hooli.test", ""))
		// The oldest provider is down (nothing listens on port 1).
		dead := a.want(a.do("POST", "/api/v1/identity-providers", x.OwnerToken, map[string]any{"name": "Old IdP", "issuer": "http://127.0.0.1:1",
			"clientId": "old", "clientSecret": "old", "allowedDomains": []string{"legacy.test"}}, nil), 201, "").str("provider", "id")
		live := a.want(a.do("POST", "/api/v1/identity-providers", x.OwnerToken, map[string]any{"name": "Hooli IdP", "issuer": issuer,
			"clientId": idpClientID, "clientSecret": idpClientSecret, "allowedDomains": []string{"hooli.test"}}, nil), 201, "").str("provider", "id")
		for _, tc := range []struct {
			name, query string
			status      int
			code        string
		}{
			{"no choice", "", 400, oidc.CodeChoiceRequired},
			{"by id", "provider=" + live, 200, ""},
			{"by email domain", "email=Alice@Hooli.test", 200, ""},
			{"the provider that is down", "provider=" + dead, 503, "IDP_UNAVAILABLE"},
			{"a domain nobody serves", "email=eve@nowhere.test", 404, "IDP_NOT_CONFIGURED"},
			{"an unknown provider", "provider=" + x.ID, 404, "IDP_NOT_FOUND"},
			{"not an id", "provider=okta", 400, "INVALID_REQUEST"},
			{"not an email", "email=alice", 400, "INVALID_REQUEST"},
		} {
			t.Run(tc.name, func(t *testing.T) {
				r := ssoLoginQuery(t, a, "two-idps", tc.query, "alice")
				if r.Body == nil {
					_ = jsonInto([]byte(r.Raw), &r.Body)
				}
				if diff := cmp.Diff(fmt.Sprint(r.Status, " ", r.code()), fmt.Sprint(tc.status, " ", tc.code)); diff != "" {
					t.Errorf("(-got +want):\n%s\n%s", diff, r.Raw)
				}
				if tc.status == 200 && r.str("accessToken") == "" {
					t.Errorf("no tokens: %s", r.Raw)
				}
			})
		}
		// Disabling the live one: its id no longer starts a login.
		a.want(a.do("PATCH", "/api/v1/identity-providers/"+live, x.OwnerToken, map[string]any{"enabled": false}, nil), 200, "")
		if r := ssoLoginQuery(t, a, "two-idps", "provider="+live, "alice"); r.Status != 404 {
			t.Errorf("a disabled provider: %d %s", r.Status, r.Raw)
		}
	})
}

// A modelMapping alias without its own price is priced by the upstream
// model it is forwarded as (and only forwarded to channels mapping it to
// that model); an alias with its own price is billed at it.
func TestGatewayPricesAliasByUpstreamModel(t *testing.T) {
	storetest.Each(t, func(t *testing.T, d store.Dialect) {
		up := newFakeOpenAI(t, "sk-upstream")
		g := newGW(t, d, up)
		a := g.a
		// Two platform channels serve the alias "smart": the preferred one maps
		// it to an unpriced model, the other to the priced gpt-test.
		a.want(a.do("POST", "/api/v1/admin/channels", g.op, map[string]any{"name": "to-unpriced", "provider": "openai", "baseUrl": up.URL + "/v1",
			"keys": []string{up.key}, "modelMapping": map[string]string{"smart": "gpt-unpriced"}, "priority": 20}, nil), 201, "")
		a.want(a.do("POST", "/api/v1/admin/channels", g.op, map[string]any{"name": "to-priced", "provider": "openai", "baseUrl": up.URL + "/v1",
			"keys": []string{up.key}, "modelMapping": map[string]string{"smart": "gpt-test"}, "priority": 5}, nil), 201, "")
		models := a.want(a.do("GET", "/v1/models", g.key, nil, nil), 200, "")
		if !strings.Contains(models.Raw, `"id":"smart"`) {
			t.Fatalf("the alias is not listed: %s", models.Raw)
		}
		call := func() (int, string) {
			r := g.post(t, "/v1/chat/completions", g.key, chat("smart", nil))
			body := readAll(t, r)
			return r.StatusCode, body
		}
		// Priced by gpt-test (75 micros a call), forwarded as gpt-test.
		if status, body := call(); status != 200 {
			t.Fatalf("alias call: %d %s", status, body)
		}
		if diff := cmp.Diff(up.body()["model"], any("gpt-test")); diff != "" {
			t.Errorf("forwarded model (-got +want):\n%s", diff)
		}
		g.wantSpent(t, callMicros)
		// The alias's own price wins: 8×4 + 3×2 + 7×16 = 150 micros.
		a.want(a.do("PUT", "/api/v1/admin/prices/smart", g.op, map[string]any{"inputPerMTok": "4.00", "cachedInputPerMTok": "2.00", "outputPerMTok": "16.00"}, nil), 200, "")
		if status, body := call(); status != 200 {
			t.Fatalf("alias call with its own price: %d %s", status, body)
		}
		g.wantSpent(t, callMicros+150)
		if n := g.ledgerEqualsLogs(t); n != 2 {
			t.Errorf("%d log rows, want 2", n)
		}
	})
}

// A body with unknown fields, wrong types and invalid values names every bad
// field, nested ones by their path, as the README promises.
func TestEveryBadFieldIsNamed(t *testing.T) {
	storetest.Each(t, func(t *testing.T, d store.Dialect) {
		a := newAPI(t, d)
		x := a.signup("bad-fields")
		for _, tc := range []struct {
			name, method, path, token string
			body                      string
			fields                    []string
		}{
			{"a user: unknown, wrong type and invalid values", "POST", "/api/v1/users", x.OwnerToken,
				`{"email":"not-an-email","password":"short","nickname":"x","firstName":5,"roles":["emperor"]}`,
				[]string{"email", "firstName", "nickname", "password", "roles"}},
			{"a user: two unknown fields", "POST", "/api/v1/users", x.OwnerToken,
				`{"email":"ok@bad-fields.test","password":"correct-horse-9","nick":"x","nickname":"y"}`, []string{"nick", "nickname"}},
			{"signup: unknown and invalid", "POST", "/api/v1/tenants/signup", "",
				`{"slug":"A!","name":"","ownerEmail":"x","ownerPassword":"y","coupon":"FREE"}`,
				[]string{"coupon", "name", "ownerEmail", "ownerPassword", "slug"}},
			{"signup: invalid values only, tenant's and owner's", "POST", "/api/v1/tenants/signup", "",
				`{"slug":"ok-slug-bf","name":"Fine","ownerEmail":"x","ownerPassword":"y","plan":"platinum"}`,
				[]string{"ownerEmail", "ownerPassword", "plan"}},
			{"nested: a settings patch", "PATCH", "/api/v1/tenants/current/settings", x.OwnerToken,
				`{"timezone":5,"locale":"de","colour":"red"}`, []string{"colour", "timezone"}},
			{"nested: a batch", "POST", "/api/v1/authz/check-batch", x.OwnerToken,
				`{"userId":"u","checks":[{"resource":"user","action":"read","why":1},{"resource":7,"action":"read"}],"extra":true}`,
				[]string{"checks[0].why", "checks[1].resource", "extra"}},
			{"a role", "POST", "/api/v1/roles", x.OwnerToken,
				`{"name":"Bad Name","level":5000,"color":"red","permissions":[{"permission":"nope:x"}]}`,
				[]string{"color", "level", "name", "permissions[0]"}},
			{"an identity provider", "POST", "/api/v1/identity-providers", x.OwnerToken,
				`{"name":"","issuer":"ftp://idp","clientId":"c","clientSecret":"s","prompt":"login"}`, []string{"issuer", "name", "prompt"}},
		} {
			t.Run(tc.name, func(t *testing.T) {
				r := a.want(a.do(tc.method, tc.path, tc.token, tc.body, nil), 400, "INVALID_REQUEST")
				if diff := cmp.Diff(fieldNames(r), tc.fields); diff != "" {
					t.Errorf("fields named (-got +want):\n%s\n%s", diff, r.Raw)
				}
			})
		}
		// The README's own examples: both pass the password rule.
		for _, u := range []map[string]any{{"email": "bob@bad-fields.test", "password": "bobs-password-9"}, {"email": "carol@bad-fields.test", "password": "carols-password-9"}} {
			a.want(a.do("POST", "/api/v1/users", x.OwnerToken, u, nil), 201, "")
		}
	})
}
