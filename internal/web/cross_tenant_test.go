package web

import (
	"fmt"
	"net/http"
	"slices"
	"strings"
	"testing"

	"gorm.io/gorm"

	"github.com/tenantgate/tenantgate/internal/rbac"
	"github.com/tenantgate/tenantgate/internal/store"
	"github.com/tenantgate/tenantgate/internal/store/storetest"
)

// TestTenantsCannotReachEachOther signs up two tenants and, in both
// directions, tries every way one tenant's credential could name or touch
// the other's data.
func TestTenantsCannotReachEachOther(t *testing.T) {
	storetest.Each(t, func(t *testing.T, d store.Dialect) {
		a := newAPI(t, d)
		x, y := a.signup("acme"), a.signup("globex")
		for _, pair := range [][2]org{{x, y}, {y, x}} {
			me, other := pair[0], pair[1]
			t.Run(me.Slug+"->"+other.Slug, func(t *testing.T) {
				// Every way of naming the other tenant is refused as if it did not exist.
				namings := map[string]struct {
					path string
					h    hdr
				}{
					"X-Tenant-ID":   {"/api/v1/users", hdr{"X-Tenant-ID": other.ID}},
					"X-Tenant-Slug": {"/api/v1/users", hdr{"X-Tenant-Slug": other.Slug}},
					"path prefix":   {"/t/" + other.Slug + "/api/v1/users", nil},
					"subdomain":     {"/api/v1/users", hdr{"Host": other.Slug + "." + testBaseDomain}},
				}
				for name, n := range namings {
					for _, tok := range []string{me.OwnerToken, me.UserToken} {
						r := a.do("GET", n.path, tok, nil, n.h)
						if r.Status != 404 || r.code() != "TENANT_NOT_FOUND" {
							t.Errorf("%s naming %s: got %d %s, want 404 TENANT_NOT_FOUND", name, other.Slug, r.Status, r.code())
						}
					}
				}
				// Every tenant route of the route table, named at the other tenant by
				// header, refuses before touching anything.
				for _, rt := range (&server{}).routes() {
					if rt.access != tenantScoped && rt.access != authenticated {
						continue
					}
					path := strings.ReplaceAll(rt.path, "{id}", other.UserID)
					r := a.do(rt.method, path, me.OwnerToken, map[string]any{}, hdr{"X-Tenant-ID": other.ID})
					if r.Status != 404 || r.code() != "TENANT_NOT_FOUND" {
						t.Errorf("%s %s naming the other tenant: got %d %s, want 404 TENANT_NOT_FOUND", rt.method, rt.path, r.Status, r.code())
					}
				}
				// ?tenant= is for operators: for a tenant user it changes nothing.
				r := a.want(a.do("GET", "/api/v1/users?tenant="+other.Slug, me.OwnerToken, nil, nil), 200, "")
				for _, u := range r.items() {
					if u["tenantId"] != me.ID {
						t.Errorf("?tenant=%s listed a user of tenant %v", other.Slug, u["tenantId"])
					}
				}
				// The other tenant's user ids are unknown here.
				for _, c := range []struct {
					method, path string
					body         any
				}{
					{"GET", "/api/v1/users/" + other.UserID, nil},
					{"PATCH", "/api/v1/users/" + other.UserID, map[string]any{"firstName": "Hacked", "status": "suspended"}},
					{"DELETE", "/api/v1/users/" + other.UserID, nil},
				} {
					r := a.do(c.method, c.path, me.OwnerToken, c.body, nil)
					if r.Status != 404 || r.code() != "USER_NOT_FOUND" {
						t.Errorf("%s another tenant's user: got %d %s, want 404 USER_NOT_FOUND", c.method, r.Status, r.code())
					}
				}
				// Lists, the current tenant, usage and the audit log hold only our own.
				users := a.want(a.do("GET", "/api/v1/users", me.OwnerToken, nil, nil), 200, "").items()
				if len(users) != 2 {
					t.Errorf("user list has %d users, want our 2", len(users))
				}
				for _, u := range users {
					if u["tenantId"] != me.ID {
						t.Errorf("user list holds a user of tenant %v", u["tenantId"])
					}
				}
				if got := a.want(a.do("GET", "/api/v1/tenants/current", me.UserToken, nil, nil), 200, "").str("id"); got != me.ID {
					t.Errorf("current tenant = %s, want %s", got, me.ID)
				}
				events := a.want(a.do("GET", "/api/v1/audit?limit=100", me.OwnerToken, nil, nil), 200, "").items()
				if len(events) == 0 {
					t.Errorf("the audit log is empty; signup and user creation should be there")
				}
				for _, e := range events {
					if e["tenantId"] != me.ID {
						t.Errorf("audit log holds an event of tenant %v", e["tenantId"])
					}
				}
				// An operator-only filter does not widen a tenant's view.
				a.want(a.do("GET", "/api/v1/audit?tenantId="+other.ID, me.OwnerToken, nil, nil), 400, "INVALID_REQUEST")
				// Logging in with our email on the other tenant fails.
				a.want(a.do("POST", "/api/v1/auth/login", "", map[string]any{"email": me.OwnerEmail, "password": pw, "tenant": other.Slug}, nil), 401, "INVALID_CREDENTIALS")
				// Logging in at the other tenant's host while naming ours in the body is refused.
				a.want(a.do("POST", "/api/v1/auth/login", "", map[string]any{"email": me.OwnerEmail, "password": pw, "tenant": me.Slug},
					hdr{"Host": other.Slug + "." + testBaseDomain}), 404, "TENANT_NOT_FOUND")
			})
		}
		// Nothing above changed the other tenant: its user is as it was.
		for _, o := range []org{x, y} {
			r := a.want(a.do("GET", "/api/v1/users/"+o.UserID, o.OwnerToken, nil, nil), 200, "")
			if r.str("firstName") != "Mem" || r.str("status") != "active" {
				t.Errorf("tenant %s's user changed: %s", o.Slug, r.Raw)
			}
		}
	})
}

// TestResolutionChain proves each resolution source works for the tenant's
// own credential, and that an operator must name the tenant it acts in.
func TestResolutionChain(t *testing.T) {
	storetest.Each(t, func(t *testing.T, d store.Dialect) {
		a := newAPI(t, d)
		x := a.signup("initech")
		// tenant_domains is a platform table: only the platform role writes it.
		storetest.Must(t, a.store.Tx(store.WithTenantOnPlatform(t.Context(), x.ID, "test: bind a domain"), func(tx *gorm.DB) error {
			return a.tenants.AddVerifiedDomainTx(tx, x.ID, "portal.initech.example")
		}))
		for name, c := range map[string]struct {
			path string
			h    hdr
		}{
			"claim only":    {"/api/v1/tenants/current", nil},
			"custom domain": {"/api/v1/tenants/current", hdr{"Host": "portal.initech.example"}},
			"subdomain":     {"/api/v1/tenants/current", hdr{"Host": "initech." + testBaseDomain + ":443"}},
			"path prefix":   {"/t/initech/api/v1/tenants/current", nil},
			"X-Tenant-ID":   {"/api/v1/tenants/current", hdr{"X-Tenant-ID": x.ID}},
			"X-Tenant-Slug": {"/api/v1/tenants/current", hdr{"X-Tenant-Slug": "initech"}},
		} {
			r := a.do("GET", c.path, x.UserToken, nil, c.h)
			if r.Status != 200 || r.str("id") != x.ID {
				t.Errorf("%s: got %d %s, want tenant %s", name, r.Status, r.Raw, x.ID)
			}
		}
		a.want(a.do("GET", "/api/v1/tenants/current", x.UserToken, nil, hdr{"X-Tenant-ID": "not-a-uuid"}), 400, "INVALID_REQUEST")
		a.want(a.do("GET", "/api/v1/tenants/current", x.UserToken, nil, hdr{"X-Tenant-Slug": "nope-nope"}), 404, "TENANT_NOT_FOUND")
		// Anonymous resolution of an unknown tenant does not leak anything either.
		a.want(a.do("POST", "/api/v1/auth/login", "", map[string]any{"email": "a@b.test", "password": "x", "tenant": "no-such-org"}, nil), 404, "TENANT_NOT_FOUND")

		op := a.operator()
		a.want(a.do("GET", "/api/v1/users", op, nil, nil), 400, "INVALID_REQUEST") // which tenant?
		for name, h := range map[string]hdr{"header": {"X-Tenant-ID": x.ID}, "slug": {"X-Tenant-Slug": "initech"}} {
			users := a.want(a.do("GET", "/api/v1/users", op, nil, h), 200, "").items()
			if len(users) != 2 {
				t.Errorf("operator via %s sees %d users, want 2", name, len(users))
			}
		}
		if n := len(a.want(a.do("GET", "/api/v1/users?tenant=initech", op, nil, nil), 200, "").items()); n != 2 {
			t.Errorf("operator via ?tenant= sees %d users, want 2", n)
		}
		// Every crossing is audited in the tenant's own log.
		ev := a.want(a.do("GET", "/api/v1/audit?eventType=platform.cross_tenant_access", x.OwnerToken, nil, nil), 200, "").items()
		if len(ev) < 3 {
			t.Errorf("found %d cross-tenant audit events, want at least 3", len(ev))
		}
	})
}

// TestEveryRouteNeedsItsPermission walks the route table: a plain user is
// refused every route whose permission its role lacks, and anonymous
// callers are refused every non-public route.
func TestEveryRouteNeedsItsPermission(t *testing.T) {
	a := newAPI(t, store.SQLite)
	x := a.signup("umbrella")
	s := &server{}
	userPerms := rbac.PermissionsOf([]string{rbac.RoleUser})
	// An owner's API key narrowed to tenant:read must be refused everywhere else.
	narrow := a.want(a.do("POST", "/api/v1/api-keys", x.OwnerToken, map[string]any{"name": "narrow", "scopes": []string{"tenant:read"}}, nil), 201, "").str("secret")
	for _, rt := range s.routes() {
		path := strings.ReplaceAll(rt.path, "{id}", "01a20000-0000-7000-8000-000000000000")
		if rt.access != public {
			r := a.do(rt.method, path, "", nil, nil)
			if r.Status != http.StatusUnauthorized {
				t.Errorf("anonymous %s %s: got %d, want 401", rt.method, rt.path, r.Status)
			}
		}
		if rt.access != public && rt.perm == "" {
			t.Errorf("%s %s has no permission: every non-public route needs one", rt.method, rt.path)
		}
		if rt.access == serviceOnly {
			// Tenant credentials never open the service API.
			for _, tok := range []string{x.OwnerToken, narrow} {
				if r := a.do(rt.method, path, tok, map[string]any{}, nil); r.Status != http.StatusUnauthorized {
					t.Errorf("%s %s with a tenant credential: got %d, want 401", rt.method, rt.path, r.Status)
				}
			}
			continue
		}
		if rt.access != public && rt.perm != rbac.TenantRead {
			r := a.do(rt.method, path, narrow, map[string]any{}, nil)
			if r.Status != http.StatusForbidden || r.code() != "PERMISSION_DENIED" {
				t.Errorf("tenant:read key %s %s (needs %s): got %d %s, want 403 PERMISSION_DENIED", rt.method, rt.path, rt.perm, r.Status, r.code())
			}
		}
		if rt.perm == "" || slices.Contains(userPerms, string(rt.perm)) {
			continue
		}
		r := a.do(rt.method, path, x.UserToken, map[string]any{}, nil)
		if r.Status != http.StatusForbidden || r.code() != "PERMISSION_DENIED" {
			t.Errorf("plain user %s %s (needs %s): got %d %s, want 403 PERMISSION_DENIED", rt.method, rt.path, rt.perm, r.Status, r.code())
		}
	}
}

func TestErrorsAndBadInput(t *testing.T) {
	a := newAPI(t, store.SQLite)
	x := a.signup("hooli")
	cases := []struct {
		name, method, path string
		body               any
		status             int
		code, field        string
	}{
		{"malformed JSON", "POST", "/api/v1/users", `{"email":`, 400, "INVALID_REQUEST", "body"},
		{"unknown field", "POST", "/api/v1/users", `{"email":"a@b.test","pasword":"x"}`, 400, "INVALID_REQUEST", "pasword"},
		{"wrong type", "POST", "/api/v1/users", `{"email":42}`, 400, "INVALID_REQUEST", "email"},
		{"two objects", "POST", "/api/v1/users", `{}{}`, 400, "INVALID_REQUEST", "body"},
		{"empty body", "POST", "/api/v1/users", ``, 400, "INVALID_REQUEST", "body"},
		{"oversized", "POST", "/api/v1/users", `{"firstName":"` + strings.Repeat("a", MaxBodyBytes) + `"}`, 400, "INVALID_REQUEST", "body"},
		{"bad email", "POST", "/api/v1/users", map[string]any{"email": "nope", "password": pw}, 400, "INVALID_REQUEST", "email"},
		{"weak password", "POST", "/api/v1/users", map[string]any{"email": "a@b.test", "password": "short"}, 400, "INVALID_REQUEST", "password"},
		{"unknown role", "POST", "/api/v1/users", map[string]any{"email": "a@b.test", "password": pw, "roles": []string{"god"}}, 400, "INVALID_REQUEST", "roles"},
		{"duplicate email", "POST", "/api/v1/users", map[string]any{"email": x.UserEmail, "password": pw}, 409, "USER_ALREADY_EXISTS", "email"},
		{"bad limit", "GET", "/api/v1/users?limit=1000", nil, 400, "INVALID_REQUEST", "limit"},
		{"bad cursor", "GET", "/api/v1/users?cursor=zzz", nil, 400, "INVALID_REQUEST", "cursor"},
		{"bad status filter", "GET", "/api/v1/users?status=weird", nil, 400, "INVALID_REQUEST", "status"},
		{"bad time", "GET", "/api/v1/audit?from=yesterday", nil, 400, "INVALID_REQUEST", "from"},
		{"bad timezone", "PATCH", "/api/v1/tenants/current/settings", map[string]any{"timezone": "Mars/Base"}, 400, "INVALID_REQUEST", "settings.timezone"},
		{"bad colour", "PATCH", "/api/v1/tenants/current/branding", map[string]any{"primaryColor": "red"}, 400, "INVALID_REQUEST", "branding.primaryColor"},
		{"unknown route", "GET", "/api/v1/nope", nil, 404, "NOT_FOUND", ""},
		{"wrong method", "PUT", "/api/v1/users", nil, 405, "METHOD_NOT_ALLOWED", ""},
	}
	for _, c := range cases {
		r := a.do(c.method, c.path, x.OwnerToken, c.body, nil)
		if r.Status != c.status || r.code() != c.code {
			t.Errorf("%s: got %d %s, want %d %s; %s", c.name, r.Status, r.code(), c.status, c.code, r.Raw)
			continue
		}
		e := r.Body["error"].(map[string]any)
		for _, k := range []string{"message", "requestId", "timestamp", "service"} {
			if s, _ := e[k].(string); s == "" {
				t.Errorf("%s: error has no %s: %s", c.name, k, r.Raw)
			}
		}
		if c.field != "" {
			fields, _ := e["details"].(map[string]any)["fields"].(map[string]any)
			if _, ok := fields[c.field]; !ok {
				t.Errorf("%s: details name %v, want field %q", c.name, fields, c.field)
			}
		}
	}
	// Signup validation names each bad field, and a taken slug is a conflict.
	r := a.want(a.do("POST", "/api/v1/tenants/signup", "", map[string]any{"slug": "Admin", "name": "", "ownerEmail": "x", "ownerPassword": "1"}, nil), 400, "INVALID_REQUEST")
	if !strings.Contains(r.Raw, `"slug"`) || !strings.Contains(r.Raw, `"name"`) {
		t.Errorf("signup errors should name slug and name: %s", r.Raw)
	}
	a.want(a.do("POST", "/api/v1/tenants/signup", "", map[string]any{"slug": "hooli", "name": "Again", "ownerEmail": "z@z.test", "ownerPassword": pw}, nil), 409, "TENANT_ALREADY_EXISTS")
	// X-Request-ID is echoed when well-formed, replaced when not.
	if got := a.do("GET", "/healthz", "", nil, hdr{"X-Request-ID": "abc-123"}).Header.Get("X-Request-ID"); got != "abc-123" {
		t.Errorf("X-Request-ID = %q, want the caller's abc-123", got)
	}
	if got := a.do("GET", "/healthz", "", nil, hdr{"X-Request-ID": "bad id\t<x>"}).Header.Get("X-Request-ID"); !strings.HasPrefix(got, "req_") {
		t.Errorf("X-Request-ID = %q, want a generated req_ id", got)
	}
	h := a.do("GET", "/healthz", "", nil, hdr{"X-Trace-ID": "0af7651916cd43dd8448eb211c80319c", "X-Span-ID": "b7ad6b7169203331"}).Header
	if h.Get("X-Trace-ID") != "0af7651916cd43dd8448eb211c80319c" || h.Get("X-Parent-Span-ID") != "b7ad6b7169203331" || h.Get("X-Span-ID") == "" {
		t.Errorf("trace headers not propagated: %v", h)
	}
	_ = fmt.Sprint()
}

// TestOddBytes sends text PostgreSQL cannot store (NUL, invalid UTF-8) in
// bodies, query parameters and headers: always a 4xx or a clean success,
// never a 500.
func TestOddBytes(t *testing.T) {
	storetest.Each(t, func(t *testing.T, d store.Dialect) {
		a := newAPI(t, d)
		x := a.signup("oddbytes")
		for _, c := range []struct{ method, path, body string }{
			{"POST", "/api/v1/tenants/signup", `{"slug":"nul-org","name":"a\u0000b","ownerEmail":"n@n.test","ownerPassword":"correct-horse-9"}`},
			{"PATCH", "/api/v1/users/me", `{"lastName":"x\u0000"}`},
			{"PATCH", "/api/v1/users/me", "{\"lastName\":\"\xff\xfe\"}"},
			{"PATCH", "/api/v1/tenants/current/branding", `{"customCss":"a{}\u0000"}`},
			{"GET", "/api/v1/users?q=%00", ""},
			{"GET", "/api/v1/users?q=%ff", ""},
			{"GET", "/api/v1/audit?resource=%ff&actorId=%00", ""},
		} {
			var body any
			if c.body != "" {
				body = c.body
			}
			r := a.do(c.method, c.path, x.OwnerToken, body, nil)
			if r.Status != 400 || r.code() != "INVALID_REQUEST" {
				t.Errorf("%s %s %q: got %d %s, want 400 INVALID_REQUEST", c.method, c.path, c.body, r.Status, r.code())
			}
		}
		// A User-Agent that is not UTF-8, or long enough to be cut inside a character.
		for _, ua := range []string{"bad\xff\xfeagent", strings.Repeat("é", 400)} {
			r := a.do("POST", "/api/v1/auth/login", "", map[string]any{"email": x.OwnerEmail, "password": pw, "tenant": "oddbytes"}, hdr{"User-Agent": ua})
			if r.Status != 200 {
				t.Errorf("login with User-Agent %q…: got %d %s", ua[:8], r.Status, r.Raw)
			}
		}
	})
}
