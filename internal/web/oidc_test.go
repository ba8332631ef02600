package web

import (
	"context"
	"crypto/rsa"
	"io"
	"net/http"
	"net/http/cookiejar"
	"net/http/httptest"
	"net/url"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/lestrrat-go/jwx/v3/jwa"
	"github.com/lestrrat-go/jwx/v3/jwk"
	"github.com/lestrrat-go/jwx/v3/jwt"
	zoidc "github.com/zitadel/oidc/v3/pkg/oidc"
	"github.com/zitadel/oidc/v3/pkg/op"
	"golang.org/x/text/language"

	"github.com/zitadel/oidc/v3/example/server/exampleop"
	"github.com/zitadel/oidc/v3/example/server/storage"

	"github.com/tenantgate/tenantgate/internal/identity/oidc"
	"github.com/tenantgate/tenantgate/internal/store"
	"github.com/tenantgate/tenantgate/internal/store/storetest"
)

// idpUser is a user of the test identity provider, with the claims it asserts.
type idpUser struct {
	storage.User
	org   string
	roles []string
}

type idpUsers struct {
	mu    sync.Mutex
	users map[string]*idpUser
}

func (u *idpUsers) GetUserByID(id string) *storage.User {
	u.mu.Lock()
	defer u.mu.Unlock()
	if x, ok := u.users[id]; ok {
		return &x.User
	}
	return nil
}

func (u *idpUsers) GetUserByUsername(name string) *storage.User {
	u.mu.Lock()
	defer u.mu.Unlock()
	for _, x := range u.users {
		if x.Username == name {
			return &x.User
		}
	}
	return nil
}

func (u *idpUsers) ExampleClientID() string { return "service" }

// idpStorage is the library's example storage with the claims a real
// provider (Zitadel) puts into ID tokens: email, name, organisation, roles.
type idpStorage struct {
	*storage.Storage
	users *idpUsers
}

func (s *idpStorage) SetUserinfoFromRequest(ctx context.Context, ui *zoidc.UserInfo, req op.IDTokenRequest, scopes []string) error {
	if err := s.Storage.SetUserinfoFromRequest(ctx, ui, req, scopes); err != nil {
		return err
	}
	s.users.mu.Lock()
	defer s.users.mu.Unlock()
	u := s.users.users[req.GetSubject()]
	if u == nil {
		return nil
	}
	ui.Email, ui.EmailVerified = u.Email, zoidc.Bool(u.EmailVerified)
	ui.GivenName, ui.FamilyName, ui.Name = u.FirstName, u.LastName, u.FirstName+" "+u.LastName
	if u.org != "" {
		ui.AppendClaims("urn:zitadel:iam:org:id", u.org)
	}
	if len(u.roles) > 0 {
		ui.AppendClaims("roles", u.roles)
	}
	return nil
}

const idpClientID, idpClientSecret = "tenantgate", "idp-client-secret"

// testIdP runs an OpenID Provider in-process and returns its issuer URL.
func testIdP(t *testing.T, redirectURI string, users ...*idpUser) (string, *idpStorage) {
	t.Helper()
	m := map[string]*idpUser{}
	for _, u := range users {
		m[u.ID] = u
	}
	us := &idpUsers{users: m}
	st := &idpStorage{Storage: storage.NewStorageWithClients(us, map[string]*storage.Client{
		idpClientID: storage.WebClient(idpClientID, idpClientSecret, redirectURI)}), users: us}
	var h http.Handler
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { h.ServeHTTP(w, r) }))
	t.Cleanup(srv.Close)
	h = exampleop.SetupServer(srv.URL, st, nil, false)
	return srv.URL, st
}

func person(id, email, org string, roles ...string) *idpUser {
	return &idpUser{User: storage.User{ID: id, Username: id, Password: "idp-password", FirstName: "Fed", LastName: strings.ToUpper(id),
		Email: email, EmailVerified: true, PreferredLanguage: language.English}, org: org, roles: roles}
}

// ssoLogin runs the browser's part of the flow and returns the final answer.
func ssoLogin(t *testing.T, a *api, slug, username string) resp {
	t.Helper()
	return ssoLoginQuery(t, a, slug, "", username)
}

// ssoLoginQuery is ssoLogin with a query on the login URL (?provider=, ?email=).
func ssoLoginQuery(t *testing.T, a *api, slug, query, username string) resp {
	t.Helper()
	jar, _ := cookiejar.New(nil)
	c := &http.Client{Jar: jar, Timeout: 20 * time.Second}
	u := a.url + "/api/v1/auth/oidc/" + slug + "/login"
	if query != "" {
		u += "?" + query
	}
	res, err := c.Get(u)
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(res.Body)
	res.Body.Close()
	id := res.Request.URL.Query().Get("authRequestID")
	if id == "" {
		return resp{Status: res.StatusCode, Raw: string(body)} // did not reach the provider's login page
	}
	login := *res.Request.URL
	login.RawQuery = ""
	res, err = c.PostForm(login.String(), url.Values{"username": {username}, "password": {"idp-password"}, "id": {id}})
	if err != nil {
		t.Fatal(err)
	}
	defer res.Body.Close()
	raw, _ := io.ReadAll(res.Body)
	out := resp{Status: res.StatusCode, Header: res.Header, Raw: string(raw)}
	_ = jsonInto(raw, &out.Body)
	return out
}

func TestSSOWithTenantProvider(t *testing.T) {
	storetest.Each(t, func(t *testing.T, d store.Dialect) {
		a := newAPI(t, d)
		x, y := a.signup("hooli-sso"), a.signup("pied-piper")
		issuer, _ := testIdP(t, a.url+"/api/v1/auth/oidc/callback",
			person("alice", "alice@hooli.test", ""), person("mallory", "mallory@evil.test", ""), person("xowner", x.OwnerEmail, ""),
			person("xmember", x.UserEmail, ""))
		// Not configured yet.
		if r := ssoLogin(t, a, "hooli-sso", "alice"); r.Status != 404 {
			t.Fatalf("login without a provider: %d %s", r.Status, r.Raw)
		}
		// Configure; the secret is never shown back.
		a.want(a.do("POST", "/api/v1/identity-providers", x.OwnerToken, map[string]any{"name": "Hooli IdP", "issuer": "http://idp.example.com",
			"clientId": "x", "clientSecret": "y"}, nil), 400, "INVALID_REQUEST") // plain http off loopback
		a.want(a.do("POST", "/api/v1/identity-providers", x.UserToken, map[string]any{"name": "n"}, nil), 403, "PERMISSION_DENIED")
		cr := a.want(a.do("POST", "/api/v1/identity-providers", x.OwnerToken, map[string]any{"name": "Hooli IdP", "issuer": issuer,
			"clientId": idpClientID, "clientSecret": idpClientSecret, "allowedDomains": []string{"hooli.test", "hooli-sso.test"}, "defaultRole": "billing_manager"}, nil), 201, "")
		list := a.want(a.do("GET", "/api/v1/identity-providers", x.OwnerToken, nil, nil), 200, "")
		if strings.Contains(cr.Raw+list.Raw, idpClientSecret) || list.str("redirectUri") != a.url+"/api/v1/auth/oidc/callback" {
			t.Errorf("provider answers: %s / %s", cr.Raw, list.Raw)
		}
		if n := len(a.want(a.do("GET", "/api/v1/identity-providers", y.OwnerToken, nil, nil), 200, "").items()); n != 0 {
			t.Errorf("tenant y sees %d providers of x", n)
		}
		// Alice signs in: a user is created just in time, with the default role.
		r := ssoLogin(t, a, "hooli-sso", "alice")
		if r.Status != 200 || r.str("accessToken") == "" {
			t.Fatalf("sso login: %d %s", r.Status, r.Raw)
		}
		me := a.want(a.do("GET", "/api/v1/users/me", r.str("accessToken"), nil, nil), 200, "")
		if me.str("email") != "alice@hooli.test" || me.str("tenantId") != x.ID || !strings.Contains(me.Raw, `"billing_manager"`) {
			t.Errorf("the federated user: %s", me.Raw)
		}
		// Again: the same user, through the identity link.
		r2 := ssoLogin(t, a, "hooli-sso", "alice")
		if got := a.want(a.do("GET", "/api/v1/users/me", r2.str("accessToken"), nil, nil), 200, "").str("id"); got != me.str("id") {
			t.Errorf("second sign-in mapped to %s, want %s", got, me.str("id"))
		}
		// A verified email of an existing user links to that user...
		if got := a.want(a.do("GET", "/api/v1/users/me", ssoLogin(t, a, "hooli-sso", "xmember").str("accessToken"), nil, nil), 200, "").str("id"); got != x.UserID {
			t.Errorf("the member's federated sign-in became %s, want the member", got)
		}
		// ...but never an owner's account (the provider is configured by the tenant's own admins).
		if r := ssoLogin(t, a, "hooli-sso", "xowner"); r.Status != 403 || !strings.Contains(r.Raw, "OIDC_ACCESS_DENIED") {
			t.Errorf("an owner's account was linked by email: %d %s", r.Status, r.Raw)
		}
		// Domain restriction.
		if r := ssoLogin(t, a, "hooli-sso", "mallory"); r.Status != 403 || !strings.Contains(r.Raw, "OIDC_ACCESS_DENIED") {
			t.Errorf("a foreign domain: %d %s", r.Status, r.Raw)
		}
		// The other tenant has no provider: its users cannot be created through x's.
		if r := ssoLogin(t, a, "pied-piper", "alice"); r.Status != 404 {
			t.Errorf("tenant y without a provider: %d %s", r.Status, r.Raw)
		}
		// A callback with a forged state or no cookie fails.
		a.want(a.do("GET", "/api/v1/auth/oidc/callback?code=abc&state=forged", "", nil, nil), 401, "OIDC_STATE_INVALID")
		a.want(a.do("GET", "/api/v1/auth/oidc/callback?code=abc&state=forged", "", nil, hdr{"Cookie": oidcCookie + "=v1:garbage"}), 401, "OIDC_STATE_INVALID")
		// Audit: the link and the login.
		if ev := a.want(a.do("GET", "/api/v1/audit?eventType=user.identity_linked", x.OwnerToken, nil, nil), 200, "").items(); len(ev) != 2 {
			t.Errorf("identity links audited: %d, want 2", len(ev))
		}
	})
}

func TestSSOWithPlatformProvider(t *testing.T) {
	var issuer string
	var idp *idpStorage
	a := newAPIWithPlatformIdPLate(t, func(callback string) *oidc.Platform {
		issuer, idp = testIdP(t, callback, person("bob", "bob@initech.test", "org-initech", "admin"), person("eve", "eve@globex.test", "org-globex"))
		return &oidc.Platform{Issuer: issuer, ClientID: idpClientID, ClientSecret: idpClientSecret, RolesClaim: "roles", JIT: true}
	})
	x, y := a.signup("initech-z"), a.signup("globex-z")
	op := a.operator()
	// A tenant not linked to an organisation has no platform sign-on.
	if r := ssoLogin(t, a, "initech-z", "bob"); r.Status != 404 {
		t.Fatalf("unlinked tenant: %d %s", r.Status, r.Raw)
	}
	a.want(a.do("PATCH", "/api/v1/admin/tenants/"+x.ID, op, map[string]any{"externalOrgId": "org-initech"}, nil), 200, "")
	a.want(a.do("PATCH", "/api/v1/admin/tenants/"+y.ID, op, map[string]any{"externalOrgId": "org-initech"}, nil), 409, "TENANT_ALREADY_EXISTS")
	a.want(a.do("PATCH", "/api/v1/admin/tenants/"+y.ID, op, map[string]any{"externalOrgId": "org-globex"}, nil), 200, "")
	// Bob of org-initech signs in to initech with the role his claims give.
	r := ssoLogin(t, a, "initech-z", "bob")
	if r.Status != 200 {
		t.Fatalf("platform sso: %d %s", r.Status, r.Raw)
	}
	me := a.want(a.do("GET", "/api/v1/users/me", r.str("accessToken"), nil, nil), 200, "")
	if me.str("tenantId") != x.ID || !strings.Contains(me.Raw, `"admin"`) {
		t.Errorf("bob: %s", me.Raw)
	}
	// Eve of org-globex cannot sign in to initech.
	if r := ssoLogin(t, a, "initech-z", "eve"); r.Status != 403 {
		t.Errorf("another organisation's user: %d %s", r.Status, r.Raw)
	}

	// Bearer tokens of the platform issuer: signed with the provider's key.
	key, err := idp.SigningKey(context.Background())
	storetest.Must(t, err)
	sign := func(claims map[string]any, kid string) string {
		k, err := jwk.Import(key.Key().(*rsa.PrivateKey))
		storetest.Must(t, err)
		_ = k.Set(jwk.KeyIDKey, kid)
		b := jwt.NewBuilder().Issuer(issuer).Audience([]string{idpClientID}).IssuedAt(time.Now()).Expiration(time.Now().Add(5 * time.Minute))
		for name, v := range claims {
			b = b.Claim(name, v)
		}
		tok, err := b.Build()
		storetest.Must(t, err)
		raw, err := jwt.Sign(tok, jwt.WithKey(jwa.RS256(), k))
		storetest.Must(t, err)
		return string(raw)
	}
	good := sign(map[string]any{"sub": "bob", "email": "bob@initech.test", "email_verified": true, "urn:zitadel:iam:org:id": "org-initech"}, key.ID())
	if got := a.want(a.do("GET", "/api/v1/users/me", good, nil, nil), 200, "").str("id"); got != me.str("id") {
		t.Errorf("external bearer mapped to %s, want bob's user", got)
	}
	// ...but not into another tenant, not with an unknown kid, not for another audience.
	a.want(a.do("GET", "/api/v1/users/me", good, nil, hdr{"X-Tenant-ID": y.ID}), 404, "TENANT_NOT_FOUND")
	a.want(a.do("GET", "/api/v1/users/me", sign(map[string]any{"sub": "bob", "urn:zitadel:iam:org:id": "org-initech"}, "unknown-kid"), nil, nil), 401, "TOKEN_INVALID")
	evil := sign(map[string]any{"sub": "bob", "urn:zitadel:iam:org:id": "org-initech", "aud": "someone-else"}, key.ID())
	a.want(a.do("GET", "/api/v1/users/me", evil, nil, nil), 401, "TOKEN_INVALID")
	unknownOrg := sign(map[string]any{"sub": "bob", "urn:zitadel:iam:org:id": "org-nowhere"}, key.ID())
	a.want(a.do("GET", "/api/v1/users/me", unknownOrg, nil, nil), 401, "TOKEN_INVALID")
}
