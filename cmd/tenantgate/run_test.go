package main

import (
	"bytes"
	"context"
	"encoding/json"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/tenantgate/tenantgate/internal/gateway/journal"
	"github.com/tenantgate/tenantgate/internal/store"
	"github.com/tenantgate/tenantgate/internal/store/storetest"
)

// syncBuffer is a bytes.Buffer safe for the server's logger and the test.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}
func (s *syncBuffer) String() string { s.mu.Lock(); defer s.mu.Unlock(); return s.b.String() }

func envFor(t *testing.T, d store.Dialect, extra map[string]string) func(string) string {
	env := map[string]string{"TENANTGATE_DATA_DIR": t.TempDir(), "TENANTGATE_PASSWORD_PROFILE": "fast"}
	if d == store.Postgres {
		db := storetest.New(t, d)
		env["TENANTGATE_DATABASE_URL"] = db.URL
		env["TENANTGATE_MIGRATION_DATABASE_URL"] = db.OwnerURL
		env["TENANTGATE_PLATFORM_DATABASE_URL"] = db.PlatformURL
	}
	if r := os.Getenv("TENANTGATE_TEST_REDIS_URL"); r != "" {
		env["TENANTGATE_REDIS_URL"] = r // /api/health must then report Redis healthy
	}
	for k, v := range extra {
		env[k] = v
	}
	return func(k string) string { return env[k] }
}

var listenRe = regexp.MustCompile(`msg="tenantgate is listening" addr=(http://127\.0\.0\.1:\d+)`)

// start runs `tenantgate serve` through run() and waits for /healthz.
func start(t *testing.T, getenv func(string) string) (string, *syncBuffer) {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	logs := &syncBuffer{}
	done := make(chan error, 1)
	go func() {
		done <- run(ctx, []string{"serve", "--addr", "127.0.0.1:0"}, getenv, strings.NewReader(""), io.Discard, logs)
	}()
	t.Cleanup(func() {
		cancel()
		select {
		case err := <-done:
			if err != nil {
				t.Errorf("serve returned %v", err)
			}
		case <-time.After(25 * time.Second):
			t.Error("serve did not stop")
		}
	})
	deadline := time.Now().Add(20 * time.Second)
	for time.Now().Before(deadline) {
		if m := listenRe.FindStringSubmatch(logs.String()); m != nil {
			res, err := http.Get(m[1] + "/healthz")
			if err == nil {
				res.Body.Close()
				if res.StatusCode == 200 {
					return m[1], logs
				}
			}
		}
		select {
		case err := <-done:
			t.Fatalf("serve exited early: %v\n%s", err, logs.String())
		case <-time.After(20 * time.Millisecond):
		}
	}
	t.Fatalf("the server never became healthy:\n%s", logs.String())
	return "", nil
}

func call(t *testing.T, method, url, token string, body any) (int, map[string]any) {
	t.Helper()
	raw, _ := json.Marshal(body)
	req, _ := http.NewRequest(method, url, bytes.NewReader(raw))
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	res, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer res.Body.Close()
	var out map[string]any
	_ = json.NewDecoder(res.Body).Decode(&out)
	return res.StatusCode, out
}

// TestServeEndToEnd is the README's walk-through against a real process
// started by run(): an operator from the bootstrap variables, a signup,
// login, a user, the audit log, health.
func TestServeEndToEnd(t *testing.T) {
	storetest.Each(t, func(t *testing.T, d store.Dialect) {
		url, logs := start(t, envFor(t, d, map[string]string{
			"TENANTGATE_BOOTSTRAP_OPERATOR_EMAIL": "ops@example.test", "TENANTGATE_BOOTSTRAP_OPERATOR_PASSWORD": "operator-pass-1"}))
		st, out := call(t, "POST", url+"/api/v1/tenants/signup", "", map[string]any{"slug": "acme", "name": "Acme",
			"ownerEmail": "ann@acme.test", "ownerPassword": "correct-horse-1"})
		if st != 201 {
			t.Fatalf("signup: %d %v", st, out)
		}
		st, tok := call(t, "POST", url+"/api/v1/auth/login", "", map[string]any{"email": "ann@acme.test", "password": "correct-horse-1", "tenant": "acme"})
		if st != 200 {
			t.Fatalf("login: %d %v", st, tok)
		}
		access := tok["accessToken"].(string)
		if st, out := call(t, "POST", url+"/api/v1/users", access, map[string]any{"email": "bob@acme.test", "password": "bobs-password-9"}); st != 201 {
			t.Fatalf("create user: %d %v", st, out)
		}
		st, audit := call(t, "GET", url+"/api/v1/audit", access, nil)
		if items, _ := audit["items"].([]any); st != 200 || len(items) < 3 {
			t.Errorf("audit: %d %v", st, audit)
		}
		st, op := call(t, "POST", url+"/api/v1/auth/login", "", map[string]any{"email": "ops@example.test", "password": "operator-pass-1"})
		if st != 200 {
			t.Fatalf("operator login: %d %v", st, op)
		}
		if st, list := call(t, "GET", url+"/api/v1/admin/tenants", op["accessToken"].(string), nil); st != 200 || len(list["items"].([]any)) != 1 {
			t.Errorf("admin tenants: %d %v", st, list)
		}
		st, health := call(t, "GET", url+"/api/health", "", nil)
		if st != 200 || health["status"] != "healthy" {
			t.Errorf("health: %d %v", st, health)
		}
		if os.Getenv("TENANTGATE_TEST_REDIS_URL") != "" && health["dependencies"].(map[string]any)["redis"] != "healthy" {
			t.Errorf("health does not report Redis healthy: %v", health)
		}
		if st, _ := call(t, "GET", url+"/readyz", "", nil); st != 200 {
			t.Errorf("readyz: %d", st)
		}
		if strings.Contains(logs.String(), "correct-horse-1") || strings.Contains(logs.String(), access) {
			t.Error("the logs contain a password or a token")
		}
		if d == store.Postgres && strings.Contains(logs.String(), "escapes row-level security") {
			t.Error("the test server connected as a role that bypasses RLS")
		}
	})
}

func TestCommands(t *testing.T) {
	storetest.Each(t, func(t *testing.T, d store.Dialect) {
		getenv := envFor(t, d, nil)
		ctx := context.Background()
		var out, errOut bytes.Buffer
		runIt := func(args ...string) error {
			out.Reset()
			errOut.Reset()
			return run(ctx, args, getenv, strings.NewReader(""), &out, &errOut)
		}
		if err := runIt("migrate"); err != nil {
			t.Fatalf("migrate: %v\n%s", err, errOut.String())
		}
		if err := runIt("migrate", "--status"); err != nil || !strings.Contains(out.String(), "0 pending") {
			t.Errorf("migrate --status: %v %q", err, out.String())
		}
		if err := runIt("operator", "create", "--email", "root@example.test", "--password", "operator-pass-1"); err != nil {
			t.Fatalf("operator create: %v\n%s", err, errOut.String())
		}
		if err := runIt("operator", "create", "--email", "root@example.test", "--password", "operator-pass-1"); err == nil {
			t.Error("creating the same operator twice succeeded")
		}
		// The CLI works beside a running server, which holds the usage journal's lock.
		held, _, err := journal.Open(filepath.Join(getenv("TENANTGATE_DATA_DIR"), "usage-journal"), journal.Options{})
		storetest.Must(t, err)
		defer held.Close()
		if err := runIt("operator", "create", "--email", "second@example.test", "--password", "operator-pass-2"); err != nil {
			t.Errorf("operator create beside a running server: %v\n%s", err, errOut.String())
		}
		if err := runIt("tenant", "create", "--slug", "cli-org", "--name", "CLI Org", "--owner-email", "o@cli.test", "--owner-password", "correct-horse-1"); err != nil {
			t.Fatalf("tenant create: %v\n%s", err, errOut.String())
		}
		if !strings.Contains(out.String(), "created tenant cli-org") {
			t.Errorf("tenant create said %q", out.String())
		}
		err = runIt("tenant", "create", "--slug", "BAD SLUG", "--name", "x", "--owner-email", "o@cli.test", "--owner-password", "correct-horse-1")
		if err == nil || !strings.Contains(err.Error(), "slug") {
			t.Errorf("a bad slug: %v", err)
		}
		if err := runIt("version"); err != nil || !strings.HasPrefix(out.String(), "tenantgate ") {
			t.Errorf("version: %v %q", err, out.String())
		}
		for _, args := range [][]string{{"serve", "--help"}, {"migrate", "-h"}, {"help"}, {"help", "env"}} {
			if err := runIt(args...); err != nil {
				t.Errorf("%v: %v", args, err)
			}
			if out.Len()+errOut.Len() == 0 {
				t.Errorf("%v printed nothing", args)
			}
		}
		if err := runIt(); err != errUsage {
			t.Errorf("no arguments: %v, want usage", err)
		}
		if err := runIt("frobnicate"); err != errUsage || !strings.Contains(errOut.String(), "unknown command") {
			t.Errorf("unknown command: %v %q", err, errOut.String())
		}
	})
}

func TestPostgresRefusesPendingMigrations(t *testing.T) {
	if len(storetest.Dialects()) < 2 {
		t.Skip("PostgreSQL only")
	}
	// A fresh, unmigrated database: serve must refuse with advice, not auto-migrate.
	db := storetest.New(t, store.Postgres)
	s, err := store.Open(context.Background(), store.Config{URL: db.OwnerURL})
	storetest.Must(t, err)
	_, err = s.SQL().Exec("DELETE FROM goose_db_version WHERE version_id > 0")
	storetest.Must(t, err)
	s.Close()
	var logs syncBuffer
	err = run(context.Background(), []string{"serve", "--addr", "127.0.0.1:0"}, func(k string) string {
		return map[string]string{"TENANTGATE_DATABASE_URL": db.URL, "TENANTGATE_DATA_DIR": t.TempDir()}[k]
	}, strings.NewReader(""), io.Discard, &logs)
	if err == nil || !strings.Contains(err.Error(), "tenantgate migrate") {
		t.Errorf("serve on a database with pending migrations: %v", err)
	}
}
