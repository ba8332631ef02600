package web

import (
	"fmt"
	"strings"
	"sync"
	"testing"

	"github.com/tenantgate/tenantgate/internal/identity"
	"github.com/tenantgate/tenantgate/internal/store"
	"github.com/tenantgate/tenantgate/internal/store/storetest"
)

func TestSessions(t *testing.T) {
	storetest.Each(t, func(t *testing.T, d store.Dialect) {
		a := newAPI(t, d)
		x := a.signup("cyberdyne")
		// Refresh rotates: the new pair works, the old refresh token is spent.
		r := a.want(a.do("POST", "/api/v1/auth/refresh", "", map[string]any{"refreshToken": x.OwnerRefresh}, nil), 200, "")
		if r.str("tokenType") != "Bearer" || r.Body["expiresIn"] == nil || r.str("refreshToken") == x.OwnerRefresh {
			t.Fatalf("refresh answer: %s", r.Raw)
		}
		second := r.str("refreshToken")
		a.want(a.do("GET", "/api/v1/users/me", r.str("accessToken"), nil, nil), 200, "")
		// Replaying the spent token is theft: the whole session ends, the new token too.
		a.want(a.do("POST", "/api/v1/auth/refresh", "", map[string]any{"refreshToken": x.OwnerRefresh}, nil), 401, "TOKEN_INVALID")
		a.want(a.do("POST", "/api/v1/auth/refresh", "", map[string]any{"refreshToken": second}, nil), 401, "TOKEN_INVALID")
		// ...and its access tokens, old and new, are refused until they expire.
		a.want(a.do("GET", "/api/v1/users/me", r.str("accessToken"), nil, nil), 401, "TOKEN_INVALID")
		a.want(a.do("GET", "/api/v1/users/me", x.OwnerToken, nil, nil), 401, "TOKEN_INVALID")
		x.OwnerToken = a.want(a.do("POST", "/api/v1/auth/login", "", map[string]any{"email": x.OwnerEmail, "password": pw, "tenant": "cyberdyne"}, nil), 200, "").str("accessToken")
		ev := a.want(a.do("GET", "/api/v1/audit?eventType=session.reuse_detected", x.OwnerToken, nil, nil), 200, "").items()
		if len(ev) != 1 {
			t.Errorf("reuse detections audited: %d, want 1", len(ev))
		}
		// Logout ends a session; logging out twice is fine.
		l := a.want(a.do("POST", "/api/v1/auth/login", "", map[string]any{"email": x.UserEmail, "password": pw, "tenant": "cyberdyne"}, nil), 200, "")
		a.want(a.do("GET", "/api/v1/users/me", l.str("accessToken"), nil, nil), 200, "")
		a.want(a.do("POST", "/api/v1/auth/logout", "", map[string]any{"refreshToken": l.str("refreshToken")}, nil), 204, "")
		a.want(a.do("POST", "/api/v1/auth/logout", "", map[string]any{"refreshToken": l.str("refreshToken")}, nil), 204, "")
		a.want(a.do("GET", "/api/v1/users/me", l.str("accessToken"), nil, nil), 401, "TOKEN_INVALID")
		a.want(a.do("POST", "/api/v1/auth/refresh", "", map[string]any{"refreshToken": l.str("refreshToken")}, nil), 401, "TOKEN_INVALID")
		a.want(a.do("POST", "/api/v1/auth/refresh", "", map[string]any{"refreshToken": "tgr_garbage"}, nil), 401, "TOKEN_INVALID")
		// Suspending a user ends their sessions.
		l = a.want(a.do("POST", "/api/v1/auth/login", "", map[string]any{"email": x.UserEmail, "password": pw, "tenant": "cyberdyne"}, nil), 200, "")
		a.want(a.do("PATCH", "/api/v1/users/"+x.UserID, x.OwnerToken, map[string]any{"status": "suspended"}, nil), 200, "")
		a.want(a.do("POST", "/api/v1/auth/refresh", "", map[string]any{"refreshToken": l.str("refreshToken")}, nil), 401, "TOKEN_INVALID")
		a.want(a.do("GET", "/api/v1/tenants/current", l.str("accessToken"), nil, nil), 401, "TOKEN_INVALID")
		a.want(a.do("GET", "/api/v1/tenants/current", x.UserToken, nil, nil), 401, "TOKEN_INVALID")
		a.want(a.do("POST", "/api/v1/auth/login", "", map[string]any{"email": x.UserEmail, "password": pw, "tenant": "cyberdyne"}, nil), 403, "FORBIDDEN")
		// Failed logins are audited, without the password.
		a.want(a.do("POST", "/api/v1/auth/login", "", map[string]any{"email": x.OwnerEmail, "password": "wrong-password-1", "tenant": "cyberdyne"}, nil), 401, "INVALID_CREDENTIALS")
		fails := a.want(a.do("GET", "/api/v1/audit?eventType=auth.login_failed", x.OwnerToken, nil, nil), 200, "")
		if len(fails.items()) != 2 || strings.Contains(fails.Raw, "wrong-password-1") {
			t.Errorf("failed logins in the audit log: %s", fails.Raw)
		}
		// Operators log in without a tenant and refresh the same way.
		op := a.want(a.do("POST", "/api/v1/auth/login", "", map[string]any{"email": "ops@platform.test", "password": "nope-nope-1"}, nil), 401, "INVALID_CREDENTIALS")
		_ = op
		a.operator()
		o := a.want(a.do("POST", "/api/v1/auth/login", "", map[string]any{"email": "ops@platform.test", "password": "operator-pass-1"}, nil), 200, "")
		a.want(a.do("POST", "/api/v1/auth/refresh", "", map[string]any{"refreshToken": o.str("refreshToken")}, nil), 200, "")
		// JWKS and discovery are published.
		jwks := a.want(a.do("GET", "/.well-known/jwks.json", "", nil, nil), 200, "")
		if keys, _ := jwks.Body["keys"].([]any); len(keys) != 1 || strings.Contains(jwks.Raw, `"d"`) {
			t.Errorf("JWKS: %s", jwks.Raw)
		}
		disc := a.want(a.do("GET", "/.well-known/openid-configuration", "", nil, nil), 200, "")
		if disc.str("jwks_uri") != "http://tenantgate.test/.well-known/jwks.json" {
			t.Errorf("discovery: %s", disc.Raw)
		}
	})
}

// TestSessionList lists and revokes one's own sessions; another process's
// revocation arrives through SyncRevocations.
func TestSessionList(t *testing.T) {
	storetest.Each(t, func(t *testing.T, d store.Dialect) {
		a := newAPI(t, d)
		x := a.signup("massive")
		second := a.want(a.do("POST", "/api/v1/auth/login", "", map[string]any{"email": x.OwnerEmail, "password": pw, "tenant": "massive"}, nil), 200, "")
		list := a.want(a.do("GET", "/api/v1/sessions", x.OwnerToken, nil, nil), 200, "").items()
		if len(list) != 2 {
			t.Fatalf("%d sessions, want 2: %v", len(list), list)
		}
		var other string
		for _, s := range list {
			if s["current"] != true {
				other = s["id"].(string)
			}
		}
		if other == "" {
			t.Fatalf("no session other than the current one: %v", list)
		}
		// Another user cannot end it; its owner can.
		a.want(a.do("DELETE", "/api/v1/sessions/"+other, x.UserToken, nil, nil), 404, "NOT_FOUND")
		a.want(a.do("DELETE", "/api/v1/sessions/"+other, x.OwnerToken, nil, nil), 204, "")
		a.want(a.do("GET", "/api/v1/users/me", second.str("accessToken"), nil, nil), 401, "TOKEN_INVALID")
		if n := len(a.want(a.do("GET", "/api/v1/sessions", x.OwnerToken, nil, nil), 200, "").items()); n != 1 {
			t.Errorf("%d sessions after revoking one, want 1", n)
		}
		// A second server process over the same database learns of revocations by polling.
		peer := identity.New(a.store, a.ident.Signer(), identity.Options{Password: identity.FastPasswordParams})
		storetest.Must(t, peer.SyncRevocations(t.Context()))
		if !peer.SessionRevoked(other) {
			t.Error("the peer process does not know the session was revoked")
		}
	})
}

func TestUsersAPI(t *testing.T) {
	storetest.Each(t, func(t *testing.T, d store.Dialect) {
		a := newAPI(t, d)
		x := a.signup("tyrell")
		// An admin can manage users but not grant owner or touch the owner.
		ad := a.want(a.do("POST", "/api/v1/users", x.OwnerToken, map[string]any{"email": "admin@tyrell.test", "password": pw, "roles": []string{"admin"}}, nil), 201, "")
		adTok := a.want(a.do("POST", "/api/v1/auth/login", "", map[string]any{"email": "admin@tyrell.test", "password": pw, "tenant": "tyrell"}, nil), 200, "").str("accessToken")
		a.want(a.do("POST", "/api/v1/users", adTok, map[string]any{"email": "o2@tyrell.test", "password": pw, "roles": []string{"owner"}}, nil), 403, "PERMISSION_DENIED")
		a.want(a.do("PATCH", "/api/v1/users/"+x.OwnerID, adTok, map[string]any{"firstName": "Demoted"}, nil), 403, "PERMISSION_DENIED")
		a.want(a.do("DELETE", "/api/v1/users/"+x.OwnerID, adTok, nil, nil), 403, "PERMISSION_DENIED")
		a.want(a.do("PATCH", "/api/v1/users/"+x.UserID, adTok, map[string]any{"roles": []string{"billing_manager"}}, nil), 200, "")
		// A role change ends the user's sessions: their tokens carried the old roles.
		a.want(a.do("GET", "/api/v1/users/me", x.UserToken, nil, nil), 401, "TOKEN_INVALID")
		x.UserToken = a.want(a.do("POST", "/api/v1/auth/login", "", map[string]any{"email": x.UserEmail, "password": pw, "tenant": "tyrell"}, nil), 200, "").str("accessToken")
		// Nobody changes their own roles or status, even by id; the last owner
		// cannot be demoted, suspended or deleted, even by an operator.
		a.want(a.do("PATCH", "/api/v1/users/"+x.OwnerID, x.OwnerToken, map[string]any{"roles": []string{"admin"}}, nil), 400, "INVALID_REQUEST")
		a.want(a.do("PATCH", "/api/v1/users/"+x.OwnerID, x.OwnerToken, map[string]any{"password": "sneaky-password-1"}, nil), 400, "INVALID_REQUEST")
		a.want(a.do("DELETE", "/api/v1/users/"+x.OwnerID, x.OwnerToken, nil, nil), 403, "FORBIDDEN")
		op := a.operator()
		as := hdr{"X-Tenant-ID": x.ID}
		a.want(a.do("PATCH", "/api/v1/users/"+x.OwnerID, op, map[string]any{"roles": []string{"admin"}}, as), 409, "LAST_OWNER")
		a.want(a.do("PATCH", "/api/v1/users/"+x.OwnerID, op, map[string]any{"status": "suspended"}, as), 409, "LAST_OWNER")
		a.want(a.do("DELETE", "/api/v1/users/"+x.OwnerID, op, nil, as), 409, "LAST_OWNER")
		// /users/me: profile edits; a password change needs the current one.
		me := a.want(a.do("GET", "/api/v1/users/me", x.UserToken, nil, nil), 200, "")
		if me.str("id") != x.UserID || strings.Contains(me.Raw, "argon2") || strings.Contains(me.Raw, "passwordHash") {
			t.Fatalf("me: %s", me.Raw)
		}
		a.want(a.do("PATCH", "/api/v1/users/me", x.UserToken, map[string]any{"roles": []string{"owner"}}, nil), 400, "INVALID_REQUEST")
		a.want(a.do("PATCH", "/api/v1/users/me", x.UserToken, map[string]any{"password": "new-password-42", "currentPassword": "wrong"}, nil), 400, "INVALID_REQUEST")
		a.want(a.do("PATCH", "/api/v1/users/me", x.UserToken, map[string]any{"password": "new-password-42", "currentPassword": pw, "lastName": "Smith"}, nil), 200, "")
		a.want(a.do("POST", "/api/v1/auth/login", "", map[string]any{"email": x.UserEmail, "password": "new-password-42", "tenant": "tyrell"}, nil), 200, "")
		a.want(a.do("POST", "/api/v1/auth/login", "", map[string]any{"email": x.UserEmail, "password": pw, "tenant": "tyrell"}, nil), 401, "INVALID_CREDENTIALS")
		// Delete hides the user from the default list; its email is free again.
		a.want(a.do("DELETE", "/api/v1/users/"+ad.str("id"), x.OwnerToken, nil, nil), 204, "")
		a.want(a.do("DELETE", "/api/v1/users/"+ad.str("id"), x.OwnerToken, nil, nil), 404, "USER_NOT_FOUND")
		if n := len(a.want(a.do("GET", "/api/v1/users", x.OwnerToken, nil, nil), 200, "").items()); n != 2 {
			t.Errorf("listed %d users after a delete, want 2", n)
		}
		if n := len(a.want(a.do("GET", "/api/v1/users?status=deleted", x.OwnerToken, nil, nil), 200, "").items()); n != 1 {
			t.Errorf("listed %d deleted users, want 1", n)
		}
		a.want(a.do("POST", "/api/v1/users", x.OwnerToken, map[string]any{"email": "admin@tyrell.test", "password": pw}, nil), 201, "")
		// Filters and pages.
		for i := 0; i < 5; i++ {
			a.want(a.do("POST", "/api/v1/users", x.OwnerToken, map[string]any{"email": "bulk" + string(rune('a'+i)) + "@tyrell.test", "password": pw}, nil), 201, "")
		}
		if got := a.want(a.do("GET", "/api/v1/users?role=billing_manager", x.OwnerToken, nil, nil), 200, "").items(); len(got) != 1 || got[0]["id"] != x.UserID {
			t.Errorf("role filter: %v", got)
		}
		if got := a.want(a.do("GET", "/api/v1/users?q=BULK", x.OwnerToken, nil, nil), 200, "").items(); len(got) != 5 {
			t.Errorf("q=BULK found %d, want 5", len(got))
		}
		seen := map[string]bool{}
		cursor := ""
		for pages := 0; ; pages++ {
			r := a.want(a.do("GET", "/api/v1/users?limit=3"+cursor, x.OwnerToken, nil, nil), 200, "")
			for _, u := range r.items() {
				if seen[u["id"].(string)] {
					t.Fatalf("user %v listed twice", u["id"])
				}
				seen[u["id"].(string)] = true
			}
			if r.Body["nextCursor"] == nil {
				break
			}
			cursor = "&cursor=" + r.Body["nextCursor"].(string)
			if pages > 5 {
				t.Fatal("pagination does not end")
			}
		}
		if len(seen) != 8 {
			t.Errorf("paged through %d users, want 8", len(seen))
		}
		// Audit payloads never carry secrets.
		all := a.want(a.do("GET", "/api/v1/audit?limit=100", x.OwnerToken, nil, nil), 200, "")
		for _, secret := range []string{pw, "new-password-42", "argon2id", "refreshToken", "accessToken"} {
			if strings.Contains(all.Raw, secret) {
				t.Errorf("the audit log contains %q", secret)
			}
		}
		if ev := a.want(a.do("GET", "/api/v1/audit?resource=user&action=update&actorId="+x.UserID, x.OwnerToken, nil, nil), 200, "").items(); len(ev) != 1 {
			t.Errorf("the user's own update: %d events, want 1", len(ev))
		}
		// Usage counts.
		u := a.want(a.do("GET", "/api/v1/tenants/current/usage", x.OwnerToken, nil, nil), 200, "")
		if u.Body["users"].(map[string]any)["total"].(float64) != 8 {
			t.Errorf("usage: %s", u.Raw)
		}
	})
}

// TestDemotionTakesEffectAtOnce: a demoted owner's old token cannot undo the
// demotion or act with its former rank.
func TestDemotionTakesEffectAtOnce(t *testing.T) {
	storetest.Each(t, func(t *testing.T, d store.Dialect) {
		a := newAPI(t, d)
		x := a.signup("vandelay")
		b := a.want(a.do("POST", "/api/v1/users", x.OwnerToken, map[string]any{"email": "b@vandelay.test", "password": pw, "roles": []string{"owner"}}, nil), 201, "")
		bTok := a.want(a.do("POST", "/api/v1/auth/login", "", map[string]any{"email": "b@vandelay.test", "password": pw, "tenant": "vandelay"}, nil), 200, "").str("accessToken")
		a.want(a.do("PATCH", "/api/v1/users/"+b.str("id"), x.OwnerToken, map[string]any{"roles": []string{"user"}}, nil), 200, "")
		// B's token was issued when B was an owner; it is refused now.
		a.want(a.do("PATCH", "/api/v1/users/"+b.str("id"), bTok, map[string]any{"roles": []string{"owner"}}, nil), 401, "TOKEN_INVALID")
		a.want(a.do("PATCH", "/api/v1/users/"+x.OwnerID, bTok, map[string]any{"roles": []string{"user"}}, nil), 401, "TOKEN_INVALID")
		// Logged in again as a plain user, B has a plain user's rights.
		bTok = a.want(a.do("POST", "/api/v1/auth/login", "", map[string]any{"email": "b@vandelay.test", "password": pw, "tenant": "vandelay"}, nil), 200, "").str("accessToken")
		a.want(a.do("PATCH", "/api/v1/users/"+x.OwnerID, bTok, map[string]any{"roles": []string{"user"}}, nil), 403, "PERMISSION_DENIED")
	})
}

// TestOwnersDemotingEachOtherKeepAnOwner races two owners demoting each
// other; at least one owner must survive every round.
func TestOwnersDemotingEachOtherKeepAnOwner(t *testing.T) {
	storetest.Each(t, func(t *testing.T, d store.Dialect) {
		a := newAPI(t, d)
		for round := 0; round < 8; round++ {
			x := a.signup(fmt.Sprintf("race%d", round))
			b := a.want(a.do("POST", "/api/v1/users", x.OwnerToken, map[string]any{"email": "b@race.test", "password": pw, "roles": []string{"owner"}}, nil), 201, "")
			bTok := a.want(a.do("POST", "/api/v1/auth/login", "", map[string]any{"email": "b@race.test", "password": pw, "tenant": x.Slug}, nil), 200, "").str("accessToken")
			var wg sync.WaitGroup
			for _, c := range [][2]string{{x.OwnerToken, b.str("id")}, {bTok, x.OwnerID}} {
				wg.Add(1)
				go func(tok, target string) {
					defer wg.Done()
					a.do("PATCH", "/api/v1/users/"+target, tok, map[string]any{"roles": []string{"admin"}}, nil)
				}(c[0], c[1])
			}
			wg.Wait()
			op := a.operator()
			owners := a.want(a.do("GET", "/api/v1/users?role=owner", op, nil, hdr{"X-Tenant-ID": x.ID}), 200, "").items()
			if len(owners) == 0 {
				t.Fatalf("round %d: the tenant has no owner left", round)
			}
		}
	})
}
