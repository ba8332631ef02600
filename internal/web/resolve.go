package web

import (
	"net"
	"net/http"
	"strings"

	"github.com/tenantgate/tenantgate/internal/store"
)

// hint is what a request says about its tenant, before any lookup. Fields
// are listed in the order resolution tries them; the first present wins.
type hint struct {
	Domain     string // a host that is not ours: maybe a verified custom domain
	Subdomain  string // {slug}.{base domain}
	PathSlug   string // /t/{slug}/...
	HeaderID   string // X-Tenant-ID
	HeaderSlug string // X-Tenant-Slug
	Query      string // ?tenant= (operators only)
}

// parseHost splits a Host header into a subdomain slug of baseDomain or a
// foreign domain. Hosts that are IP addresses, localhost, or the base domain
// itself name no tenant.
func parseHost(host, baseDomain string) (subdomain, domain string) {
	h := strings.ToLower(strings.TrimSpace(host))
	if hh, _, err := net.SplitHostPort(h); err == nil {
		h = hh
	}
	h = strings.TrimSuffix(h, ".")
	base := strings.ToLower(strings.TrimSuffix(strings.TrimSpace(baseDomain), "."))
	if h == "" || len(h) > 253 || net.ParseIP(strings.Trim(h, "[]")) != nil || h == "localhost" || strings.HasSuffix(h, ".localhost") && base != "localhost" {
		return "", ""
	}
	if base != "" {
		if h == base {
			return "", ""
		}
		if sub, ok := strings.CutSuffix(h, "."+base); ok {
			if !strings.Contains(sub, ".") {
				return sub, ""
			}
			return "", "" // deeper names under our domain are not tenants
		}
	}
	if !strings.Contains(h, ".") {
		return "", ""
	}
	return "", h
}

// splitTenantPath cuts a leading /t/{slug} from a path; ok is false when the
// path has no such prefix.
func splitTenantPath(p string) (slug, rest string, ok bool) {
	after, found := strings.CutPrefix(p, "/t/")
	if !found {
		return "", "", false
	}
	slug, rest, _ = strings.Cut(after, "/")
	if slug == "" {
		return "", "", false
	}
	return slug, "/" + rest, true
}

func readHint(r *http.Request, baseDomain, pathSlug string) hint {
	var h hint
	h.Subdomain, h.Domain = parseHost(r.Host, baseDomain)
	h.PathSlug = pathSlug
	h.HeaderID = strings.ToLower(strings.TrimSpace(r.Header.Get("X-Tenant-ID")))
	h.HeaderSlug = strings.ToLower(strings.TrimSpace(r.Header.Get("X-Tenant-Slug")))
	h.Query = strings.TrimSpace(r.URL.Query().Get("tenant"))
	return h
}

// validHeaderID refuses an X-Tenant-ID that is not an id before any lookup.
func validHeaderID(id string) bool { return store.ValidID(id) }
