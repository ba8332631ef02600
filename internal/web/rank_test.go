package web

import (
	"fmt"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/tenantgate/tenantgate/internal/rbac"
	"github.com/tenantgate/tenantgate/internal/store"
	"github.com/tenantgate/tenantgate/internal/store/storetest"
)

// rankFixture is a tenant with an owner, an admin, a "user manager" (a plain
// user given a custom role with the user-management permissions) and the
// custom roles the rank tests hand out.
type rankFixture struct {
	a                          *api
	x                          org
	adminTok, mgrTok           string
	reader, reader2            string // custom roles of user:read (rank 10)
	payer, ssoer, both, ssoKid string // billing:manage (20), sso:manage (40), both (40), an empty child of ssoer (40)
	condSSO                    string // sso:manage under a condition (40)
	n                          int
}

func newRankFixture(t *testing.T, d store.Dialect, slug string) *rankFixture {
	a := newAPI(t, d)
	f := &rankFixture{a: a, x: a.signup(slug)}
	role := func(name string, body map[string]any) string {
		body["name"] = name
		return a.want(a.do("POST", "/api/v1/roles", f.x.OwnerToken, body, nil), 201, "").str("id")
	}
	perms := func(ps ...string) []map[string]any {
		out := []map[string]any{}
		for _, p := range ps {
			out = append(out, map[string]any{"permission": p})
		}
		return out
	}
	f.reader = role("reader", map[string]any{"permissions": perms("user:read")})
	f.reader2 = role("reader2", map[string]any{"permissions": perms("user:read")})
	f.payer = role("payer", map[string]any{"permissions": perms("billing:manage")})
	f.ssoer = role("ssoer", map[string]any{"permissions": perms("sso:manage")})
	f.both = role("both", map[string]any{"permissions": perms("billing:manage", "sso:manage")})
	f.ssoKid = role("sso-kid", map[string]any{"parentRoleId": f.ssoer})
	f.condSSO = role("cond-sso", map[string]any{"permissions": []map[string]any{{"permission": "sso:manage",
		"conditions": []map[string]any{{"type": "location_based", "operator": "in", "value": "10.0.0.0/8"}}}}})
	mgr := role("usermgr", map[string]any{"permissions": perms("user:read", "user:update", "user:delete", "user:assign_role", "role:read")})
	_, f.adminTok = a.member(f.x, "admin@"+slug+".test", "admin")
	mgrID, _ := a.member(f.x, "mgr@"+slug+".test", "user")
	f.assign(mgrID, mgr, nil)
	f.mgrTok = a.want(a.do("POST", "/api/v1/auth/login", "", map[string]any{"email": "mgr@" + slug + ".test", "password": pw, "tenant": slug}, nil), 200, "").str("accessToken")
	return f
}

// assign has the owner assign a role, with extra fields (validFrom, ...).
func (f *rankFixture) assign(userID, roleID string, extra map[string]any) {
	body := map[string]any{"roleId": roleID}
	for k, v := range extra {
		body[k] = v
	}
	f.a.want(f.a.do("POST", "/api/v1/users/"+userID+"/roles", f.x.OwnerToken, body, nil), 201, "")
}

// user has the owner create a fresh user with built-in roles on the record.
func (f *rankFixture) user(roles ...string) string {
	f.n++
	email := fmt.Sprintf("target%d@%s.test", f.n, f.x.Slug)
	return f.a.want(f.a.do("POST", "/api/v1/users", f.x.OwnerToken, map[string]any{"email": email, "password": pw, "roles": roles}, nil), 201, "").str("id")
}

// TestRankRulesReadEverySourceOfRoles walks the matrix of callers × targets ×
// user-management actions through the API. A target's rank counts the roles
// on its record, its assignments (built-in and custom, time-bound, not yet
// started, conditional) and inherited roles; the caller's rank counts what
// the caller fully holds now.
func TestRankRulesReadEverySourceOfRoles(t *testing.T) {
	storetest.Each(t, func(t *testing.T, d store.Dialect) {
		f := newRankFixture(t, d, "rankco")
		a := f.a
		soon := time.Now().Add(time.Hour).UTC().Format(time.RFC3339)
		tomorrow := time.Now().Add(24 * time.Hour).UTC().Format(time.RFC3339)
		ownerRole := rbac.BuiltinRoleID(rbac.RoleOwner)
		targets := []struct {
			name  string
			setup func() string
			// whether the owner, the admin and the user manager may manage the target
			owner, admin, mgr bool
		}{
			{"plain user", func() string { return f.user("user") }, true, true, true},
			{"built-in billing manager", func() string { return f.user("billing_manager") }, true, true, false},
			{"built-in admin", func() string { return f.user("admin") }, true, true, false},
			{"built-in owner on the record", func() string { return f.user("owner") }, true, false, false},
			{"owner by assignment", func() string { id := f.user("user"); f.assign(id, ownerRole, nil); return id }, true, false, false},
			{"owner by a time-bound assignment", func() string {
				id := f.user("user")
				f.assign(id, ownerRole, map[string]any{"validUntil": soon})
				return id
			}, true, false, false},
			{"owner from tomorrow", func() string {
				id := f.user("user")
				f.assign(id, ownerRole, map[string]any{"validFrom": tomorrow})
				return id
			}, true, false, false},
			{"custom billing:manage (ranks as billing manager)", func() string { id := f.user("user"); f.assign(id, f.payer, nil); return id }, true, true, false},
			{"custom sso:manage", func() string { id := f.user("user"); f.assign(id, f.ssoer, nil); return id }, true, false, false},
			{"custom billing:manage and sso:manage", func() string { id := f.user("user"); f.assign(id, f.both, nil); return id }, true, false, false},
			{"sso:manage inherited from a parent role", func() string { id := f.user("user"); f.assign(id, f.ssoKid, nil); return id }, true, false, false},
			{"sso:manage under a condition", func() string { id := f.user("user"); f.assign(id, f.condSSO, nil); return id }, true, false, false},
		}
		callers := []struct {
			name string
			tok  string
		}{{"owner", f.x.OwnerToken}, {"admin", f.adminTok}, {"user manager", f.mgrTok}}
		// The actions, in an order where an allowed one leaves the target
		// fit for the next. ok/code are the answer when the rules allow it.
		type action struct {
			name   string
			do     func(tok, id string) resp
			ok     int
			okCode string
		}
		actions := []action{
			{"reset 2FA", func(tok, id string) resp { return a.do("DELETE", "/api/v1/users/"+id+"/2fa", tok, nil, nil) }, 409, "MFA_NOT_ENABLED"},
			{"assign", func(tok, id string) resp {
				return a.do("POST", "/api/v1/users/"+id+"/roles", tok, map[string]any{"roleId": f.reader2}, nil)
			}, 201, ""},
			{"unassign", func(tok, id string) resp {
				return a.do("DELETE", "/api/v1/users/"+id+"/roles/"+f.reader, tok, nil, nil)
			}, 204, ""},
			{"update", func(tok, id string) resp {
				return a.do("PATCH", "/api/v1/users/"+id, tok, map[string]any{"firstName": "Renamed"}, nil)
			}, 200, ""},
			{"reset password", func(tok, id string) resp {
				return a.do("PATCH", "/api/v1/users/"+id, tok, map[string]any{"password": "rotated-horse-77"}, nil)
			}, 200, ""},
			{"disable", func(tok, id string) resp {
				return a.do("PATCH", "/api/v1/users/"+id, tok, map[string]any{"status": "suspended"}, nil)
			}, 200, ""},
			{"delete", func(tok, id string) resp { return a.do("DELETE", "/api/v1/users/"+id, tok, nil, nil) }, 204, ""},
		}
		type cell struct{ Target, Caller, Action, Got string }
		var got, want []cell
		for _, tg := range targets {
			for ci, c := range callers {
				allowed := []bool{tg.owner, tg.admin, tg.mgr}[ci]
				id := tg.setup()
				f.assign(id, f.reader, nil) // for the unassign action
				for _, ac := range actions {
					r := ac.do(c.tok, id)
					got = append(got, cell{tg.name, c.name, ac.name, fmt.Sprintf("%d %s", r.Status, r.code())})
					w := "403 PERMISSION_DENIED"
					if allowed {
						w = fmt.Sprintf("%d %s", ac.ok, ac.okCode)
					}
					want = append(want, cell{tg.name, c.name, ac.name, w})
				}
			}
		}
		if diff := cmp.Diff(want, got); diff != "" {
			t.Errorf("rank matrix (-want +got):\n%s", diff)
		}
		// Granting follows the same ranks: the user manager holds user:update,
		// but a role giving it ranks as admin, above the manager.
		updater := a.want(a.do("POST", "/api/v1/roles", f.x.OwnerToken, map[string]any{"name": "updater",
			"permissions": []map[string]any{{"permission": "user:update"}}}, nil), 201, "").str("id")
		plain := f.user("user")
		a.want(a.do("POST", "/api/v1/users/"+plain+"/roles", f.mgrTok, map[string]any{"roleId": updater}, nil), 403, "PERMISSION_DENIED")
		a.want(a.do("POST", "/api/v1/users/"+plain+"/roles", f.adminTok, map[string]any{"roleId": updater}, nil), 201, "")
	})
}

// TestAdminCannotBecomeOwner is the escalation chain of issue 9: an admin
// gives a user the built-in owner role through an assignment (or finds one
// who has it), resets that user's password, signs in as them and makes
// themselves owner. Every step must be refused.
func TestAdminCannotBecomeOwner(t *testing.T) {
	storetest.Each(t, func(t *testing.T, d store.Dialect) {
		f := newRankFixture(t, d, "chain")
		a, x := f.a, f.x
		ownerRole := rbac.BuiltinRoleID(rbac.RoleOwner)
		adminID := a.want(a.do("GET", "/api/v1/users?q=admin@chain.test", x.OwnerToken, nil, nil), 200, "").items()[0]["id"].(string)
		// 1. The admin cannot hand out the built-in owner role as an assignment.
		a.want(a.do("POST", "/api/v1/users/"+x.UserID+"/roles", f.adminTok, map[string]any{"roleId": ownerRole}, nil), 403, "")
		a.want(a.do("POST", "/api/v1/users/"+adminID+"/roles", f.adminTok, map[string]any{"roleId": ownerRole}, nil), 403, "")
		// 2. A co-owner made by an assignment outranks the admin: no password
		// reset, no 2FA reset, no suspension, no removal of the role.
		co := f.user("user")
		f.assign(co, ownerRole, nil)
		a.want(a.do("PATCH", "/api/v1/users/"+co, f.adminTok, map[string]any{"password": "taken-over-77"}, nil), 403, "PERMISSION_DENIED")
		a.want(a.do("POST", "/api/v1/auth/login", "", map[string]any{"email": fmt.Sprintf("target%d@chain.test", f.n), "password": "taken-over-77", "tenant": "chain"}, nil), 401, "INVALID_CREDENTIALS")
		a.want(a.do("DELETE", "/api/v1/users/"+co+"/2fa", f.adminTok, nil, nil), 403, "PERMISSION_DENIED")
		a.want(a.do("PATCH", "/api/v1/users/"+co, f.adminTok, map[string]any{"status": "suspended"}, nil), 403, "PERMISSION_DENIED")
		a.want(a.do("DELETE", "/api/v1/users/"+co+"/roles/"+ownerRole, f.adminTok, nil, nil), 403, "PERMISSION_DENIED")
		a.want(a.do("DELETE", "/api/v1/users/"+co, f.adminTok, nil, nil), 403, "PERMISSION_DENIED")
		// 3. Nor can the admin take the owner's role away or touch the owner.
		a.want(a.do("DELETE", "/api/v1/users/"+x.OwnerID+"/roles/"+ownerRole, f.adminTok, nil, nil), 403, "PERMISSION_DENIED")
		// The admin is still an admin, and the co-owner still an owner.
		roles := a.want(a.do("GET", "/api/v1/users/"+co+"/roles", x.OwnerToken, nil, nil), 200, "")
		if n := len(roles.Body["roles"].([]any)); n != 2 {
			t.Errorf("the co-owner's roles changed: %s", roles.Raw)
		}
		a.want(a.do("GET", "/api/v1/billing/balance", f.adminTok, nil, nil), 403, "PERMISSION_DENIED")
	})
}

// TestAPIKeyActsWithItsScopes: a key acts with the rank its scopes cover, so
// a narrow key cannot take over accounts to get what its scopes leave out;
// api_key:manage does not reach the keys of a higher-ranked user.
func TestAPIKeyActsWithItsScopes(t *testing.T) {
	storetest.Each(t, func(t *testing.T, d store.Dialect) {
		f := newRankFixture(t, d, "keyrank")
		a, x := f.a, f.x
		narrow := a.want(a.do("POST", "/api/v1/api-keys", x.OwnerToken, map[string]any{"name": "narrow",
			"scopes": []string{"user:read", "user:update", "user:create"}}, nil), 201, "").str("secret")
		full := a.want(a.do("POST", "/api/v1/api-keys", x.OwnerToken, map[string]any{"name": "full"}, nil), 201, "").str("secret")
		victim := f.user("admin")
		a.want(a.do("PATCH", "/api/v1/users/"+victim, narrow, map[string]any{"password": "taken-over-77"}, nil), 403, "PERMISSION_DENIED")
		a.want(a.do("POST", "/api/v1/users", narrow, map[string]any{"email": "puppet@keyrank.test", "password": pw, "roles": []string{"owner"}}, nil), 403, "PERMISSION_DENIED")
		a.want(a.do("PATCH", "/api/v1/users/"+victim, full, map[string]any{"password": "rotated-horse-77"}, nil), 200, "")
		// Revoking other users' keys follows the rank rules.
		ownerKey := a.want(a.do("POST", "/api/v1/api-keys", x.OwnerToken, map[string]any{"name": "owner's"}, nil), 201, "").str("apiKey", "id")
		userKey := a.want(a.do("POST", "/api/v1/api-keys", x.UserToken, map[string]any{"name": "user's"}, nil), 201, "").str("apiKey", "id")
		a.want(a.do("DELETE", "/api/v1/api-keys/"+ownerKey, f.adminTok, nil, nil), 403, "PERMISSION_DENIED")
		a.want(a.do("DELETE", "/api/v1/api-keys/"+userKey, f.adminTok, nil, nil), 204, "")
		a.want(a.do("DELETE", "/api/v1/api-keys/"+ownerKey, x.OwnerToken, nil, nil), 204, "")
	})
}
