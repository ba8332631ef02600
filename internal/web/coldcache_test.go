package web

import (
	"fmt"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/pquerna/otp/totp"

	"github.com/tenantgate/tenantgate/internal/billing"
	"github.com/tenantgate/tenantgate/internal/rbac"
	"github.com/tenantgate/tenantgate/internal/store"
	"github.com/tenantgate/tenantgate/internal/store/storetest"
)

// coldCaches makes every cache of the server read the database on every use
// (the tenant cache already does in tests), as if each had just expired.
func (a *api) coldCaches() {
	a.quota.SetCacheTTL(0)
	a.rbac.SetCacheTTL(0)
	a.billing.SetCacheTTL(0)
	a.ident.SetCacheTTL(0)
}

// matchRoute reports whether path matches a route pattern of routes.go
// ({name} is one segment, {name...} the rest).
func matchRoute(pattern, path string) bool {
	ps, xs := strings.Split(strings.Trim(pattern, "/"), "/"), strings.Split(strings.Trim(path, "/"), "/")
	for i, p := range ps {
		if strings.HasSuffix(p, "...}") {
			return i < len(xs)
		}
		if i >= len(xs) || (!strings.HasPrefix(p, "{") && p != xs[i]) {
			return false
		}
	}
	return len(ps) == len(xs)
}

// TestEveryWriteRouteWithColdCaches walks every POST, PUT, PATCH and DELETE
// route of routes.go with every cache cold, so each read a handler's
// transaction needs misses the cache. A read that opened a second
// transaction inside the first used to wait on SQLite for its own write lock
// until the 10 s busy timeout and then answer 500 (POST /api/v1/users with
// an expired plan catalogue); the store now refuses such a transaction and
// counts it. Every route must succeed, fast, with no refusal counted; then
// every GET route is read once, none failing on our side or nesting either.
func TestEveryWriteRouteWithColdCaches(t *testing.T) {
	storetest.Each(t, func(t *testing.T, d store.Dialect) {
		inner := newFakeOpenAI(t, "sk-upstream")
		up := &fakeOpenAI{key: inner.key}
		up.Server = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			if r.URL.Path == "/v1/completions" && r.Header.Get("Authorization") == "Bearer "+up.key {
				w.Header().Set("Content-Type", "application/json")
				fmt.Fprint(w, `{"id":"cmpl-1","object":"text_completion","created":1,"model":"gpt-test","choices":[{"index":0,"text":"hi","finish_reason":"stop"}],"usage":{"prompt_tokens":2,"completion_tokens":1,"total_tokens":3}}`)
				return
			}
			inner.serve(w, r)
		}))
		t.Cleanup(up.Close)
		g := newGW(t, d, up)
		a, x, op := g.a, g.org, g.op
		svc := hdr{"X-Service-Token": testServiceToken, "X-Service-Name": "billing"}
		a.coldCaches()

		var writes []string // "METHOD pattern" of every write route
		for _, rt := range (&server{}).routes() {
			if rt.method != http.MethodGet {
				writes = append(writes, rt.method+" "+rt.path)
			}
		}
		walked := map[string]bool{}
		// step sends one request, which must answer want, and quickly: far
		// below the 10 s busy timeout a nested transaction waited for.
		step := func(method, path, token string, body any, h hdr, want int) resp {
			t.Helper()
			for _, w := range writes {
				if m, p, _ := strings.Cut(w, " "); m == method && matchRoute(p, path) {
					walked[w] = true
				}
			}
			before, start := a.store.NestedTx(), time.Now()
			r := a.do(method, path, token, body, h)
			if took := time.Since(start); took > 5*time.Second {
				t.Errorf("%s %s took %s", method, path, took)
			}
			if n := a.store.NestedTx() - before; n != 0 {
				t.Errorf("%s %s opened %d transaction(s) inside a transaction", method, path, n)
			}
			if r.Status != want {
				t.Fatalf("%s %s: got %d, want %d; body: %s", method, path, r.Status, want, r.Raw)
			}
			return r
		}

		// Sign-up and sessions.
		step("POST", "/api/v1/tenants/signup", "", map[string]any{"slug": "cold-y", "name": "Cold Y", "ownerEmail": "owner@cold-y.test",
			"ownerPassword": pw, "ownerName": "Owner Y", "plan": "pro"}, nil, 201)
		l := step("POST", "/api/v1/auth/login", "", map[string]any{"email": x.OwnerEmail, "password": pw, "tenant": x.Slug}, nil, 200)
		rf := step("POST", "/api/v1/auth/refresh", "", map[string]any{"refreshToken": l.str("refreshToken")}, nil, 200)
		step("POST", "/api/v1/auth/logout", "", map[string]any{"refreshToken": rf.str("refreshToken")}, nil, 204)
		// Tenant y's owner ends the session sign-up started, from a second one.
		l = step("POST", "/api/v1/auth/login", "", map[string]any{"email": "owner@cold-y.test", "password": pw, "tenant": "cold-y"}, nil, 200)
		var other string
		for _, s := range a.want(a.do("GET", "/api/v1/sessions", l.str("accessToken"), nil, nil), 200, "").items() {
			if s["current"] != true {
				other, _ = s["id"].(string)
			}
		}
		step("DELETE", "/api/v1/sessions/"+other, l.str("accessToken"), nil, nil, 204)

		// The caller's tenant and usage.
		step("PATCH", "/api/v1/tenants/current/settings", x.OwnerToken, map[string]any{"locale": "de"}, nil, 200)
		step("PATCH", "/api/v1/tenants/current/branding", x.OwnerToken, map[string]any{"primaryColor": "#112233"}, nil, 200)
		step("PATCH", "/api/v1/tenants/current/compliance", x.OwnerToken, map[string]any{"dataRetentionDays": 365}, nil, 200)
		step("POST", "/api/v1/usage/events", x.OwnerToken, map[string]any{"id": "cold-1", "meter": "tokens", "value": 5}, nil, 202)

		// Users, 2FA.
		u := step("POST", "/api/v1/users", x.OwnerToken, map[string]any{"email": "walker@" + x.Slug + ".test", "password": pw, "firstName": "Walk"}, nil, 201)
		step("PATCH", "/api/v1/users/me", x.OwnerToken, map[string]any{"firstName": "Own"}, nil, 200)
		step("PATCH", "/api/v1/users/"+u.str("id"), x.OwnerToken, map[string]any{"firstName": "Walker"}, nil, 200)
		enrol := func() (recovery string) {
			sec := step("POST", "/api/v1/users/me/2fa/setup", x.UserToken, map[string]any{"password": pw}, nil, 200).str("secret")
			code, _ := totp.GenerateCode(sec, time.Now())
			en := step("POST", "/api/v1/users/me/2fa/enable", x.UserToken, map[string]any{"code": code}, nil, 200)
			codes, _ := en.Body["recoveryCodes"].([]any)
			if len(codes) == 0 {
				t.Fatalf("enabling 2FA gave no recovery codes: %s", en.Raw)
			}
			return codes[0].(string)
		}
		step("POST", "/api/v1/users/me/2fa/disable", x.UserToken, map[string]any{"password": pw, "code": enrol()}, nil, 204)
		enrol()
		step("DELETE", "/api/v1/users/"+x.UserID+"/2fa", x.OwnerToken, nil, nil, 204)
		step("DELETE", "/api/v1/users/"+u.str("id"), x.OwnerToken, nil, nil, 204)

		// Single sign-on.
		idp := map[string]any{"name": "Cold IdP", "issuer": "https://idp.cold.test", "clientId": "cold", "clientSecret": "cold-secret"}
		p := step("POST", "/api/v1/identity-providers", x.OwnerToken, idp, nil, 201)
		idp["enabled"] = false
		step("PATCH", "/api/v1/identity-providers/"+p.str("provider", "id"), x.OwnerToken, idp, nil, 200)
		step("DELETE", "/api/v1/identity-providers/"+p.str("provider", "id"), x.OwnerToken, nil, nil, 204)

		// API keys.
		k := step("POST", "/api/v1/api-keys", x.OwnerToken, map[string]any{"name": "cold"}, nil, 201)
		step("DELETE", "/api/v1/api-keys/"+k.str("apiKey", "id"), x.OwnerToken, nil, nil, 204)

		// Roles, assignments and checks.
		role := map[string]any{"name": "cold-reader", "permissions": []map[string]any{{"permission": "user:read"}}}
		ro := step("POST", "/api/v1/roles", x.OwnerToken, role, nil, 201)
		role["description"] = "reads users"
		step("PATCH", "/api/v1/roles/"+ro.str("id"), x.OwnerToken, role, nil, 200)
		step("POST", "/api/v1/users/"+x.UserID+"/roles", x.OwnerToken, map[string]any{"roleId": ro.str("id")}, nil, 201)
		step("DELETE", "/api/v1/users/"+x.UserID+"/roles/"+ro.str("id"), x.OwnerToken, nil, nil, 204)
		step("DELETE", "/api/v1/roles/"+ro.str("id"), x.OwnerToken, nil, nil, 204)
		step("POST", "/api/v1/authz/check", x.OwnerToken, map[string]any{"userId": x.UserID, "resource": "user", "action": "read"}, nil, 200)
		step("POST", "/api/v1/authz/check-batch", x.OwnerToken, map[string]any{"userId": x.UserID,
			"checks": []map[string]any{{"resource": "user", "action": "read"}}}, nil, 200)

		// The AI gateway (each call's usage is written by the writer before the answer ends).
		step("POST", "/v1/chat/completions", g.key, chat("gpt-test", nil), nil, 200)
		step("POST", "/v1/chat/completions", g.key, chat("gpt-test", map[string]any{"stream": true}), nil, 200)
		step("POST", "/v1/completions", g.key, map[string]any{"model": "gpt-test", "prompt": "hi"}, nil, 200)
		step("POST", "/v1/embeddings", g.key, map[string]any{"model": "gpt-test", "input": "hi"}, nil, 200)
		ch := step("POST", "/api/v1/channels", x.OwnerToken, map[string]any{"name": "cold-own", "provider": "openai_compatible",
			"baseUrl": up.URL + "/v1", "keys": []string{up.key}, "models": []string{"gpt-own"}}, nil, 201)
		step("PATCH", "/api/v1/channels/"+ch.str("id"), x.OwnerToken, map[string]any{"name": "cold-own-2"}, nil, 200)
		step("POST", "/api/v1/channels/"+ch.str("id")+"/test", x.OwnerToken, nil, nil, 200)
		step("DELETE", "/api/v1/channels/"+ch.str("id"), x.OwnerToken, nil, nil, 204)
		step("PATCH", "/api/v1/gateway/settings", x.OwnerToken, map[string]any{"byokOnly": false}, nil, 200)

		// Billing.
		step("PUT", "/api/v1/billing/settings", x.OwnerToken, map[string]any{"lowBalanceThreshold": "0.50"}, nil, 200)
		codes := step("POST", "/api/v1/admin/redemption-codes", op, map[string]any{"count": 2, "amount": "1.00"}, nil, 201)
		code := codes.Body["codes"].([]any)[0].(string)
		step("POST", "/api/v1/billing/redeem", x.OwnerToken, map[string]any{"code": code}, nil, 200)
		var unused string
		for _, c := range a.want(a.do("GET", "/api/v1/admin/redemption-codes?status=active&batchId="+codes.str("batchId"), op, nil, nil), 200, "").items() {
			unused, _ = c["id"].(string)
		}
		step("DELETE", "/api/v1/admin/redemption-codes/"+unused, op, nil, nil, 204)
		paid := `{"id":"pi_cold","tenantId":"` + x.ID + `","amount":"2.00","status":"succeeded","currency":"usd"}`
		step("POST", "/api/v1/billing/webhooks/payment", "", paid, hdr{"X-Tenantgate-Signature": billing.SignWebhook(testWebhookSecret, time.Now(), []byte(paid))}, 200)
		price := map[string]any{"inputPerMTok": "1", "outputPerMTok": "2"}
		step("PUT", "/api/v1/admin/prices/gpt-cold", op, price, nil, 200)
		step("DELETE", "/api/v1/admin/prices/gpt-cold", op, nil, nil, 204)
		step("PUT", "/api/v1/admin/tenants/"+x.ID+"/prices/gpt-cold", op, price, nil, 200)
		step("DELETE", "/api/v1/admin/tenants/"+x.ID+"/prices/gpt-cold", op, nil, nil, 204)
		step("POST", "/api/v1/admin/tenants/"+x.ID+"/topups", op, map[string]any{"amount": "1.00", "idempotencyKey": "cold"}, nil, 201)

		// The service API.
		step("POST", "/internal/tokens/verify", "", map[string]any{"token": x.UserToken}, svc, 200)
		step("POST", "/internal/users/validate-credentials", "", map[string]any{"email": x.UserEmail, "password": pw, "tenantId": x.ID}, svc, 200)
		step("POST", "/internal/users/validate-status", "", map[string]any{"userIds": []string{x.UserID}, "tenantId": x.ID}, svc, 200)
		step("POST", "/internal/permissions/check", "", map[string]any{"userId": x.OwnerID, "tenantId": x.ID, "resource": "user", "action": "read"}, svc, 200)
		step("POST", "/internal/permissions/check-batch", "", map[string]any{"userId": x.UserID, "tenantId": x.ID,
			"checks": []map[string]any{{"resource": "user", "action": "read"}}}, svc, 200)
		admin := rbac.BuiltinRoleID("admin")
		step("POST", "/internal/users/"+x.UserID+"/roles", "", map[string]any{"tenantId": x.ID, "roleId": admin}, svc, 201)
		step("DELETE", "/internal/users/"+x.UserID+"/roles/"+admin, "", map[string]any{"tenantId": x.ID}, svc, 204)
		step("POST", "/internal/metrics/usage", "", map[string]any{"id": "cold-s1", "tenantId": x.ID, "resourceType": "api_calls", "value": 3}, svc, 202)
		step("POST", "/internal/quota/check", "", map[string]any{"tenantId": x.ID, "meter": "tokens", "amount": 1}, svc, 200)
		step("POST", "/internal/billing/payment-status", "", map[string]any{"tenantId": x.ID, "status": "succeeded"}, svc, 200)
		step("POST", "/internal/events", "", map[string]any{"tenantId": x.ID, "eventType": "invoice.paid", "resource": "invoice", "action": "pay"}, svc, 201)
		step("POST", "/internal/events/batch", "", []map[string]any{{"tenantId": x.ID, "eventType": "invoice.sent", "resource": "invoice", "action": "send"}}, svc, 201)
		step("POST", "/internal/sessions/revoke-user", "", map[string]any{"userId": x.UserID, "reason": "cold"}, svc, 200)

		// Operators.
		nt := step("POST", "/api/v1/admin/tenants", op, map[string]any{"slug": "cold-z", "name": "Cold Z", "ownerEmail": "owner@cold-z.test",
			"ownerPassword": pw, "ownerName": "Owner Z", "plan": "starter"}, nil, 201)
		path := "/api/v1/admin/tenants/" + nt.str("tenant", "id")
		step("PATCH", path, op, map[string]any{"name": "Cold Zed", "plan": "pro"}, nil, 200)
		step("PUT", path+"/entitlements", op, map[string]any{"limits": map[string]int64{"users": 50}}, nil, 200)
		step("POST", path+"/impersonate", op, map[string]any{"userId": nt.str("user", "id"), "reason": "cold caches"}, nil, 200)
		step("POST", path+"/suspend", op, map[string]any{"reason": "cold"}, nil, 200)
		step("POST", path+"/activate", op, nil, nil, 200)
		step("DELETE", path, op, nil, nil, 200)
		step("POST", path+"/restore", op, nil, nil, 200)
		step("PUT", "/api/v1/admin/plans/cold", op, map[string]any{"displayName": "Cold", "isolation": "shared", "features": map[string]bool{"apiAccess": true},
			"limits": map[string]int64{"users": 3}, "sortOrder": 90}, nil, 200)
		pc := step("POST", "/api/v1/admin/channels", op, map[string]any{"name": "cold-platform", "provider": "openai",
			"baseUrl": up.URL + "/v1", "keys": []string{up.key}, "models": []string{"gpt-cold"}}, nil, 201)
		step("PATCH", "/api/v1/admin/channels/"+pc.str("id"), op, map[string]any{"priority": 5, "plans": []string{"pro", "enterprise"}}, nil, 200)
		step("POST", "/api/v1/admin/channels/"+pc.str("id")+"/test", op, nil, nil, 200)
		step("DELETE", "/api/v1/admin/channels/"+pc.str("id"), op, nil, nil, 204)

		// Every read route too, each with the caller it is for: none may fail
		// on our side or open a transaction inside another.
		for _, rt := range (&server{}).routes() {
			if rt.method != http.MethodGet {
				continue
			}
			path := strings.NewReplacer("{tenant_slug}", x.Slug, "{name}", "pro", "{model...}", "gpt-test").Replace(rt.path)
			id := x.UserID
			switch {
			case strings.Contains(path, "/channels/"):
				id = g.chanID
			case strings.Contains(path, "/tenants/"):
				id = x.ID
			case strings.HasPrefix(path, "/api/v1/roles/"):
				id = rbac.BuiltinRoleID("admin")
			}
			path = strings.ReplaceAll(path, "{id}", id)
			tok, h := x.OwnerToken, hdr(nil)
			switch {
			case rt.access == serviceOnly:
				tok, h = "", svc
				path += "?tenantId=" + x.ID
			case rt.access == platformOnly:
				tok = op
			case strings.HasPrefix(path, "/v1/"):
				tok = g.key
			}
			before := a.store.NestedTx()
			r := a.do("GET", path, tok, nil, h)
			if r.Status >= 500 {
				t.Errorf("GET %s: %d %s", path, r.Status, r.Raw)
			}
			if n := a.store.NestedTx() - before; n != 0 {
				t.Errorf("GET %s opened %d transaction(s) inside a transaction", path, n)
			}
		}

		for _, w := range writes {
			if !walked[w] {
				t.Errorf("%s was not walked: add it to this test", w)
			}
		}
		// The gateway writes usage in the background too: nothing nested there either.
		if n := a.store.NestedTx(); n != 0 {
			t.Errorf("%d transaction(s) were opened inside a transaction", n)
		}
	})
}
