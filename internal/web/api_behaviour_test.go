package web

import (
	"slices"
	"testing"

	"github.com/google/go-cmp/cmp"

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
