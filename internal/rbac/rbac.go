// Package rbac decides what a principal may do. For now it knows the built-in
// roles of seed 000 §4.2; every permission decision in the server goes
// through Allowed, so the full RBAC engine can replace its inside without any
// caller changing.
package rbac

import (
	"slices"

	"github.com/tenantgate/tenantgate/internal/actor"
)

// Permission is "resource:action", as in seed 004 ("user:read").
type Permission string

// The permission catalogue.
const (
	SelfRead       Permission = "self:read"   // one's own profile, sessions and keys
	SelfUpdate     Permission = "self:update" // change them; every tenant role holds both
	TenantRead     Permission = "tenant:read"
	TenantUpdate   Permission = "tenant:update"
	UserRead       Permission = "user:read"
	UserCreate     Permission = "user:create"
	UserUpdate     Permission = "user:update"
	UserDelete     Permission = "user:delete"
	UserAssignRole Permission = "user:assign_role"
	AuditRead      Permission = "audit:read"
	APIKeyManage   Permission = "api_key:manage" // every key of the tenant, not only one's own
	RoleRead       Permission = "role:read"
	RoleManage     Permission = "role:manage"
	AuthzCheck     Permission = "authz:check"
	SSOManage      Permission = "sso:manage"
	UsageRead      Permission = "usage:read"
	UsageWrite     Permission = "usage:write"
	BillingRead    Permission = "billing:read"
	BillingManage  Permission = "billing:manage"
	AIInvoke       Permission = "ai:invoke"      // call the AI gateway (/v1/*)
	ChannelRead    Permission = "channel:read"   // list the tenant's AI channels and gateway settings
	ChannelManage  Permission = "channel:manage" // add, change, test and delete them (BYOK)
	AILogRead      Permission = "ai_log:read"    // read the AI gateway's request log

	// ServiceInternal is held only by the tenant's other services (X-Service-Token).
	ServiceInternal Permission = "service:internal"

	// Platform permissions, held only by operators.
	PlatformTenants Permission = "platform:tenants"
	PlatformAudit   Permission = "platform:audit"
)

// Built-in role names.
const (
	RoleOwner          = "owner"
	RoleAdmin          = "admin"
	RoleBillingManager = "billing_manager"
	RoleUser           = "user"
	RolePlatformAdmin  = "platform_admin"
)

// Role is a built-in role: its rank (higher outranks lower) and permissions.
type Role struct {
	Name        string
	Rank        int
	Permissions []Permission
}

var builtins = map[string]Role{
	RoleOwner: {RoleOwner, 40, []Permission{SelfRead, SelfUpdate, TenantRead, TenantUpdate, UserRead, UserCreate, UserUpdate, UserDelete,
		UserAssignRole, AuditRead, UsageRead, BillingRead, BillingManage, APIKeyManage, RoleRead, RoleManage, AuthzCheck, SSOManage, UsageWrite,
		AIInvoke, ChannelRead, ChannelManage, AILogRead}},
	RoleAdmin: {RoleAdmin, 30, []Permission{SelfRead, SelfUpdate, TenantRead, TenantUpdate, UserRead, UserCreate, UserUpdate, UserDelete,
		UserAssignRole, AuditRead, UsageRead, APIKeyManage, RoleRead, RoleManage, AuthzCheck, UsageWrite,
		AIInvoke, ChannelRead, ChannelManage, AILogRead}},
	RoleBillingManager: {RoleBillingManager, 20, []Permission{SelfRead, SelfUpdate, TenantRead, UserRead, UsageRead, BillingRead, BillingManage, RoleRead, AILogRead}},
	RoleUser:           {RoleUser, 10, []Permission{SelfRead, SelfUpdate, TenantRead, UserRead, AIInvoke}},
}

// TenantRoles lists the built-in roles a tenant user can hold, highest first.
func TenantRoles() []string { return []string{RoleOwner, RoleAdmin, RoleBillingManager, RoleUser} }

// IsTenantRole reports whether name is a role a tenant user may hold.
func IsTenantRole(name string) bool { _, ok := builtins[name]; return ok }

// Rank returns the highest rank among roles (0 for none).
func Rank(roles []string) int {
	r := 0
	for _, name := range roles {
		if b, ok := builtins[name]; ok && b.Rank > r {
			r = b.Rank
		}
	}
	return r
}

// RoleRank returns one role's rank.
func RoleRank(role string) int { return builtins[role].Rank }

// PermissionsOf returns the sorted union of the roles' permissions.
func PermissionsOf(roles []string) []string {
	set := map[Permission]bool{}
	for _, name := range roles {
		for _, p := range builtins[name].Permissions {
			set[p] = true
		}
	}
	out := make([]string, 0, len(set))
	for p := range set {
		out = append(out, string(p))
	}
	slices.Sort(out)
	return out
}

// Allowed is the one permission check. Operators hold every permission;
// a tenant principal holds those of its roles.
func Allowed(a *actor.Actor, p Permission) bool {
	if a == nil {
		return false
	}
	if a.Type == actor.TypeService {
		return p == ServiceInternal
	}
	if p == ServiceInternal {
		return false
	}
	if a.Type == actor.TypeOperator {
		return true
	}
	// An API key acts as its user, narrowed to the key's scopes.
	if a.KeyID != "" && !slices.Contains(a.Permissions, string(p)) {
		return false
	}
	for _, role := range a.Roles {
		if slices.Contains(builtins[role].Permissions, p) {
			return true
		}
	}
	return false
}
