package identity

import (
	"crypto/rand"
	"crypto/subtle"
	"encoding/base64"
	"errors"
	"fmt"
	"strings"
	"unicode"

	"golang.org/x/crypto/argon2"
)

// PasswordParams are argon2id's cost parameters.
type PasswordParams struct {
	MemoryKiB uint32
	Time      uint32
	Threads   uint8
}

// DefaultPasswordParams follow OWASP's argon2id minimum (19 MiB, 2 passes).
var DefaultPasswordParams = PasswordParams{MemoryKiB: 19 * 1024, Time: 2, Threads: 1}

// FastPasswordParams are for tests only: cheap, and still real argon2id.
var FastPasswordParams = PasswordParams{MemoryKiB: 64, Time: 1, Threads: 1}

// HashPassword returns the PHC-format argon2id hash of pw.
func HashPassword(pw string, p PasswordParams) (string, error) {
	salt := make([]byte, 16)
	if _, err := rand.Read(salt); err != nil {
		return "", err
	}
	key := argon2.IDKey([]byte(pw), salt, p.Time, p.MemoryKiB, p.Threads, 32)
	return fmt.Sprintf("$argon2id$v=%d$m=%d,t=%d,p=%d$%s$%s", argon2.Version, p.MemoryKiB, p.Time, p.Threads,
		base64.RawStdEncoding.EncodeToString(salt), base64.RawStdEncoding.EncodeToString(key)), nil
}

// VerifyPassword checks pw against a hash from HashPassword in constant time.
func VerifyPassword(pw, encoded string) (bool, error) {
	parts := strings.Split(encoded, "$")
	if len(parts) != 6 || parts[1] != "argon2id" {
		return false, errors.New("unknown password hash format")
	}
	var version int
	var p PasswordParams
	if _, err := fmt.Sscanf(parts[2], "v=%d", &version); err != nil || version != argon2.Version {
		return false, errors.New("unsupported argon2 version")
	}
	// Parse strictly and bound every cost: a corrupt row must not crash or
	// exhaust the server (argon2 panics on zero rounds or threads).
	if _, err := fmt.Sscanf(parts[3], "m=%d,t=%d,p=%d", &p.MemoryKiB, &p.Time, &p.Threads); err != nil ||
		fmt.Sprintf("m=%d,t=%d,p=%d", p.MemoryKiB, p.Time, p.Threads) != parts[3] {
		return false, errors.New("malformed argon2 parameters")
	}
	if p.MemoryKiB < 8 || p.MemoryKiB > 1<<20 || p.Time < 1 || p.Time > 16 || p.Threads < 1 || p.Threads > 16 {
		return false, errors.New("argon2 parameters out of range")
	}
	salt, err := base64.RawStdEncoding.DecodeString(parts[4])
	if err != nil || len(salt) < 8 {
		return false, errors.New("malformed argon2 salt")
	}
	want, err := base64.RawStdEncoding.DecodeString(parts[5])
	if err != nil || len(want) < 16 || len(want) > 64 {
		return false, errors.New("malformed argon2 key")
	}
	got := argon2.IDKey([]byte(pw), salt, p.Time, p.MemoryKiB, p.Threads, uint32(len(want)))
	return subtle.ConstantTimeCompare(got, want) == 1, nil
}

// Password rules.
const (
	MinPasswordLen = 10
	MaxPasswordLen = 128
	minPersonalLen = 3 // shorter email names and usernames are not looked for
)

var commonPasswords = map[string]bool{
	"password123": true, "password1234": true, "1234567890": true, "qwertyuiop": true, "letmein123": true,
	"welcome123": true, "iloveyou123": true, "admin12345": true, "passw0rd123": true, "qwerty12345": true,
}

// CheckPassword returns a problem with pw ("" when acceptable): 10 to 128
// characters, a letter and a digit or symbol, not a common password, and not
// built on the account's email name or username: with every occurrence of
// either (when 3 characters or more) taken out, at least 10 characters must
// remain. So the rule is the same for every name, short or long:
// "bobs-password-9" and "carols-password-9" both pass (12 characters remain),
// "carol-2024-xy" and "bob1234567!" both fail.
func CheckPassword(pw string, personal ...string) string {
	n := len([]rune(pw))
	if n < MinPasswordLen {
		return fmt.Sprintf("must be at least %d characters", MinPasswordLen)
	}
	if n > MaxPasswordLen {
		return fmt.Sprintf("must be at most %d characters", MaxPasswordLen)
	}
	var letter, other bool
	for _, r := range pw {
		if unicode.IsLetter(r) {
			letter = true
		} else {
			other = true
		}
	}
	if !letter || !other {
		return "must mix letters with digits or symbols"
	}
	lower := strings.ToLower(pw)
	if commonPasswords[lower] {
		return "is too common; choose another"
	}
	rest := lower
	for _, p := range personal {
		p = strings.ToLower(p)
		if at := strings.IndexByte(p, '@'); at >= 0 {
			p = p[:at]
		}
		if len([]rune(p)) >= minPersonalLen {
			rest = strings.ReplaceAll(rest, p, "")
		}
	}
	if rest != lower && len([]rune(rest)) < MinPasswordLen {
		return fmt.Sprintf("must not be built on your email name or username: without it, at least %d characters must remain", MinPasswordLen)
	}
	return ""
}
