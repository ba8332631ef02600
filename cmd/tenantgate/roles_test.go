package main

import (
	"bytes"
	"context"
	"strings"
	"testing"

	"github.com/tenantgate/tenantgate/internal/store"
	"github.com/tenantgate/tenantgate/internal/store/storetest"
)

// Single-role mode on PostgreSQL: without a platform URL, migrate gives the
// server's role the platform role's grants (it writes the platform tables
// too) and says so, and the server then does tenant and platform work with
// that one role: sign-up, users, an operator's login and a plan change.
func TestSingleRoleModeOnPostgres(t *testing.T) {
	if len(storetest.Dialects()) < 2 {
		t.Skip("PostgreSQL only: set " + storetest.EnvPostgres)
	}
	db := storetest.New(t, store.Postgres)
	// A role that is not yet registered as the platform role serves alone.
	env := map[string]string{"TENANTGATE_DATA_DIR": t.TempDir(), "TENANTGATE_PASSWORD_PROFILE": "fast",
		"TENANTGATE_DATABASE_URL": db.URL, "TENANTGATE_MIGRATION_DATABASE_URL": db.OwnerURL,
		"TENANTGATE_BOOTSTRAP_OPERATOR_EMAIL": "ops@example.test", "TENANTGATE_BOOTSTRAP_OPERATOR_PASSWORD": "operator-pass-1"}
	getenv := func(k string) string { return env[k] }
	var out, errOut bytes.Buffer
	if err := run(context.Background(), []string{"migrate"}, getenv, strings.NewReader(""), &out, &errOut); err != nil {
		t.Fatalf("migrate: %v\n%s", err, errOut.String())
	}
	if !strings.Contains(out.String(), "single-role mode: it gets the platform role's grants") {
		t.Errorf("migrate did not say it runs in single-role mode: %q", out.String())
	}
	url, _ := start(t, getenv)
	st, su := call(t, "POST", url+"/api/v1/tenants/signup", "", map[string]any{"slug": "solo", "name": "Solo",
		"ownerEmail": "ann@solo.test", "ownerPassword": "correct-horse-1"})
	if st != 201 {
		t.Fatalf("signup: %d %v", st, su)
	}
	access := su["tokens"].(map[string]any)["accessToken"].(string)
	if st, out := call(t, "POST", url+"/api/v1/users", access, map[string]any{"email": "bob@solo.test", "password": "bobs-password-9"}); st != 201 {
		t.Fatalf("create user: %d %v", st, out)
	}
	if st, out := call(t, "PATCH", url+"/api/v1/tenants/current/settings", access, map[string]any{"locale": "de"}); st != 200 {
		t.Fatalf("settings: %d %v", st, out)
	}
	st, op := call(t, "POST", url+"/api/v1/auth/login", "", map[string]any{"email": "ops@example.test", "password": "operator-pass-1"})
	if st != 200 {
		t.Fatalf("operator login: %d %v", st, op)
	}
	id := su["tenant"].(map[string]any)["id"].(string)
	if st, out := call(t, "PATCH", url+"/api/v1/admin/tenants/"+id, op["accessToken"].(string), map[string]any{"plan": "pro"}); st != 200 {
		t.Fatalf("plan change: %d %v", st, out)
	}
}
