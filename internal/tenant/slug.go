package tenant

import (
	"regexp"
	"strings"
)

var slugRe = regexp.MustCompile(`^[a-z0-9](?:[a-z0-9-]{1,30})[a-z0-9]$`)

// reserved slugs would collide with the platform's own host names and paths.
var reserved = map[string]bool{}

func init() {
	for _, w := range strings.Fields(`www api admin platform app static assets mail status docs help support blog
		auth login logout signup register account accounts billing console dashboard cdn media files img images
		smtp imap pop ftp ns ns1 ns2 dns mx webmail root system internal health healthz readyz metrics
		tenant tenants dev test staging prod production demo sandbox security secure oauth oidc sso id identity
		about contact legal privacy terms www1 www2 portal gateway v1 v2 public`) {
		reserved[w] = true
	}
}

// CheckSlug returns the problem with a slug, or "" when it is acceptable:
// 3 to 32 characters of a-z, 0-9 and '-', no leading or trailing hyphen, no
// double hyphen, and not a reserved word.
func CheckSlug(s string) string {
	switch {
	case len(s) < 3 || len(s) > 32:
		return "must be 3 to 32 characters"
	case !slugRe.MatchString(s):
		return "may use only a-z, 0-9 and '-', and must start and end with a letter or digit"
	case strings.Contains(s, "--"):
		return "must not contain two hyphens in a row"
	case reserved[s]:
		return "is reserved; choose another"
	}
	return ""
}

// IsReserved reports whether a slug is a reserved word.
func IsReserved(s string) bool { return reserved[s] }
