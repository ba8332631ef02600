package store

import (
	"context"
	"regexp"
	"sync/atomic"
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
	// PlatformRole, with TenantID, runs a tenant scope on the platform
	// role's connection (WithTenantOnPlatform).
	PlatformRole bool
	Reason       string // why platform scope was taken (for logs and audit)
}

// WithTenant returns a context whose database accesses are confined to
// tenantID. The platform's own rows (PlatformTenantID) are the platform
// role's: that scope always runs on the platform role's connection, and on
// PostgreSQL row-level security refuses them to every other role.
func WithTenant(ctx context.Context, tenantID string) context.Context {
	if tenantID == PlatformTenantID {
		return WithTenantOnPlatform(ctx, tenantID, "the platform's own rows")
	}
	return context.WithValue(Track(ctx), scopeKey{}, Scope{TenantID: tenantID})
}

// WithPlatform returns a context whose database accesses may touch every
// tenant's rows. Only operator endpoints and background jobs take it, and the
// reason is recorded so the crossing can be audited.
func WithPlatform(ctx context.Context, reason string) context.Context {
	return context.WithValue(Track(ctx), scopeKey{}, Scope{Platform: true, Reason: reason})
}

// WithTenantOnPlatform returns a context confined to tenantID, as WithTenant,
// whose transactions run on the platform role's connection. On PostgreSQL the
// server's own role may not write platform tables (tenants, tenant_slugs,
// tenant_domains, plans, operators, signing_keys, redemption_codes); the few
// writes a tenant's own work makes to them (its tenant row and slug at sign-up
// and when its admins change its settings, an operator's own sessions under
// PlatformTenantID) take this scope. Row-level security still confines every
// tenant table to tenantID: app.platform_scope is not set. In single-role mode
// it is WithTenant.
func WithTenantOnPlatform(ctx context.Context, tenantID, reason string) context.Context {
	return context.WithValue(Track(ctx), scopeKey{}, Scope{TenantID: tenantID, PlatformRole: true, Reason: reason})
}

type trackKey struct{}

// tracker marks a line of work (a request, one run of a job) while it holds
// a transaction. Contexts derived from the one that carries it share it, so
// Tx sees a transaction its caller opened even when the caller passes its
// own ctx (not the transaction's) further down.
type tracker struct {
	open atomic.Int32
}

// Track returns ctx marked as one line of work whose transactions Tx
// tracks: Tx refuses to open a transaction with a context whose line of work
// already holds one (see Tx). A context that already carries a mark keeps it.
// WithTenant and WithPlatform call it, and the HTTP layer marks every
// request at its start. Goroutines that open transactions at the same time
// must not share a line of work: give each its own with Fork.
func Track(ctx context.Context) context.Context {
	if _, ok := ctx.Value(trackKey{}).(*tracker); ok {
		return ctx
	}
	return context.WithValue(ctx, trackKey{}, &tracker{})
}

// Fork returns ctx as a new line of work, for a goroutine that opens
// transactions beside the one that started it (never from inside a
// transaction: work done there must use the transaction it is in).
func Fork(ctx context.Context) context.Context {
	return context.WithValue(ctx, trackKey{}, &tracker{})
}

// describe names the scope for logs.
func (s Scope) describe() string {
	switch {
	case s.Platform:
		return "platform (" + s.Reason + ")"
	case s.TenantID != "" && s.PlatformRole:
		return "tenant " + s.TenantID + " on the platform role (" + s.Reason + ")"
	case s.TenantID != "":
		return "tenant " + s.TenantID
	}
	return "none"
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
