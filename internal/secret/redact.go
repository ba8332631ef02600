package secret

import (
	"errors"
	"net/url"
	"strings"
)

// RedactURL is the one way a URL that may carry credentials (a database,
// Redis, identity-provider or proxy URL) reaches a log line, an error or an
// audit entry: the password of its user info and the values of query
// parameters that look secret (password, secret, token, key, …) become
// "xxxxx". A value that does not parse as a URL is never echoed, since the
// secret could be anywhere in it: only its scheme (when it has a plausible
// one) is kept.
func RedactURL(raw string) string {
	u, err := url.Parse(raw)
	if err == nil && u.Scheme == "" && strings.Contains(raw, "=") {
		err = errKeywordDSN // "host=db password=…": not a URL, and the secret is in it
	}
	if err != nil {
		scheme, _, ok := strings.Cut(raw, "://")
		if !ok || !plausibleScheme(scheme) {
			return "(an unparseable URL, not shown)"
		}
		return scheme + "://(an unparseable URL, not shown)"
	}
	if u.User != nil {
		if _, has := u.User.Password(); has {
			u.User = url.UserPassword(u.User.Username(), "xxxxx")
		}
	}
	if u.RawQuery != "" {
		q := u.Query()
		changed := false
		for k := range q {
			if secretParam(k) {
				q[k] = []string{"xxxxx"}
				changed = true
			}
		}
		if changed {
			u.RawQuery = q.Encode()
		}
	}
	if u.Opaque != "" && strings.Contains(u.Opaque, "@") {
		// scheme:user:pass@host (no //): keep only the part after the last '@'.
		u.Opaque = "xxxxx@" + u.Opaque[strings.LastIndex(u.Opaque, "@")+1:]
	}
	return u.String()
}

var errKeywordDSN = errors.New("a key=value connection string")

func secretParam(k string) bool {
	k = strings.ToLower(k)
	for _, s := range []string{"pass", "pwd", "secret", "token", "key", "auth", "credential"} {
		if strings.Contains(k, s) {
			return true
		}
	}
	return false
}

func plausibleScheme(s string) bool {
	if s == "" || len(s) > 32 {
		return false
	}
	for i, r := range s {
		switch {
		case r >= 'a' && r <= 'z', r >= 'A' && r <= 'Z':
		case i > 0 && (r >= '0' && r <= '9' || r == '+' || r == '-' || r == '.'):
		default:
			return false
		}
	}
	return true
}
