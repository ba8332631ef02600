package web

import (
	"strings"
	"testing"
	"time"

	"github.com/pquerna/otp/totp"

	"github.com/tenantgate/tenantgate/internal/store"
	"github.com/tenantgate/tenantgate/internal/store/storetest"
)

func TestTwoFactor(t *testing.T) {
	storetest.Each(t, func(t *testing.T, d store.Dialect) {
		a := newAPI(t, d)
		x := a.signup("duff")
		login := func(otp string) resp {
			body := map[string]any{"email": x.UserEmail, "password": pw, "tenant": "duff"}
			if otp != "" {
				body["otp"] = otp
			}
			return a.do("POST", "/api/v1/auth/login", "", body, nil)
		}
		// Setup needs the password; enabling needs a code from the app.
		a.want(a.do("POST", "/api/v1/users/me/2fa/setup", x.UserToken, map[string]any{"password": "wrong-pass-1"}, nil), 400, "INVALID_REQUEST")
		setup := a.want(a.do("POST", "/api/v1/users/me/2fa/setup", x.UserToken, map[string]any{"password": pw}, nil), 200, "")
		sec := setup.str("secret")
		if sec == "" || !strings.HasPrefix(setup.str("otpauthUrl"), "otpauth://totp/") {
			t.Fatalf("setup: %s", setup.Raw)
		}
		a.want(a.do("POST", "/api/v1/users/me/2fa/enable", x.UserToken, map[string]any{"code": "000000"}, nil), 400, "INVALID_REQUEST")
		code, _ := totp.GenerateCode(sec, time.Now())
		en := a.want(a.do("POST", "/api/v1/users/me/2fa/enable", x.UserToken, map[string]any{"code": code}, nil), 200, "")
		recovery, _ := en.Body["recoveryCodes"].([]any)
		if len(recovery) != 10 {
			t.Fatalf("recovery codes: %s", en.Raw)
		}
		if got := a.want(a.do("GET", "/api/v1/users/me", x.UserToken, nil, nil), 200, ""); got.Body["twoFactorEnabled"] != true {
			t.Errorf("me after enabling: %s", got.Raw)
		}
		// Login now asks for the code; the code just used cannot be replayed.
		a.want(login(""), 401, "MFA_REQUIRED")
		a.want(login("123456"), 401, "INVALID_CREDENTIALS")
		a.want(login(code), 401, "INVALID_CREDENTIALS")
		// A recovery code works once.
		rc := recovery[0].(string)
		tok := a.want(login(rc), 200, "").str("accessToken")
		a.want(login(rc), 401, "INVALID_CREDENTIALS")
		a.want(a.do("GET", "/api/v1/users/me", tok, nil, nil), 200, "")
		// Secrets never reach the user's JSON or the audit log.
		all := a.want(a.do("GET", "/api/v1/audit?limit=100", x.OwnerToken, nil, nil), 200, "").Raw
		me := a.want(a.do("GET", "/api/v1/users/me", tok, nil, nil), 200, "").Raw
		for _, leak := range []string{sec, rc, code} {
			if strings.Contains(all, leak) || strings.Contains(me, leak) {
				t.Errorf("a 2FA secret or code leaked: %q", leak)
			}
		}
		// An admin can reset a lost device.
		a.want(a.do("DELETE", "/api/v1/users/"+x.UserID+"/2fa", x.OwnerToken, nil, nil), 204, "")
		a.want(login(""), 200, "")
	})
}

func TestTenantSecurityPolicy(t *testing.T) {
	storetest.Each(t, func(t *testing.T, d store.Dialect) {
		a := newAPI(t, d)
		x := a.signup("krusty")
		key := a.want(a.do("POST", "/api/v1/api-keys", x.OwnerToken, map[string]any{"name": "k"}, nil), 201, "").str("secret")
		// Require 2FA: users without it may only enrol.
		a.want(a.do("PATCH", "/api/v1/tenants/current/compliance", x.OwnerToken, map[string]any{"require2fa": true}, nil), 200, "")
		a.want(a.do("GET", "/api/v1/users", x.OwnerToken, nil, nil), 403, "MFA_ENROLLMENT_REQUIRED")
		a.want(a.do("GET", "/api/v1/users/me", x.OwnerToken, nil, nil), 200, "")
		sec := a.want(a.do("POST", "/api/v1/users/me/2fa/setup", x.OwnerToken, map[string]any{"password": pw}, nil), 200, "").str("secret")
		code, _ := totp.GenerateCode(sec, time.Now())
		a.want(a.do("POST", "/api/v1/users/me/2fa/enable", x.OwnerToken, map[string]any{"code": code}, nil), 200, "")
		// After enrolling, a session started with the code passes; so do API keys.
		next, _ := totp.GenerateCode(sec, time.Now().Add(30*time.Second))
		tok := a.want(a.do("POST", "/api/v1/auth/login", "", map[string]any{"email": x.OwnerEmail, "password": pw, "tenant": "krusty", "otp": next}, nil), 200, "").str("accessToken")
		a.want(a.do("GET", "/api/v1/users", tok, nil, nil), 200, "")
		a.want(a.do("GET", "/api/v1/users", key, nil, nil), 200, "")
		// The IP allowlist: the tests come from 127.0.0.1.
		a.want(a.do("PATCH", "/api/v1/tenants/current/compliance", tok, map[string]any{"ipAllowlist": []string{"not-an-ip"}}, nil), 400, "INVALID_REQUEST")
		a.want(a.do("PATCH", "/api/v1/tenants/current/compliance", tok, map[string]any{"ipAllowlist": []string{"127.0.0.0/8", "::1"}}, nil), 200, "")
		a.want(a.do("GET", "/api/v1/users", tok, nil, nil), 200, "")
		a.want(a.do("PATCH", "/api/v1/tenants/current/compliance", tok, map[string]any{"ipAllowlist": []string{"10.1.0.0/16"}}, nil), 200, "")
		a.want(a.do("GET", "/api/v1/users", tok, nil, nil), 403, CodeIPNotAllowed)
		a.want(a.do("GET", "/api/v1/users", key, nil, nil), 403, CodeIPNotAllowed)
		a.want(a.do("POST", "/api/v1/auth/login", "", map[string]any{"email": x.OwnerEmail, "password": pw, "tenant": "krusty"}, nil), 403, CodeIPNotAllowed)
		// Operators are not bound by it and can lift it.
		op := a.operator()
		a.want(a.do("PATCH", "/api/v1/admin/tenants/"+x.ID, op, map[string]any{"compliance": map[string]any{"ipAllowlist": []string{}}}, nil), 200, "")
		a.want(a.do("GET", "/api/v1/users", tok, nil, nil), 200, "")
	})
}

func TestLoginLockout(t *testing.T) {
	a := newAPI(t, store.SQLite)
	x := a.signup("lockme")
	bad := map[string]any{"email": x.OwnerEmail, "password": "wrong-password-1", "tenant": "lockme"}
	for i := 0; i < 5; i++ {
		a.want(a.do("POST", "/api/v1/auth/login", "", bad, nil), 401, "INVALID_CREDENTIALS")
	}
	// Locked: even the right password is refused, with Retry-After.
	r := a.want(a.do("POST", "/api/v1/auth/login", "", map[string]any{"email": x.OwnerEmail, "password": pw, "tenant": "lockme"}, nil), 429, "RATE_LIMITED")
	if r.Header.Get("Retry-After") == "" {
		t.Errorf("no Retry-After on a lockout: %v", r.Header)
	}
	// Other accounts of the tenant are not locked.
	a.want(a.do("POST", "/api/v1/auth/login", "", map[string]any{"email": x.UserEmail, "password": pw, "tenant": "lockme"}, nil), 200, "")
	ev := a.want(a.do("GET", "/api/v1/audit?eventType=auth.login_locked", x.UserToken, nil, nil), 403, "PERMISSION_DENIED")
	_ = ev
	ev = a.want(a.do("GET", "/api/v1/audit?eventType=auth.login_locked", a.operator(), nil, hdr{"X-Tenant-ID": x.ID}), 200, "")
	if len(ev.items()) != 1 {
		t.Errorf("lockout audit events: %s", ev.Raw)
	}
}

func TestImpersonation(t *testing.T) {
	storetest.Each(t, func(t *testing.T, d store.Dialect) {
		a := newAPI(t, d)
		x, y := a.signup("initrode"), a.signup("chotchkies")
		op := a.operator()
		path := "/api/v1/admin/tenants/" + x.ID + "/impersonate"
		a.want(a.do("POST", path, x.OwnerToken, map[string]any{"userId": x.UserID, "reason": "support"}, nil), 403, "PERMISSION_DENIED")
		a.want(a.do("POST", path, op, map[string]any{"userId": x.UserID}, nil), 400, "INVALID_REQUEST") // no reason
		a.want(a.do("POST", path, op, map[string]any{"userId": y.UserID, "reason": "wrong tenant"}, nil), 404, "USER_NOT_FOUND")
		r := a.want(a.do("POST", path, op, map[string]any{"userId": x.UserID, "reason": "ticket 42", "readOnly": true}, nil), 200, "")
		tok := r.str("accessToken")
		// The token acts as the user, says who is behind it, and only reads.
		if got := a.want(a.do("GET", "/api/v1/users/me", tok, nil, nil), 200, "").str("id"); got != x.UserID {
			t.Errorf("impersonated /me = %s", got)
		}
		a.want(a.do("PATCH", "/api/v1/users/me", tok, map[string]any{"firstName": "Evil"}, nil), 403, CodeReadOnlySession)
		a.want(a.do("GET", "/api/v1/users", tok, nil, hdr{"X-Tenant-ID": y.ID}), 404, "TENANT_NOT_FOUND")
		c, err := a.ident.Signer().Verify(tok)
		storetest.Must(t, err)
		if c.Actor == "" || !c.ReadOnly || c.Tenant != x.ID || c.Subject != x.UserID {
			t.Errorf("impersonation claims: %+v", c)
		}
		// A writable impersonation's actions are audited with the operator named.
		w := a.want(a.do("POST", path, op, map[string]any{"userId": x.OwnerID, "reason": "fix a setting"}, nil), 200, "").str("accessToken")
		a.want(a.do("PATCH", "/api/v1/tenants/current/settings", w, map[string]any{"locale": "de"}, nil), 200, "")
		ev := a.want(a.do("GET", "/api/v1/audit?eventType=tenant.updated&limit=1", x.OwnerToken, nil, nil), 200, "").items()
		if len(ev) != 1 || ev[0]["metadata"].(map[string]any)["impersonatedBy"] != c.Actor {
			t.Errorf("the impersonated change is not attributed to the operator: %v", ev)
		}
		if n := len(a.want(a.do("GET", "/api/v1/audit?eventType=platform.impersonation_started", x.OwnerToken, nil, nil), 200, "").items()); n != 2 {
			t.Errorf("%d impersonation starts audited, want 2", n)
		}
	})
}
