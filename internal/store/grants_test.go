package store_test

import (
	"context"
	"database/sql"
	"maps"
	"slices"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
	"gorm.io/gorm"

	"github.com/tenantgate/tenantgate/internal/store"
	"github.com/tenantgate/tenantgate/internal/store/storetest"
)

// grants lists what role may do on each table of the public schema
// (information_schema.role_table_grants), privileges sorted.
func grants(t *testing.T, db *sql.DB, role string) map[string]string {
	t.Helper()
	rows, err := db.Query(`SELECT table_name, string_agg(privilege_type, ',' ORDER BY privilege_type)
		FROM information_schema.role_table_grants WHERE grantee = $1 AND table_schema = 'public' GROUP BY table_name`, role)
	storetest.Must(t, err)
	defer rows.Close()
	out := map[string]string{}
	for rows.Next() {
		var table, privs string
		storetest.Must(t, rows.Scan(&table, &privs))
		out[table] = privs
	}
	storetest.Must(t, rows.Err())
	return out
}

// The server's role (TENANTGATE_DATABASE_URL) does tenant work: it writes
// the tenant tables, only reads the platform tables tenant work looks up,
// and cannot touch operators, signing keys or redemption codes; the platform
// role writes every table but the migration bookkeeping. No role holds a
// privilege beyond these: SQL injected into tenant work cannot mint an
// operator or a signing key, or change a tenant's plan. A re-run of the
// grants takes back what an older version granted, and in single-role mode
// the one role has the platform role's grants.
func TestRolesHoldOnlyTheirGrants(t *testing.T) {
	if len(storetest.Dialects()) < 2 {
		t.Skip("PostgreSQL only: set " + storetest.EnvPostgres)
	}
	db := storetest.New(t, store.Postgres)
	ctx := context.Background()
	owner, err := store.Open(ctx, store.Config{URL: db.OwnerURL, MaxOpenConns: 2})
	storetest.Must(t, err)
	defer owner.Close()
	platformRole := db.PlatformURL[strings.Index(db.PlatformURL, "://")+3 : strings.Index(db.PlatformURL, "@")]

	var tables []string
	rows, err := owner.SQL().Query(`SELECT table_name FROM information_schema.tables WHERE table_schema = 'public' AND table_type = 'BASE TABLE'`)
	storetest.Must(t, err)
	for rows.Next() {
		var name string
		storetest.Must(t, rows.Scan(&name))
		tables = append(tables, name)
	}
	rows.Close()
	const all, read = "DELETE,INSERT,SELECT,UPDATE", "SELECT"
	wantApp, wantPlatform := map[string]string{}, map[string]string{}
	for _, tb := range tables {
		wantPlatform[tb] = all
	}
	for _, tb := range []string{"goose_db_version", "platform_roles"} {
		wantPlatform[tb], wantApp[tb] = read, read
	}
	for _, tb := range []string{"tenants", "tenant_slugs", "tenant_domains", "plans"} {
		wantApp[tb] = read
	}
	for _, tb := range store.TenantTables() {
		wantApp[tb] = all
	}
	for _, tb := range []string{"operators", "signing_keys", "redemption_codes"} {
		if _, ok := wantApp[tb]; ok || !slices.Contains(tables, tb) {
			t.Fatalf("%s is a tenant table or missing from the schema", tb)
		}
	}
	if got := slices.Sorted(maps.Keys(wantApp)); len(got)+3 != len(tables) {
		t.Errorf("the server's role is expected to reach %d of %d tables: a new table needs a decision here: %v", len(got), len(tables), got)
	}
	check := func(when string) {
		t.Helper()
		if diff := cmp.Diff(wantApp, grants(t, owner.SQL(), db.AppRole)); diff != "" {
			t.Errorf("%s: the server's role %s (-want +got):\n%s", when, db.AppRole, diff)
		}
		if diff := cmp.Diff(wantPlatform, grants(t, owner.SQL(), platformRole)); diff != "" {
			t.Errorf("%s: the platform role %s (-want +got):\n%s", when, platformRole, diff)
		}
	}
	check("after migrate")

	// What an older version granted is taken back by the next run.
	for _, st := range []string{"GRANT SELECT, INSERT, UPDATE, DELETE ON ALL TABLES IN SCHEMA public TO " + db.AppRole,
		"GRANT TRUNCATE ON operators TO " + platformRole} {
		_, err := owner.SQL().Exec(st)
		storetest.Must(t, err)
	}
	storetest.Must(t, owner.GrantApp(ctx, db.AppRole, platformRole))
	check("after a re-run")

	// The server's role really cannot write a platform table, nor read a key.
	app, err := store.Open(ctx, store.Config{URL: db.URL, MaxOpenConns: 2})
	storetest.Must(t, err)
	defer app.Close()
	for _, st := range []string{
		"INSERT INTO operators (id, email, name, password_hash, status, created_at, updated_at) VALUES (gen_random_uuid(), 'x@y.z', 'x', 'x', 'active', now(), now())",
		"UPDATE tenants SET plan = 'enterprise'",
		"DELETE FROM tenant_slugs",
		"SELECT count(*) FROM signing_keys",
		"DELETE FROM redemption_codes",
		"INSERT INTO plans (name) VALUES ('free-for-all')",
	} {
		err := app.Tx(store.WithPlatform(ctx, "test"), func(tx *gorm.DB) error { return tx.Exec(st).Error })
		if err == nil || !strings.Contains(err.Error(), "permission denied") {
			t.Errorf("%s as the server's role: got %v, want permission denied", st, err)
		}
	}

	// The schema owner as the platform role (or the server's) keeps what it holds: it runs the migrations.
	var schemaOwner string
	storetest.Must(t, owner.SQL().QueryRow("SELECT tableowner FROM pg_tables WHERE tablename = 'goose_db_version'").Scan(&schemaOwner))
	ownerBefore := grants(t, owner.SQL(), schemaOwner)
	storetest.Must(t, owner.GrantApp(ctx, schemaOwner, schemaOwner))
	if diff := cmp.Diff(ownerBefore, grants(t, owner.SQL(), schemaOwner)); diff != "" {
		t.Errorf("the schema owner's grants changed (-before +after):\n%s", diff)
	}

	// Single-role mode: the one role also does platform work, so it has the platform grants.
	single := "tg_single_" + strings.TrimPrefix(db.AppRole, "tg_app_")
	_, err = owner.SQL().Exec("CREATE ROLE " + single + " NOLOGIN NOSUPERUSER NOBYPASSRLS")
	storetest.Must(t, err)
	t.Cleanup(func() {
		_, _ = owner.SQL().Exec("DROP OWNED BY " + single)
		_, _ = owner.SQL().Exec("DROP ROLE " + single)
	})
	storetest.Must(t, owner.GrantApp(ctx, single, single))
	if diff := cmp.Diff(wantPlatform, grants(t, owner.SQL(), single)); diff != "" {
		t.Errorf("single-role mode (-want +got):\n%s", diff)
	}
}
