package store

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
)

func TestParseURL(t *testing.T) {
	type out struct {
		Dialect Dialect
		Path    string
		Err     bool
	}
	for _, tc := range []struct {
		in   string
		want out
	}{
		{"", out{SQLite, "", false}},
		{"postgres://u:p@db/tg", out{Postgres, "", false}},
		{"postgresql://u@db/tg", out{Postgres, "", false}},
		{"sqlite:data/tg.db", out{SQLite, "data/tg.db", false}},
		{"sqlite:///var/lib/tg.db", out{SQLite, "/var/lib/tg.db", false}},
		{"./tg.db", out{SQLite, "./tg.db", false}},
		{"/var/lib/tg.db", out{SQLite, "/var/lib/tg.db", false}},
		{`C:\tg\tg.db`, out{SQLite, `C:\tg\tg.db`, false}},
		{"sqlite:", out{"", "", true}},
		{"postgress://user:PASSWORD@db/tg", out{"", "", true}},
		{"mysql://root:PASSWORD@db/tg", out{"", "", true}},
		{"file:tg.db", out{"", "", true}},
		{"host=db user=app password=PASSWORD", out{"", "", true}},
	} {
		d, p, err := ParseURL(tc.in)
		got := out{d, p, err != nil}
		if diff := cmp.Diff(got, tc.want); diff != "" {
			t.Errorf("ParseURL(%q) (-got +want):\n%s (err %v)", tc.in, diff, err)
		}
		if err != nil && strings.Contains(err.Error(), "PASSWORD") {
			t.Errorf("ParseURL(%q): the error shows the password: %v", tc.in, err)
		}
	}
}

// TestOpenRefusesUnknownScheme: a mistyped PostgreSQL URL used to become a
// SQLite file named after the URL.
func TestOpenRefusesUnknownScheme(t *testing.T) {
	dir := t.TempDir()
	t.Chdir(dir)
	for _, u := range []string{"postgress://user:PASSWORD@127.0.0.1:1/tg", "mysql://root:PASSWORD@127.0.0.1:1/tg"} {
		s, err := Open(context.Background(), Config{URL: u, DataDir: dir})
		if err == nil {
			s.Close()
			t.Errorf("Open(%q) succeeded", u)
			continue
		}
		if strings.Contains(err.Error(), "PASSWORD") {
			t.Errorf("Open(%q): the error shows the password: %v", u, err)
		}
	}
	if entries, _ := os.ReadDir(dir); len(entries) != 0 {
		t.Errorf("Open created files: %v", entries)
	}
}

func TestOpenUnwritableDataDir(t *testing.T) {
	file := filepath.Join(t.TempDir(), "a-file")
	if err := os.WriteFile(file, nil, 0o600); err != nil {
		t.Fatal(err)
	}
	_, err := Open(context.Background(), Config{DataDir: filepath.Join(file, "data")})
	if err == nil || !strings.Contains(err.Error(), "data directory") {
		t.Errorf("a data directory under a file: %v, want it named as the problem", err)
	}
}
