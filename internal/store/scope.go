package store

import (
	"context"
	"regexp"
)

// PlatformTenantID is the tenant id under which platform-level rows that live
// in tenant-owned tables are kept: operator refresh tokens and platform audit
// events. No real tenant ever has it (tenant ids are UUIDv7), so a tenant
// request can never see those rows.
const PlatformTenantID = "00000000-0000-0000-0000-000000000000"

type scopeKey struct{}

// Scope says which tenant's rows a database access may touch.
type Scope struct {
	TenantID string // set for a tenant scope
	Platform bool   // set for an explicit, audited platform-wide scope
	Reason   string // why platform scope was taken (for logs and audit)
}

// WithTenant returns a context whose database accesses are confined to tenantID.
func WithTenant(ctx context.Context, tenantID string) context.Context {
	return context.WithValue(ctx, scopeKey{}, Scope{TenantID: tenantID})
}

// WithPlatform returns a context whose database accesses may touch every
// tenant's rows. Only operator endpoints and background jobs take it, and the
// reason is recorded so the crossing can be audited.
func WithPlatform(ctx context.Context, reason string) context.Context {
	return context.WithValue(ctx, scopeKey{}, Scope{Platform: true, Reason: reason})
}

// ScopeFrom returns the scope in ctx; the zero Scope means none was set.
func ScopeFrom(ctx context.Context) Scope {
	s, _ := ctx.Value(scopeKey{}).(Scope)
	return s
}

// TenantFrom returns the tenant id of a tenant scope, or "".
func TenantFrom(ctx context.Context) string { return ScopeFrom(ctx).TenantID }

var uuidRe = regexp.MustCompile(`^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$`)

// ValidID reports whether s is a canonical lower-case UUID, the form of every id.
func ValidID(s string) bool { return uuidRe.MatchString(s) }
