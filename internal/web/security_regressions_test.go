package web

import (
	"context"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/pquerna/otp/totp"
	"gorm.io/gorm"

	"github.com/tenantgate/tenantgate/internal/store"
	"github.com/tenantgate/tenantgate/internal/store/storetest"
)

// Regression tests for the findings of the second security review.

func (a *api) member(o org, email string, roles ...string) (id, token string) {
	a.t.Helper()
	u := a.want(a.do("POST", "/api/v1/users", o.OwnerToken, map[string]any{"email": email, "password": pw, "roles": roles}, nil), 201, "")
	l := a.want(a.do("POST", "/api/v1/auth/login", "", map[string]any{"email": email, "password": pw, "tenant": o.Slug}, nil), 200, "")
	return u.str("id"), l.str("accessToken")
}

func enable2FA(t *testing.T, a *api, token string) (secret string, recovery []any) {
	t.Helper()
	sec := a.want(a.do("POST", "/api/v1/users/me/2fa/setup", token, map[string]any{"password": pw}, nil), 200, "").str("secret")
	code, _ := totp.GenerateCode(sec, time.Now())
	en := a.want(a.do("POST", "/api/v1/users/me/2fa/enable", token, map[string]any{"code": code}, nil), 200, "")
	return sec, en.Body["recoveryCodes"].([]any)
}

// A role manager cannot get permissions they lack: not through a parent,
// not by changing a role they hold, not by assigning.
func TestRoleManagerCannotEscalate(t *testing.T) {
	storetest.Each(t, func(t *testing.T, d store.Dialect) {
		a := newAPI(t, d)
		x := a.signup("no-escalation")
		mgr := a.want(a.do("POST", "/api/v1/roles", x.OwnerToken, map[string]any{"name": "rolemgr", "permissions": []map[string]any{
			{"permission": "role:manage"}, {"permission": "role:read"}, {"permission": "user:assign_role"}}}, nil), 201, "")
		a.want(a.do("POST", "/api/v1/users/"+x.UserID+"/roles", x.OwnerToken, map[string]any{"roleId": mgr.str("id")}, nil), 201, "")
		a.want(a.do("POST", "/api/v1/roles", x.UserToken, map[string]any{"name": "direct", "permissions": []map[string]any{{"permission": "audit:read"}}}, nil), 403, "INVALID_ROLE_ASSIGNMENT")
		a.want(a.do("PATCH", "/api/v1/roles/"+mgr.str("id"), x.UserToken, map[string]any{"permissions": []map[string]any{
			{"permission": "role:manage"}, {"permission": "user:*"}}}, nil), 403, "INVALID_ROLE_ASSIGNMENT")
		// A role the owner made: the manager may not hand it out (or an empty child of it) to anyone.
		rich := a.want(a.do("POST", "/api/v1/roles", x.OwnerToken, map[string]any{"name": "rich", "permissions": []map[string]any{{"permission": "audit:read"}}}, nil), 201, "")
		a.want(a.do("POST", "/api/v1/roles", x.UserToken, map[string]any{"name": "child", "parentRoleId": rich.str("id")}, nil), 403, "INVALID_ROLE_ASSIGNMENT")
		a.want(a.do("POST", "/api/v1/users/"+x.UserID+"/roles", x.UserToken, map[string]any{"roleId": rich.str("id")}, nil), 403, "INVALID_ROLE_ASSIGNMENT")
		child := a.want(a.do("POST", "/api/v1/roles", x.OwnerToken, map[string]any{"name": "child2", "parentRoleId": rich.str("id")}, nil), 201, "")
		a.want(a.do("POST", "/api/v1/users/"+x.UserID+"/roles", x.UserToken, map[string]any{"roleId": child.str("id")}, nil), 403, "INVALID_ROLE_ASSIGNMENT")
		a.want(a.do("GET", "/api/v1/audit", x.UserToken, nil, nil), 403, "PERMISSION_DENIED")
		// What the manager holds, they may grant.
		a.want(a.do("POST", "/api/v1/roles", x.UserToken, map[string]any{"name": "reader", "permissions": []map[string]any{{"permission": "role:read"}}}, nil), 201, "")
	})
}

// A tenant provider cannot sign anyone in as an owner or as a 2FA user, and
// only owners configure providers.
func TestIdentityProviderCannotTakeOverAccounts(t *testing.T) {
	a := newAPI(t, store.SQLite)
	x := a.signup("takeover")
	_, admin := a.member(x, "adm@takeover.test", "admin")
	twoFAUser, tfTok := a.member(x, "guarded@takeover.test", "user")
	enable2FA(t, a, tfTok)
	issuer, _ := testIdP(t, a.url+"/api/v1/auth/oidc/callback", person("evil", x.OwnerEmail, ""), person("evil2", "guarded@takeover.test", ""))
	a.want(a.do("POST", "/api/v1/identity-providers", admin, map[string]any{"name": "mine", "issuer": issuer,
		"clientId": idpClientID, "clientSecret": idpClientSecret}, nil), 403, "PERMISSION_DENIED")
	a.want(a.do("POST", "/api/v1/identity-providers", x.OwnerToken, map[string]any{"name": "idp", "issuer": issuer,
		"clientId": idpClientID, "clientSecret": idpClientSecret}, nil), 201, "")
	for _, who := range []string{"evil", "evil2"} {
		if r := ssoLogin(t, a, "takeover", who); r.Status != 403 {
			t.Errorf("%s signed in through the provider as an existing guarded account: %d %s", who, r.Status, r.Raw)
		}
	}
	_ = twoFAUser
}

// The service API: no dummy password for federated users, no password-only
// validation of 2FA users, no validation in a suspended tenant, and
// impersonation visible in token verification.
func TestServiceAPIHonoursProtections(t *testing.T) {
	a := newAPI(t, store.SQLite)
	x := a.signup("svc-protect")
	svc := hdr{"X-Service-Token": testServiceToken, "X-Service-Name": "billing"}
	issuer, _ := testIdP(t, a.url+"/api/v1/auth/oidc/callback", person("alice", "alice@svc-protect.test", ""))
	a.want(a.do("POST", "/api/v1/identity-providers", x.OwnerToken, map[string]any{"name": "idp", "issuer": issuer,
		"clientId": idpClientID, "clientSecret": idpClientSecret}, nil), 201, "")
	a.want(ssoLogin(t, a, "svc-protect", "alice"), 200, "")
	for _, p := range []string{"not-a-real-password-1", "", "anything-else-1"} {
		r := a.want(a.do("POST", "/internal/users/validate-credentials", "", map[string]any{"email": "alice@svc-protect.test", "password": p, "tenantId": x.ID}, svc), 200, "")
		if r.Body["valid"] != false {
			t.Errorf("a passwordless federated user validated with %q: %s", p, r.Raw)
		}
	}
	enable2FA(t, a, x.UserToken)
	r := a.want(a.do("POST", "/internal/users/validate-credentials", "", map[string]any{"email": x.UserEmail, "password": pw, "tenantId": x.ID}, svc), 200, "")
	if r.Body["valid"] != false || r.Body["mfaRequired"] != true {
		t.Errorf("a 2FA user validated on a password alone: %s", r.Raw)
	}
	op := a.operator()
	imp := a.want(a.do("POST", "/api/v1/admin/tenants/"+x.ID+"/impersonate", op, map[string]any{"userId": x.OwnerID, "reason": "support", "readOnly": true}, nil), 200, "")
	v := a.want(a.do("POST", "/internal/tokens/verify", "", map[string]any{"token": imp.str("accessToken")}, svc), 200, "")
	if !strings.Contains(v.Raw, `"act":{`) || !strings.Contains(v.Raw, `"read_only":true`) {
		t.Errorf("verification hides the impersonation: %s", v.Raw)
	}
	w := a.want(a.do("POST", "/api/v1/admin/tenants/"+x.ID+"/impersonate", op, map[string]any{"userId": x.OwnerID, "reason": "support"}, nil), 200, "")
	a.want(a.do("POST", "/api/v1/api-keys", w.str("accessToken"), map[string]any{"name": "persist"}, nil), 403, "FORBIDDEN")
	a.want(a.do("POST", "/api/v1/admin/tenants/"+x.ID+"/suspend", op, nil, nil), 200, "")
	a.want(a.do("POST", "/internal/users/validate-credentials", "", map[string]any{"email": x.OwnerEmail, "password": pw, "tenantId": x.ID}, svc), 403, "TENANT_SUSPENDED")
}

// A service's address is never locked out by its users' failures.
func TestServiceAddressIsNotLockedOut(t *testing.T) {
	a := newAPI(t, store.SQLite)
	x := a.signup("svc-lock")
	svc := hdr{"X-Service-Token": testServiceToken, "X-Service-Name": "billing"}
	for i := 0; i < 25; i++ {
		a.want(a.do("POST", "/internal/users/validate-credentials", "", map[string]any{"email": "nobody" + string(rune('a'+i)) + "@x.test", "password": "wrong-pass-1", "tenantId": x.ID}, svc), 200, "")
	}
	r := a.want(a.do("POST", "/internal/users/validate-credentials", "", map[string]any{"email": x.OwnerEmail, "password": pw, "tenantId": x.ID}, svc), 200, "")
	if r.Body["valid"] != true {
		t.Errorf("after other users' failures the service cannot validate anyone: %s", r.Raw)
	}
}

// One code, four simultaneous sign-ins: exactly one succeeds (TOTP and recovery codes).
func TestSecondFactorCodesAreSingleUse(t *testing.T) {
	storetest.Each(t, func(t *testing.T, d store.Dialect) {
		for _, kind := range []string{"totp", "recovery"} {
			a := newAPI(t, d)
			x := a.signup("race-" + kind)
			sec, recovery := enable2FA(t, a, x.UserToken)
			code, _ := totp.GenerateCode(sec, time.Now().Add(30*time.Second))
			if kind == "recovery" {
				code = recovery[0].(string)
			}
			ctx := store.WithTenant(context.Background(), x.ID)
			if d == store.Postgres { // open enough pooled connections first, so the sign-ins truly overlap
				var warm sync.WaitGroup
				for i := 0; i < 8; i++ {
					warm.Add(1)
					go func() {
						defer warm.Done()
						_ = a.store.Tx(store.Fork(ctx), func(tx *gorm.DB) error { return tx.Exec("SELECT pg_sleep(0.1)").Error })
					}()
				}
				warm.Wait()
			}
			var wg sync.WaitGroup
			var mu sync.Mutex
			ok := 0
			start := make(chan struct{})
			for i := 0; i < 4; i++ {
				wg.Add(1)
				go func() {
					defer wg.Done()
					<-start
					// Each sign-in is its own line of work, as each request is.
					if _, tok, err := a.ident.Login(store.Fork(ctx), x.UserEmail, pw, code); err == nil && tok != nil {
						mu.Lock()
						ok++
						mu.Unlock()
					}
				}()
			}
			close(start)
			wg.Wait()
			if ok != 1 {
				t.Errorf("%s code: %d of 4 simultaneous sign-ins succeeded, want exactly 1", kind, ok)
			}
		}
	})
}

// One tenant cannot break another's single sign-on by registering its issuer.
func TestProviderCacheIsPerProvider(t *testing.T) {
	a := newAPI(t, store.SQLite)
	x, y := a.signup("sso-a"), a.signup("sso-b")
	issuer, _ := testIdP(t, a.url+"/api/v1/auth/oidc/callback", person("alice", "alice@sso-a.test", ""))
	a.want(a.do("POST", "/api/v1/identity-providers", x.OwnerToken, map[string]any{"name": "a", "issuer": issuer,
		"clientId": idpClientID, "clientSecret": idpClientSecret}, nil), 201, "")
	a.want(a.do("POST", "/api/v1/identity-providers", y.OwnerToken, map[string]any{"name": "b", "issuer": issuer,
		"clientId": idpClientID, "clientSecret": "a-wrong-secret"}, nil), 201, "")
	_ = ssoLogin(t, a, "sso-b", "alice") // fails at the code exchange: wrong secret
	if r := ssoLogin(t, a, "sso-a", "alice"); r.Status != 200 {
		t.Errorf("tenant a's sign-on broke after tenant b registered its issuer: %d %s", r.Status, r.Raw)
	}
}

// With allowed domains, an unverified email is never enough.
func TestAllowedDomainsNeedVerifiedEmail(t *testing.T) {
	a := newAPI(t, store.SQLite)
	x := a.signup("verified-only")
	p := person("mallory", "mallory@verified-only.test", "")
	p.EmailVerified = false
	issuer, _ := testIdP(t, a.url+"/api/v1/auth/oidc/callback", p)
	a.want(a.do("POST", "/api/v1/identity-providers", x.OwnerToken, map[string]any{"name": "a", "issuer": issuer,
		"clientId": idpClientID, "clientSecret": idpClientSecret, "allowedDomains": []string{"verified-only.test"}}, nil), 201, "")
	if r := ssoLogin(t, a, "verified-only", "mallory"); r.Status != 403 {
		t.Errorf("an unverified email passed allowedDomains: %d %s", r.Status, r.Raw)
	}
}

// Ids that are not UUIDs answer 4xx on PostgreSQL too.
func TestNonUUIDIdsAreNotFound(t *testing.T) {
	storetest.Each(t, func(t *testing.T, d store.Dialect) {
		a := newAPI(t, d)
		x := a.signup("ids")
		svc := hdr{"X-Service-Token": testServiceToken, "X-Service-Name": "billing"}
		for _, c := range []struct {
			method, path string
			body         any
			h            hdr
		}{
			{"DELETE", "/api/v1/users/" + x.UserID + "/roles/not-a-uuid", nil, nil},
			{"DELETE", "/api/v1/users/not-a-uuid/roles/" + x.UserID, nil, nil},
			{"POST", "/api/v1/roles", map[string]any{"name": "p", "parentRoleId": "nope"}, nil},
			{"DELETE", "/internal/users/not-a-uuid/roles/x?tenantId=" + x.ID, nil, svc},
		} {
			tok := x.OwnerToken
			if c.h != nil {
				tok = ""
			}
			if r := a.do(c.method, c.path, tok, c.body, c.h); r.Status >= 500 {
				t.Errorf("%s %s: %d %s", c.method, c.path, r.Status, r.Raw)
			}
		}
	})
}

// A provider's long name is shortened on a character boundary (PostgreSQL
// refuses a cut-through character), and sign-in works.
func TestFederatedLongNameIsCutCleanly(t *testing.T) {
	storetest.Each(t, func(t *testing.T, d store.Dialect) {
		a := newAPI(t, d)
		x := a.signup("long-names")
		p := person("lena", "lena@long-names.test", "")
		p.FirstName = "a" + strings.Repeat("é", 60) // byte 100 falls inside an "é"
		issuer, _ := testIdP(t, a.url+"/api/v1/auth/oidc/callback", p)
		a.want(a.do("POST", "/api/v1/identity-providers", x.OwnerToken, map[string]any{"name": "idp", "issuer": issuer,
			"clientId": idpClientID, "clientSecret": idpClientSecret}, nil), 201, "")
		r := ssoLogin(t, a, "long-names", "lena")
		if r.Status != 200 {
			t.Fatalf("sign-in with a long name: %d %s", r.Status, r.Raw)
		}
		me := a.want(a.do("GET", "/api/v1/users/me", r.str("accessToken"), nil, nil), 200, "")
		if got := me.str("firstName"); got != "a"+strings.Repeat("é", 49) {
			t.Errorf("firstName = %q (%d bytes), want the first 99 bytes", got, len(got))
		}
	})
}
