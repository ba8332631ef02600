package main

import (
	"bytes"
	"context"
	"errors"
	"io"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"

	"github.com/tenantgate/tenantgate/internal/store"
	"github.com/tenantgate/tenantgate/internal/store/storetest"
)

// runServe runs `tenantgate serve` with env (plus a fresh data dir unless
// env names one) and returns its error and logs; it must fail before serving.
func runServe(t *testing.T, env map[string]string, args ...string) (error, string) {
	t.Helper()
	if _, ok := env["TENANTGATE_DATA_DIR"]; !ok {
		env["TENANTGATE_DATA_DIR"] = t.TempDir()
	}
	var logs syncBuffer
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	err := run(ctx, append([]string{"serve"}, args...), func(k string) string { return env[k] }, strings.NewReader(""), io.Discard, &logs)
	return err, logs.String()
}

func dirEntries(t *testing.T, dir string) []string {
	t.Helper()
	entries, err := os.ReadDir(dir)
	if err != nil && !errors.Is(err, os.ErrNotExist) {
		t.Fatal(err)
	}
	var names []string
	for _, e := range entries {
		names = append(names, e.Name())
	}
	return names
}

// TestConfigValidation: every bad value is named in one error, the exit code
// is 2, and nothing happened before: the data directory stays empty (no
// database, no migration, no master.key).
func TestConfigValidation(t *testing.T) {
	for _, tc := range []struct {
		name string
		env  map[string]string
		args []string
		want []string // each must appear in the error
	}{
		{"log level", map[string]string{"TENANTGATE_LOG_LEVEL": "loud"}, nil, []string{"TENANTGATE_LOG_LEVEL"}},
		{"fail open", map[string]string{"TENANTGATE_RATE_LIMIT_FAIL_OPEN": "perhaps"}, nil, []string{"TENANTGATE_RATE_LIMIT_FAIL_OPEN"}},
		{"private upstreams", map[string]string{"TENANTGATE_GATEWAY_ALLOW_PRIVATE_UPSTREAMS": "yes"}, nil, []string{"TENANTGATE_GATEWAY_ALLOW_PRIVATE_UPSTREAMS"}},
		{"public URL", map[string]string{"TENANTGATE_PUBLIC_URL": "not a url"}, nil, []string{"TENANTGATE_PUBLIC_URL"}},
		{"auto migrate", map[string]string{"TENANTGATE_AUTO_MIGRATE": "maybe"}, nil, []string{"TENANTGATE_AUTO_MIGRATE"}},
		{"master key", map[string]string{"TENANTGATE_MASTER_KEY": "too-short"}, nil, []string{"TENANTGATE_MASTER_KEY"}},
		{"addr flag", map[string]string{}, []string{"--addr", "notaport"}, []string{"listen address", "notaport"}},
		{"addr port range", map[string]string{"TENANTGATE_ADDR": "127.0.0.1:70000"}, nil, []string{"listen address", "65535"}},
		{"database scheme", map[string]string{"TENANTGATE_DATABASE_URL": "postgress://u:PASSWORD@127.0.0.1:1/tg"}, nil, []string{"database URL", `"postgress"`}},
		{"mysql", map[string]string{"TENANTGATE_DATABASE_URL": "mysql://u:PASSWORD@127.0.0.1:1/tg"}, nil, []string{"database URL", `"mysql"`}},
		{"migration URL", map[string]string{"TENANTGATE_MIGRATION_DATABASE_URL": "mysql://o:PASSWORD@127.0.0.1:1/tg"}, nil,
			[]string{"TENANTGATE_MIGRATION_DATABASE_URL"}},
		{"platform URL", map[string]string{"TENANTGATE_DATABASE_URL": "postgres://u:PASSWORD@127.0.0.1:1/tg",
			"TENANTGATE_PLATFORM_DATABASE_URL": "postgress://p:PASSWORD@127.0.0.1:1/tg"}, nil, []string{"TENANTGATE_PLATFORM_DATABASE_URL"}},
		{"redis URL", map[string]string{"TENANTGATE_REDIS_URL": "redsi://:PASSWORD@127.0.0.1:1/0"}, nil, []string{"TENANTGATE_REDIS_URL"}},
		{"duration range", map[string]string{"TENANTGATE_ACCESS_TOKEN_TTL": "1s", "TENANTGATE_REDIS_TIMEOUT": "1h"}, nil,
			[]string{"TENANTGATE_ACCESS_TOKEN_TTL", "TENANTGATE_REDIS_TIMEOUT"}},
		{"integer range", map[string]string{"TENANTGATE_TRIAL_DAYS": "100000", "TENANTGATE_GATEWAY_MAX_ATTEMPTS": "0", "TENANTGATE_AUTH_RATE_PER_MINUTE": "lots"}, nil,
			[]string{"TENANTGATE_TRIAL_DAYS", "TENANTGATE_GATEWAY_MAX_ATTEMPTS", "TENANTGATE_AUTH_RATE_PER_MINUTE"}},
		{"oidc", map[string]string{"TENANTGATE_OIDC_ISSUER": "https://u:PASSWORD@idp.example/?x=1", "TENANTGATE_OIDC_JIT": "sometimes"}, nil,
			[]string{"TENANTGATE_OIDC_ISSUER", "TENANTGATE_OIDC_JIT", "TENANTGATE_OIDC_CLIENT_ID"}},
		{"everything at once", map[string]string{"TENANTGATE_LOG_LEVEL": "loud", "TENANTGATE_RATE_LIMIT_FAIL_OPEN": "perhaps",
			"TENANTGATE_GATEWAY_ALLOW_PRIVATE_UPSTREAMS": "yes", "TENANTGATE_PUBLIC_URL": "not a url", "TENANTGATE_AUTO_MIGRATE": "maybe",
			"TENANTGATE_MASTER_KEY": "nope", "TENANTGATE_DATABASE_URL": "postgress://u:PASSWORD@db/tg"}, []string{"--addr", "notaport"},
			[]string{"TENANTGATE_LOG_LEVEL", "TENANTGATE_RATE_LIMIT_FAIL_OPEN", "TENANTGATE_GATEWAY_ALLOW_PRIVATE_UPSTREAMS",
				"TENANTGATE_PUBLIC_URL", "TENANTGATE_AUTO_MIGRATE", "TENANTGATE_MASTER_KEY", "database URL", "notaport"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			dir := t.TempDir()
			tc.env["TENANTGATE_DATA_DIR"] = dir
			err, logs := runServe(t, tc.env, tc.args...)
			if err == nil {
				t.Fatal("serve accepted the configuration")
			}
			if got := exitCode(err); got != 2 {
				t.Errorf("exit code %d, want 2 (%v)", got, err)
			}
			var missing []string
			for _, w := range tc.want {
				if !strings.Contains(err.Error(), w) {
					missing = append(missing, w)
				}
			}
			if diff := cmp.Diff(missing, []string(nil)); diff != "" {
				t.Errorf("the error does not name (-got +want):\n%s\nerror: %v", diff, err)
			}
			if strings.Contains(err.Error()+logs, "PASSWORD") {
				t.Errorf("a password reached the error or the logs:\n%v\n%s", err, logs)
			}
			if diff := cmp.Diff(dirEntries(t, dir), []string(nil)); diff != "" {
				t.Errorf("the data directory is not empty (-got +want):\n%s", diff)
			}
		})
	}
}

// TestGoodConfigValues: the documented spellings are accepted.
func TestGoodConfigValues(t *testing.T) {
	env := map[string]string{"TENANTGATE_LOG_LEVEL": "WARN", "TENANTGATE_RATE_LIMIT_FAIL_OPEN": "0",
		"TENANTGATE_GATEWAY_ALLOW_PRIVATE_UPSTREAMS": "TRUE", "TENANTGATE_PUBLIC_URL": "https://tg.example.com/", "TENANTGATE_AUTO_MIGRATE": "1",
		"TENANTGATE_DATABASE_URL": "./x.db", "TENANTGATE_REDIS_TIMEOUT": "50ms", "TENANTGATE_ADDR": "127.0.0.1:0", "TENANTGATE_DATA_DIR": "d"}
	cfg := loadConfig(func(k string) string { return env[k] })
	if err := cfg.validate(); err != nil {
		t.Fatal(err)
	}
	type view struct {
		Level, Public, Auto  string
		FailOpen, AllowPriv  bool
		RedisTimeoutMillisec int64
	}
	got := view{cfg.LogLevel, cfg.PublicURL, cfg.AutoMigrate, cfg.RateLimitFailOpen, cfg.AllowPrivateEgress, cfg.RedisTimeout.Milliseconds()}
	want := view{"warn", "https://tg.example.com", "true", false, true, 50}
	if diff := cmp.Diff(got, want); diff != "" {
		t.Errorf("(-got +want):\n%s", diff)
	}
}

// TestStartupOrder: a busy port is reported as such, before the database is
// touched; a database sealed under another master key is refused without
// writing a new master.key.
func TestStartupOrder(t *testing.T) {
	storetest.Each(t, func(t *testing.T, d store.Dialect) {
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		defer ln.Close()
		env := map[string]string{}
		dir := t.TempDir()
		env["TENANTGATE_DATA_DIR"] = dir
		err, _ = runServe(t, env, "--addr", ln.Addr().String())
		if err == nil || !strings.Contains(err.Error(), "already in use") {
			t.Errorf("a busy port: %v", err)
		}
		if diff := cmp.Diff(dirEntries(t, dir), []string(nil)); diff != "" {
			t.Errorf("a busy port touched the data directory (-got +want):\n%s", diff)
		}

		// A database whose secrets are sealed under key A; a second server
		// process with neither the key nor its file.
		base := envFor(t, d, map[string]string{"TENANTGATE_MASTER_KEY": strings.Repeat("ab", 32)})
		shared := map[string]string{}
		for _, k := range []string{"TENANTGATE_DATABASE_URL", "TENANTGATE_MIGRATION_DATABASE_URL", "TENANTGATE_PLATFORM_DATABASE_URL",
			"TENANTGATE_MASTER_KEY", "TENANTGATE_PASSWORD_PROFILE"} {
			if v := base(k); v != "" {
				shared[k] = v
			}
		}
		if d == store.SQLite {
			shared["TENANTGATE_DATABASE_URL"] = "sqlite:" + filepath.Join(t.TempDir(), "shared.db")
		}
		if d == store.Postgres {
			var out, errOut bytes.Buffer
			if err := run(context.Background(), []string{"migrate"}, func(k string) string { return shared[k] }, strings.NewReader(""), &out, &errOut); err != nil {
				t.Fatalf("migrate: %v\n%s", err, errOut.String())
			}
		}
		first := func(k string) string {
			if k == "TENANTGATE_DATA_DIR" {
				return filepath.Join(dir, "first")
			}
			return shared[k]
		}
		var out, errOut bytes.Buffer
		if err := run(context.Background(), []string{"tenant", "create", "--slug", "sealed", "--name", "S", "--owner-email", "o@s.test",
			"--owner-password", "correct-horse-1"}, first, strings.NewReader(""), &out, &errOut); err != nil {
			t.Fatalf("tenant create: %v\n%s", err, errOut.String())
		}
		second := map[string]string{"TENANTGATE_DATA_DIR": filepath.Join(dir, "second")}
		for k, v := range shared {
			if k != "TENANTGATE_MASTER_KEY" {
				second[k] = v
			}
		}
		err, _ = runServe(t, second, "--addr", "127.0.0.1:0")
		if err == nil || !strings.Contains(err.Error(), "TENANTGATE_MASTER_KEY") {
			t.Errorf("a sealed database without its master key: %v", err)
		}
		if _, err := os.Stat(filepath.Join(dir, "second", "master.key")); !errors.Is(err, os.ErrNotExist) {
			t.Errorf("a master.key was written for a database sealed under another key (%v)", err)
		}
	})
}

// TestNoPasswordInLogs: every URL that reaches a log line or an error is
// redacted: database, platform, Redis.
func TestNoPasswordInLogs(t *testing.T) {
	// Redis with a password on a port nobody listens on: serve starts
	// (fail-open), logs about Redis, and must not show the password.
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	dead := ln.Addr().String()
	ln.Close()
	url, logs := start(t, envFor(t, store.SQLite, map[string]string{"TENANTGATE_REDIS_URL": "redis://:PASSWORD@" + dead + "/0"}))
	call(t, "GET", url+"/api/health", "", nil)
	if !strings.Contains(logs.String(), "redis") {
		t.Errorf("nothing was logged about the dead Redis:\n%s", logs)
	}
	if strings.Contains(logs.String(), "PASSWORD") {
		t.Errorf("the Redis password reached the logs:\n%s", logs)
	}
	if len(storetest.Dialects()) < 2 {
		return
	}
	// PostgreSQL on a port nobody listens on, with a password.
	err, out := runServe(t, map[string]string{"TENANTGATE_DATABASE_URL": "postgres://app:PASSWORD@" + dead + "/tg?sslmode=disable",
		"TENANTGATE_PLATFORM_DATABASE_URL": "postgres://plat:PASSWORD@" + dead + "/tg?sslmode=disable&password=PASSWORD"}, "--addr", "127.0.0.1:0")
	if err == nil || strings.Contains(err.Error()+out, "PASSWORD") {
		t.Errorf("an unreachable PostgreSQL: %v\n%s", err, out)
	}
	// migrate, as the schema owner, on an unreachable PostgreSQL.
	var stdout, stderr syncBuffer
	env := map[string]string{"TENANTGATE_DATA_DIR": t.TempDir(), "TENANTGATE_DATABASE_URL": "postgres://app:PASSWORD@" + dead + "/tg",
		"TENANTGATE_MIGRATION_DATABASE_URL": "postgresql://owner:PASSWORD@" + dead + "/tg?sslmode=disable"}
	err = run(context.Background(), []string{"migrate"}, func(k string) string { return env[k] }, strings.NewReader(""), &stdout, &stderr)
	if err == nil || strings.Contains(err.Error()+stdout.String()+stderr.String(), "PASSWORD") {
		t.Errorf("migrate on an unreachable PostgreSQL: %v\n%s%s", err, stdout.String(), stderr.String())
	}
}
