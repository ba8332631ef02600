package store_test

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/jackc/pgx/v5/pgconn"
	"gorm.io/gorm"

	"github.com/tenantgate/tenantgate/internal/errs"
	"github.com/tenantgate/tenantgate/internal/store"
	"github.com/tenantgate/tenantgate/internal/store/storetest"
)

// IsUnavailable tells a database that cannot serve now (retry later) from a
// request or code that is wrong, on real errors of both drivers.
func TestIsUnavailable(t *testing.T) {
	// A full disk on SQLite: a database capped at its current size.
	path := filepath.Join(t.TempDir(), "full.db")
	db, err := sql.Open("sqlite", "file:"+path+"?_pragma=journal_mode(WAL)")
	storetest.Must(t, err)
	defer db.Close()
	db.SetMaxOpenConns(1)
	_, err = db.Exec("CREATE TABLE t (v TEXT); CREATE TABLE u (v TEXT NOT NULL)")
	storetest.Must(t, err)
	_, constraint := db.Exec("INSERT INTO u VALUES (NULL)")
	var pages int
	storetest.Must(t, db.QueryRow("PRAGMA page_count").Scan(&pages))
	_, err = db.Exec(fmt.Sprintf("PRAGMA max_page_count = %d", pages))
	storetest.Must(t, err)
	_, full := db.Exec("INSERT INTO t SELECT hex(randomblob(4000)) FROM (SELECT 1 UNION SELECT 2 UNION SELECT 3)")
	_, syntax := db.Exec("SELEC 1")

	cases := []struct {
		name string
		err  error
		want bool
	}{
		{"sqlite disk full", full, true},
		{"sqlite disk full, wrapped", errs.Internal(fmt.Errorf("write: %w", full), "x"), true},
		{"sqlite syntax error", syntax, false},
		{"sqlite constraint", constraint, false},
		{"postgres disk full", &pgconn.PgError{Code: "53100"}, true},
		{"postgres shutting down", &pgconn.PgError{Code: "57P01"}, true},
		{"postgres read-only", &pgconn.PgError{Code: "25006"}, true},
		{"postgres unique violation", &pgconn.PgError{Code: "23505"}, false},
		{"not found", gorm.ErrRecordNotFound, false},
		{"canceled", context.Canceled, false},
		{"nil", nil, false},
		{"other", errors.New("boom"), false},
	}
	if full == nil || !strings.Contains(full.Error(), "full") {
		t.Fatalf("could not fill the disk: %v", full)
	}
	for _, c := range cases {
		if got := store.IsUnavailable(c.err); got != c.want {
			t.Errorf("%s (%v): IsUnavailable = %v, want %v", c.name, c.err, got, c.want)
		}
	}
	if os.Getenv(storetest.EnvPostgres) != "" {
		_, err := store.Open(context.Background(), store.Config{URL: "postgres://nobody@127.0.0.1:1/none?sslmode=disable&connect_timeout=2"})
		if err == nil || !store.IsUnavailable(errors.Unwrap(err)) {
			t.Errorf("a refused connection: IsUnavailable(%v) = false", err)
		}
	}
}
