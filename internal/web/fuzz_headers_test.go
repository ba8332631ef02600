package web

import (
	"net/http"
	"net/http/httptest"
	"testing"

	"github.com/tenantgate/tenantgate/internal/store"
)

// FuzzRequestHeaders sends arbitrary credential and tenant headers through
// the whole pipeline: the answer is never a server error.
func FuzzRequestHeaders(f *testing.F) {
	a := newAPI(f, store.SQLite)
	x := a.signup("fuzzhdr")
	h := NewServer(Deps{Store: a.store, Tenants: a.tenants, Identity: a.ident, RBAC: a.rbac, OIDC: a.oidc, Quota: a.quota, BaseDomain: testBaseDomain,
		PublicURL: "http://tenantgate.test", ServiceTokens: []ServiceToken{{Name: "billing", Token: testServiceToken}}})
	for _, seed := range [][5]string{
		{"Bearer " + x.OwnerToken, "", "", "", "/api/v1/users"},
		{"Bearer tg_" + "AAAA", x.ID, "", "", "/api/v1/tenants/current"},
		{"bearer  ", "", "fuzzhdr", "", "/api/v1/users/me"},
		{"Basic dXNlcjpwYXNz", "not-a-uuid", "FUZZHDR", "", "/t/fuzzhdr/api/v1/users"},
		{"Bearer a.b.c", "", "", testServiceToken, "/internal/users/" + x.UserID},
		{"Bearer eyJhbGciOiJub25lIn0.eyJpc3MiOiJodHRwOi8vZXZpbCJ9.", "", "", "x", "/api/v1/audit"},
	} {
		f.Add(seed[0], seed[1], seed[2], seed[3], seed[4])
	}
	f.Fuzz(func(t *testing.T, authz, tenantID, tenantSlug, serviceToken, path string) {
		if len(path) == 0 || path[0] != '/' {
			path = "/" + path
		}
		req, err := http.NewRequest(http.MethodGet, "http://tenantgate.test"+path, nil)
		if err != nil {
			return // not a request a client could send
		}
		for k, v := range map[string]string{"Authorization": authz, "X-Tenant-ID": tenantID, "X-Tenant-Slug": tenantSlug,
			"X-Service-Token": serviceToken, "X-Service-Name": "billing"} {
			req.Header[k] = []string{v}
		}
		w := httptest.NewRecorder()
		h.ServeHTTP(w, req)
		if w.Code >= 500 {
			t.Fatalf("GET %q with Authorization %q, X-Tenant-ID %q, X-Tenant-Slug %q: %d %s", path, authz, tenantID, tenantSlug, w.Code, w.Body)
		}
	})
}
