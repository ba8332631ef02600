package web

import (
	"encoding/base64"
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/tenantgate/tenantgate/internal/egress"
	"github.com/tenantgate/tenantgate/internal/identity/oidc"
	"github.com/tenantgate/tenantgate/internal/store"
	"github.com/tenantgate/tenantgate/internal/store/storetest"
)

// fakeIdP serves an OpenID discovery document and an (empty) JWKS on
// 127.0.0.1 and counts what it is asked. jwksAt, when set, is the jwks_uri
// its discovery names instead of its own.
type fakeIdP struct {
	srv             *httptest.Server
	discovery, jwks atomic.Int64
	down            atomic.Bool // answer 500 to everything
	jwksAt          string
}

func newFakeIdP(t *testing.T, jwksAt string) *fakeIdP {
	f := &fakeIdP{jwksAt: jwksAt}
	f.srv = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		switch r.URL.Path {
		case "/.well-known/openid-configuration":
			f.discovery.Add(1)
		case "/jwks":
			f.jwks.Add(1)
		}
		if f.down.Load() {
			http.Error(w, "down", http.StatusInternalServerError)
			return
		}
		switch r.URL.Path {
		case "/.well-known/openid-configuration":
			jwks := f.srv.URL + "/jwks"
			if f.jwksAt != "" {
				jwks = f.jwksAt
			}
			w.Header().Set("Content-Type", "application/json")
			_ = json.NewEncoder(w).Encode(map[string]any{"issuer": f.srv.URL, "authorization_endpoint": f.srv.URL + "/authorize",
				"token_endpoint": f.srv.URL + "/token", "userinfo_endpoint": f.srv.URL + "/userinfo", "jwks_uri": jwks,
				"response_types_supported": []string{"code"}, "subject_types_supported": []string{"public"},
				"id_token_signing_alg_values_supported": []string{"RS256"}})
		case "/jwks":
			w.Header().Set("Content-Type", "application/json")
			_, _ = w.Write([]byte(`{"keys":[]}`))
		default:
			http.NotFound(w, r)
		}
	}))
	t.Cleanup(f.srv.Close)
	return f
}

func (f *fakeIdP) port() uint16 {
	return netip.MustParseAddrPort(strings.TrimPrefix(f.srv.URL, "http://")).Port()
}

// junkToken is an unsigned token naming issuer, for our client id, with a
// key id nobody has: it passes every check before the signature's.
func junkToken(issuer string, i int) string {
	enc := func(v any) string { raw, _ := json.Marshal(v); return base64.RawURLEncoding.EncodeToString(raw) }
	return enc(map[string]any{"alg": "RS256", "typ": "JWT", "kid": fmt.Sprintf("unknown-%d", i)}) + "." +
		enc(map[string]any{"iss": issuer, "sub": "someone", "aud": idpClientID, "iat": time.Now().Unix(), "exp": time.Now().Add(time.Hour).Unix()}) +
		"." + base64.RawURLEncoding.EncodeToString([]byte("not a signature"))
}

func (a *api) addIdP(o org, issuer string) {
	a.t.Helper()
	a.want(a.do("POST", "/api/v1/identity-providers", o.OwnerToken, map[string]any{"name": "idp", "issuer": issuer,
		"clientId": idpClientID, "clientSecret": idpClientSecret}, nil), 201, "")
}

// TestTenantIdPOnAnInternalAddressIsRefused: a tenant's provider on
// 127.0.0.1 is never contacted, by an anonymous bearer token naming it or by
// a login, unless the operator allows private addresses.
func TestTenantIdPOnAnInternalAddressIsRefused(t *testing.T) {
	storetest.Each(t, func(t *testing.T, d store.Dialect) {
		a := newAPI(t, d)
		a.oidc.SetEgress(egress.Policy{}) // the operator's switch is off
		x := a.signup("ssrf")
		idp := newFakeIdP(t, "")
		a.addIdP(x, idp.srv.URL)
		tenant := hdr{"X-Tenant-Slug": x.Slug}
		r := a.want(a.do("GET", "/api/v1/users/me", junkToken(idp.srv.URL, 0), nil, tenant), 503, "IDP_UNAVAILABLE")
		if !strings.Contains(r.str("error", "message"), "internal") {
			t.Errorf("the refusal does not say why: %s", r.Raw)
		}
		a.want(a.do("GET", "/api/v1/auth/oidc/"+x.Slug+"/login", "", nil, nil), 503, "IDP_UNAVAILABLE")
		if n := idp.discovery.Load() + idp.jwks.Load(); n != 0 {
			t.Fatalf("the internal provider was asked %d times", n)
		}
		// The operator allows it: the provider is read, and the junk token refused.
		a.oidc.SetEgress(egress.Policy{AllowPrivate: true})
		a.want(a.do("GET", "/api/v1/users/me", junkToken(idp.srv.URL, 1), nil, tenant), 401, "TOKEN_INVALID")
		if idp.discovery.Load() != 1 || idp.jwks.Load() != 1 {
			t.Errorf("with private addresses allowed: %d discovery and %d JWKS fetches, want 1 and 1", idp.discovery.Load(), idp.jwks.Load())
		}
	})
}

// TestAnonymousTokensDoNotMultiplyFetches: 50 junk tokens naming a tenant's
// provider, each with a new key id, cost one discovery and one JWKS fetch;
// while the provider is down, 50 more cost one attempt. Once oidc.FetchEvery
// has passed (on a fake clock), the next junk token costs one more of each.
func TestAnonymousTokensDoNotMultiplyFetches(t *testing.T) {
	storetest.Each(t, func(t *testing.T, d store.Dialect) {
		a := newAPI(t, d)
		var clock atomic.Int64
		clock.Store(time.Now().UnixNano())
		a.oidc.SetClock(func() time.Time { return time.Unix(0, clock.Load()).UTC() })
		x := a.signup("junk")
		up, down := newFakeIdP(t, ""), newFakeIdP(t, "")
		down.down.Store(true)
		a.addIdP(x, up.srv.URL)
		a.addIdP(x, down.srv.URL)
		tenant := hdr{"X-Tenant-Slug": x.Slug}
		for i := range 50 {
			a.want(a.do("GET", "/api/v1/users/me", junkToken(up.srv.URL, i), nil, tenant), 401, "TOKEN_INVALID")
			a.want(a.do("GET", "/api/v1/users/me", junkToken(down.srv.URL, i), nil, tenant), 503, "IDP_UNAVAILABLE")
		}
		got := [3]int64{up.discovery.Load(), up.jwks.Load(), down.discovery.Load() + down.jwks.Load()}
		if got != [3]int64{1, 1, 1} {
			t.Errorf("fetches (discovery, JWKS, of the provider that is down) = %v, want [1 1 1]", got)
		}
		clock.Add(int64(oidc.FetchEvery))
		for i := range 5 {
			a.want(a.do("GET", "/api/v1/users/me", junkToken(up.srv.URL, 100+i), nil, tenant), 401, "TOKEN_INVALID")
			a.want(a.do("GET", "/api/v1/users/me", junkToken(down.srv.URL, 100+i), nil, tenant), 503, "IDP_UNAVAILABLE")
		}
		got = [3]int64{up.discovery.Load(), up.jwks.Load(), down.discovery.Load() + down.jwks.Load()}
		if got != [3]int64{1, 2, 2} {
			t.Errorf("after %s: fetches = %v, want [1 2 2] (the JWKS and the failed discovery once more)", oidc.FetchEvery, got)
		}
	})
}

// TestPublicIssuerNamingAnInternalJWKSIsRefused: a provider at a public
// address whose discovery names an internal jwks_uri gets no key fetched.
func TestPublicIssuerNamingAnInternalJWKSIsRefused(t *testing.T) {
	storetest.Each(t, func(t *testing.T, d store.Dialect) {
		a := newAPI(t, d)
		inside := newFakeIdP(t, "")
		idp := newFakeIdP(t, inside.srv.URL+"/jwks")
		public := idp.port()
		// 127.0.0.1 stands in for the internet only on the provider's port.
		a.oidc.SetEgress(egress.Policy{Check: func(ap netip.AddrPort) error {
			if ap.Port() == public {
				return nil
			}
			return &egress.InternalAddressError{Addr: ap.String()}
		}})
		x := a.signup("pivot")
		a.addIdP(x, idp.srv.URL)
		a.want(a.do("GET", "/api/v1/users/me", junkToken(idp.srv.URL, 0), nil, hdr{"X-Tenant-Slug": x.Slug}), 401, "TOKEN_INVALID")
		if idp.discovery.Load() != 1 || inside.jwks.Load()+inside.discovery.Load() != 0 {
			t.Errorf("discovery fetched %d times (want 1); the internal service was asked %d times (want 0)",
				idp.discovery.Load(), inside.jwks.Load()+inside.discovery.Load())
		}
	})
}
