package identity

import (
	"strings"
	"testing"
)

func TestHashPasswordRoundTrip(t *testing.T) {
	const pw = "correct-horse-1"
	h1, err := HashPassword(pw, FastPasswordParams)
	if err != nil {
		t.Fatalf("HashPassword: %v", err)
	}
	if !strings.HasPrefix(h1, "$argon2id$v=19$m=64,t=1,p=1$") {
		t.Errorf("HashPassword = %q, want a PHC argon2id string with the fast parameters", h1)
	}
	h2, err := HashPassword(pw, FastPasswordParams)
	if err != nil {
		t.Fatalf("HashPassword: %v", err)
	}
	if h1 == h2 {
		t.Errorf("two hashes of the same password are equal (%q); want distinct salts", h1)
	}
	for _, h := range []string{h1, h2} {
		if ok, err := VerifyPassword(pw, h); !ok || err != nil {
			t.Errorf("VerifyPassword(right password, %q) = %v, %v; want true, nil", h, ok, err)
		}
	}
	for _, wrong := range []string{"", "correct-horse-2", "Correct-horse-1", "correct-horse-1 ", pw[:len(pw)-1]} {
		if ok, err := VerifyPassword(wrong, h1); ok || err != nil {
			t.Errorf("VerifyPassword(%q, hash of %q) = %v, %v; want false, nil", wrong, pw, ok, err)
		}
	}
}

func TestVerifyPasswordMalformed(t *testing.T) {
	good, err := HashPassword("correct-horse-1", FastPasswordParams)
	if err != nil {
		t.Fatal(err)
	}
	p := strings.Split(good, "$") // "", argon2id, v=19, m=..,t=..,p=.., salt, key
	join := func(parts ...string) string { return strings.Join(parts, "$") }
	tests := []struct{ name, hash string }{
		{"empty", ""},
		{"plain text", "correct-horse-1"},
		{"bcrypt", "$2a$10$N9qo8uLOickgx2ZMRZoMyeIjZAgcfl7p92ldGxad68LJZdL17lhWy"},
		{"argon2i", join("", "argon2i", p[2], p[3], p[4], p[5])},
		{"too few parts", join("", "argon2id", p[2], p[3], p[4])},
		{"too many parts", good + "$x"},
		{"wrong version", join("", "argon2id", "v=16", p[3], p[4], p[5])},
		{"version not a number", join("", "argon2id", "v=x", p[3], p[4], p[5])},
		{"parameters missing", join("", "argon2id", p[2], "", p[4], p[5])},
		{"parameters not numbers", join("", "argon2id", p[2], "m=a,t=b,p=c", p[4], p[5])},
		{"threads overflow", join("", "argon2id", p[2], "m=64,t=1,p=256", p[4], p[5])},
		{"salt not base64", join("", "argon2id", p[2], p[3], "!!!", p[5])},
		{"key not base64", join("", "argon2id", p[2], p[3], p[4], "***")},
		{"padded base64 key", join("", "argon2id", p[2], p[3], p[4], p[5]+"=")},
		{"zero rounds (argon2 would panic)", join("", "argon2id", p[2], "m=64,t=0,p=1", p[4], p[5])},
		{"zero threads (argon2 would panic)", join("", "argon2id", p[2], "m=64,t=1,p=0", p[4], p[5])},
		{"empty key (argon2 would panic)", join("", "argon2id", p[2], p[3], p[4], "")},
		{"huge memory", join("", "argon2id", p[2], "m=4294967295,t=1,p=1", p[4], p[5])},
		{"trailing junk in parameters", join("", "argon2id", p[2], p[3]+"junk", p[4], p[5])},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			ok, err := VerifyPassword("correct-horse-1", tt.hash)
			if ok || err == nil {
				t.Errorf("VerifyPassword(%q) = %v, %v; want false and an error", tt.hash, ok, err)
			}
		})
	}
}

func TestCheckPassword(t *testing.T) {
	const (
		short    = "at least 10"
		long     = "at most 128"
		mix      = "mix letters"
		common   = "too common"
		personal = "email name or username"
	)
	tests := []struct {
		name, pw string
		personal []string
		want     string // "" when acceptable, else a fragment of the problem
	}{
		{"acceptable", "correct-horse-1", nil, ""},
		{"acceptable with personal data", "correct-horse-1", []string{"annlee@x.test", "annlee"}, ""},
		{"empty", "", nil, short},
		{"too short", "abc123", nil, short},
		{"9 chars", "abcdefgh1", nil, short},
		{"10 chars", "abcdefgh1!", nil, ""},
		{"10 runes of 2 bytes", "éééééééé1!", nil, ""},
		{"9 runes but 18 bytes", "ééééééé1!", nil, short},
		{"128 chars", strings.Repeat("a", 127) + "1", nil, ""},
		{"129 chars", strings.Repeat("a", 128) + "1", nil, long},
		{"letters only", "abcdefghijkl", nil, mix},
		{"unicode letters only", "ÄÖÜäöüßéèêë", nil, mix},
		{"digits only", "123456789012", nil, mix},
		{"symbols only", "!@#$%^&*()_+", nil, mix},
		{"common", "password123", nil, common},
		{"common upper case", "PASSWORD123", nil, common},
		{"common other", "qwertyuiop1", nil, ""},
		{"contains email name", "annlee-rocks-9", []string{"annlee@x.test"}, personal},
		{"contains email name upper case", "xAnnLee-2024!", []string{"annlee@x.test"}, personal},
		{"contains username", "i-am-annlee-7", []string{"bob@x.test", "annlee"}, personal},
		{"a short name, enough left", "ann-is-great-1", []string{"ann@x.test"}, ""},
		{"README: bob", "bobs-password-9", []string{"bob@acme.test", "bob"}, ""},
		{"README: carol", "carols-password-9", []string{"carol@acme.test", "carol"}, ""},
		{"a long name, too little left", "carol-2024-xy", []string{"carol@acme.test"}, personal},
		{"a short name, too little left", "bob1234567!", []string{"bob@acme.test"}, personal},
		{"a two-letter name is not looked for", "al-12345678", []string{"al@acme.test"}, ""},
		{"email name and username both taken out", "annlee-j.doe-1234", []string{"annlee@x.test", "j.doe"}, personal},
		{"personal not contained", "correct-horse-1", []string{"annlee@x.test"}, ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got := CheckPassword(tt.pw, tt.personal...)
			switch {
			case tt.want == "" && got != "":
				t.Errorf("CheckPassword(%.40q, %q) = %q, want \"\"", tt.pw, tt.personal, got)
			case tt.want != "" && !strings.Contains(got, tt.want):
				t.Errorf("CheckPassword(%.40q, %q) = %q, want a problem mentioning %q", tt.pw, tt.personal, got, tt.want)
			}
		})
	}
}
