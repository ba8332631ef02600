package tenant

import (
	"regexp"
	"strings"
	"testing"
)

func TestCheckSlug(t *testing.T) {
	// want is "" for an acceptable slug, else a fragment of the problem.
	const (
		length   = "3 to 32"
		charset  = "a-z, 0-9"
		double   = "two hyphens"
		reserved = "reserved"
	)
	tests := []struct {
		name, slug, want string
	}{
		{"plain", "acme", ""},
		{"digits", "123", ""},
		{"inner hyphen", "acme-corp", ""},
		{"several single hyphens", "a-b-c-d", ""},
		{"starts with digit", "9lives", ""},
		{"length 2", "ab", length},
		{"length 3", "abc", ""},
		{"length 32", strings.Repeat("a", 32), ""},
		{"length 32 with hyphens", "a" + strings.Repeat("-b", 15) + "c", ""},
		{"length 33", strings.Repeat("a", 33), length},
		{"empty", "", length},
		{"length 1", "a", length},
		{"uppercase", "Acme", charset},
		{"all uppercase", "ACME", charset},
		{"unicode", "café", charset},
		{"unicode 3 bytes in 2 runes", "aé", charset},
		{"unicode over 32 bytes", strings.Repeat("é", 17), length},
		{"space inside", "ac me", charset},
		{"leading space", " acme", charset},
		{"trailing space", "acme ", charset},
		{"leading hyphen", "-acme", charset},
		{"trailing hyphen", "acme-", charset},
		{"only hyphens", "---", charset},
		{"underscore", "ac_me", charset},
		{"dot", "ac.me", charset},
		{"slash", "ac/me", charset},
		{"newline", "acme\n", charset},
		{"NUL", "ac\x00me", charset},
		{"double hyphen", "ac--me", double},
		{"triple hyphen", "a---b", double},
		{"reserved www", "www", reserved},
		{"reserved api", "api", reserved},
		{"reserved admin", "admin", reserved},
		{"reserved platform", "platform", reserved},
		{"reserved app", "app", reserved},
		{"reserved static", "static", reserved},
		{"reserved assets", "assets", reserved},
		{"reserved mail", "mail", reserved},
		{"reserved status", "status", reserved},
		{"reserved docs", "docs", reserved},
		{"reserved word as prefix is fine", "apiary", ""},
		{"reserved word with suffix is fine", "admin-team", ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got := CheckSlug(tt.slug)
			switch {
			case tt.want == "" && got != "":
				t.Errorf("CheckSlug(%q) = %q, want \"\"", tt.slug, got)
			case tt.want != "" && !strings.Contains(got, tt.want):
				t.Errorf("CheckSlug(%q) = %q, want a problem mentioning %q", tt.slug, got, tt.want)
			}
		})
	}
}

func TestIsReserved(t *testing.T) {
	for _, w := range []string{"www", "api", "admin", "platform", "app", "static", "assets", "mail", "status", "docs"} {
		if !IsReserved(w) {
			t.Errorf("IsReserved(%q) = false, want true", w)
		}
	}
	for _, w := range []string{"acme", "", "WWW", "apis"} {
		if IsReserved(w) {
			t.Errorf("IsReserved(%q) = true, want false", w)
		}
	}
}

var wantSlugRe = regexp.MustCompile(`^[a-z0-9][a-z0-9-]{1,30}[a-z0-9]$`)

func FuzzCheckSlug(f *testing.F) {
	for _, s := range []string{
		"acme", "ab", "abc", strings.Repeat("a", 32), strings.Repeat("a", 33), "Acme", "café", "ac me",
		"-acme", "acme-", "ac--me", "www", "api", "admin-team", "", "a-b", "1-2-3", "\xff\xfe", "a\nb",
	} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		got := CheckSlug(s)
		shapeOK := wantSlugRe.MatchString(s) && !strings.Contains(s, "--")
		if got == "" {
			if !wantSlugRe.MatchString(s) {
				t.Errorf("CheckSlug(%q) = \"\", but it does not match %s", s, wantSlugRe)
			}
			if strings.Contains(s, "--") {
				t.Errorf("CheckSlug(%q) = \"\", but it contains \"--\"", s)
			}
			if IsReserved(s) {
				t.Errorf("CheckSlug(%q) = \"\", but IsReserved is true", s)
			}
		} else if shapeOK && !IsReserved(s) {
			t.Errorf("CheckSlug(%q) = %q, want \"\" for a well-formed, unreserved slug", s, got)
		}
	})
}
