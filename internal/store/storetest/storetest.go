// Package storetest opens real databases for tests: SQLite in t.TempDir()
// always, and PostgreSQL when TENANTGATE_TEST_POSTGRES_URL is set. Each
// PostgreSQL test gets a fresh database, migrated by the URL's (owner) role,
// and a store connected as a fresh role that owns nothing and has
// NOBYPASSRLS, so row-level security really applies. An unreachable
// PostgreSQL fails the test; it never skips.
package storetest

import (
	"context"
	"database/sql"
	"fmt"
	"net/url"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/google/uuid"
	_ "github.com/jackc/pgx/v5/stdlib" // database/sql driver "pgx" for admin statements

	"github.com/tenantgate/tenantgate/internal/store"
)

// EnvPostgres names the variable that switches PostgreSQL tests on.
const EnvPostgres = "TENANTGATE_TEST_POSTGRES_URL"

// Dialects returns the dialects to run a test against.
func Dialects() []store.Dialect {
	if os.Getenv(EnvPostgres) != "" {
		return []store.Dialect{store.SQLite, store.Postgres}
	}
	return []store.Dialect{store.SQLite}
}

// Each runs fn as a subtest per dialect.
func Each(t *testing.T, fn func(t *testing.T, d store.Dialect)) {
	t.Helper()
	for _, d := range Dialects() {
		t.Run(string(d), func(t *testing.T) { fn(t, d) })
	}
}

// DB is a migrated database for one test.
type DB struct {
	URL         string // the app role's URL (SQLite: the file)
	OwnerURL    string // the migrating owner's URL (SQLite: same)
	PlatformURL string // the platform role's URL (PostgreSQL only)
	AppRole     string
}

// New creates an empty, migrated database and returns how to reach it.
func New(t testing.TB, d store.Dialect) DB {
	t.Helper()
	if d == store.SQLite {
		u := "sqlite:" + t.TempDir() + "/test.db"
		s, err := store.Open(context.Background(), store.Config{URL: u})
		if err != nil {
			t.Fatal(err)
		}
		if _, err := s.Migrate(context.Background()); err != nil {
			t.Fatal(err)
		}
		s.Close()
		return DB{URL: u, OwnerURL: u}
	}
	base := os.Getenv(EnvPostgres)
	if base == "" {
		t.Fatalf("%s is not set", EnvPostgres)
	}
	admin, err := sql.Open("pgx", base)
	if err != nil {
		t.Fatal(err)
	}
	defer admin.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if err := admin.PingContext(ctx); err != nil {
		t.Fatalf("PostgreSQL at %s is unreachable (%v): start it, or unset %s", base, err, EnvPostgres)
	}
	suffix := strings.ReplaceAll(uuid.NewString(), "-", "")[:16]
	dbName, role, platRole := "tg_test_"+suffix, "tg_app_"+suffix, "tg_plat_"+suffix
	mustExec(t, admin, "CREATE DATABASE "+dbName)
	mustExec(t, admin, "CREATE ROLE "+role+" LOGIN NOSUPERUSER NOBYPASSRLS NOCREATEDB NOCREATEROLE")
	mustExec(t, admin, "CREATE ROLE "+platRole+" LOGIN NOSUPERUSER NOBYPASSRLS NOCREATEDB NOCREATEROLE")
	t.Cleanup(func() {
		a, err := sql.Open("pgx", base)
		if err != nil {
			return
		}
		defer a.Close()
		_, _ = a.Exec("DROP DATABASE IF EXISTS " + dbName + " WITH (FORCE)")
		_, _ = a.Exec("DROP ROLE IF EXISTS " + role)
		_, _ = a.Exec("DROP ROLE IF EXISTS " + platRole)
	})
	ownerURL := withDB(t, base, dbName, "")
	owner, err := store.Open(ctx, store.Config{URL: ownerURL, MaxOpenConns: 2})
	if err != nil {
		t.Fatal(err)
	}
	defer owner.Close()
	if _, err := owner.Migrate(ctx); err != nil {
		t.Fatal(err)
	}
	if err := owner.GrantApp(ctx, role, platRole); err != nil {
		t.Fatal(err)
	}
	return DB{URL: withDB(t, base, dbName, role), OwnerURL: ownerURL, PlatformURL: withDB(t, base, dbName, platRole), AppRole: role}
}

// Open creates a database as New does and opens a store on it as the app role.
func Open(t testing.TB, d store.Dialect) *store.Store {
	t.Helper()
	db := New(t, d)
	s, err := store.Open(context.Background(), store.Config{URL: db.URL, PlatformURL: db.PlatformURL})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		// store.Tx refuses (and counts) a transaction opened inside another
		// of the same context; no test may leave one behind.
		if n := s.NestedTx(); n != 0 {
			t.Errorf("%d transaction(s) were opened inside a transaction of the same context (see the log for where)", n)
		}
		s.Close()
	})
	return s
}

func mustExec(t testing.TB, db *sql.DB, q string) {
	t.Helper()
	if _, err := db.Exec(q); err != nil {
		t.Fatalf("%s: %v", q, err)
	}
}

func withDB(t testing.TB, base, dbName, user string) string {
	t.Helper()
	u, err := url.Parse(base)
	if err != nil {
		t.Fatalf("%s: %v", EnvPostgres, err)
	}
	u.Path = "/" + dbName
	if user != "" {
		u.User = url.User(user)
	}
	return u.String()
}

// Must fails the test on error; for setup steps.
func Must(t testing.TB, err error) {
	t.Helper()
	if err != nil {
		t.Fatal(fmt.Errorf("setup: %w", err))
	}
}
