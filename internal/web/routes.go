package web

import (
	"net/http"

	"github.com/tenantgate/tenantgate/internal/gateway/wire"
	"github.com/tenantgate/tenantgate/internal/rbac"
)

// routes lists EVERY route of the API with who may call it and the
// permission it needs. No handler checks roles by hand.
func (s *server) routes() []route {
	return []route{
		// Health and discovery.
		{http.MethodGet, "/healthz", public, "", s.healthz},
		{http.MethodGet, "/readyz", public, "", s.readyz},
		{http.MethodGet, "/api/health", public, "", s.health},
		{http.MethodGet, "/.well-known/jwks.json", public, "", s.jwks},
		{http.MethodGet, "/.well-known/openid-configuration", public, "", s.discovery},

		// Sign-up and sessions.
		{http.MethodPost, "/api/v1/tenants/signup", public, "", s.signup},
		{http.MethodPost, "/api/v1/auth/login", public, "", s.login},
		{http.MethodPost, "/api/v1/auth/refresh", public, "", s.refresh},
		{http.MethodPost, "/api/v1/auth/logout", public, "", s.logout},
		{http.MethodGet, "/api/v1/auth/oidc/{tenant_slug}/login", public, "", s.oidcLogin},
		{http.MethodGet, "/api/v1/auth/oidc/callback", public, "", s.oidcCallback},

		// The plan catalogue, public for pricing pages.
		{http.MethodGet, "/api/v1/plans", public, "", s.listPlans},

		// The caller's tenant.
		{http.MethodGet, "/api/v1/tenants/current", tenantScoped, rbac.TenantRead, s.currentTenant},
		{http.MethodPatch, "/api/v1/tenants/current/settings", tenantScoped, rbac.TenantUpdate, s.patchSettings},
		{http.MethodPatch, "/api/v1/tenants/current/branding", tenantScoped, rbac.TenantUpdate, s.patchBranding},
		{http.MethodPatch, "/api/v1/tenants/current/compliance", tenantScoped, rbac.TenantUpdate, s.patchCompliance},
		{http.MethodGet, "/api/v1/tenants/current/usage", tenantScoped, rbac.UsageRead, s.usage},
		{http.MethodGet, "/api/v1/tenants/current/entitlements", tenantScoped, rbac.TenantRead, s.entitlements},
		{http.MethodPost, "/api/v1/usage/events", tenantScoped, rbac.UsageWrite, s.ingestUsage},
		{http.MethodGet, "/api/v1/tenants/{id}/entitlement-snapshot", authenticated, rbac.TenantRead, s.entitlementSnapshot},

		// Users of the caller's tenant.
		{http.MethodGet, "/api/v1/users", tenantScoped, rbac.UserRead, s.listUsers},
		{http.MethodPost, "/api/v1/users", tenantScoped, rbac.UserCreate, s.createUser},
		{http.MethodGet, "/api/v1/users/me", tenantScoped, rbac.SelfRead, s.getMe},
		{http.MethodPatch, "/api/v1/users/me", tenantScoped, rbac.SelfUpdate, s.patchMe},
		{http.MethodPost, "/api/v1/users/me/2fa/setup", tenantScoped, rbac.SelfUpdate, s.setup2FA},
		{http.MethodPost, "/api/v1/users/me/2fa/enable", tenantScoped, rbac.SelfUpdate, s.enable2FA},
		{http.MethodPost, "/api/v1/users/me/2fa/disable", tenantScoped, rbac.SelfUpdate, s.disable2FA},
		{http.MethodGet, "/api/v1/users/{id}", tenantScoped, rbac.UserRead, s.getUser},
		{http.MethodPatch, "/api/v1/users/{id}", tenantScoped, rbac.UserUpdate, s.patchUser},
		{http.MethodDelete, "/api/v1/users/{id}", tenantScoped, rbac.UserDelete, s.deleteUser},
		{http.MethodDelete, "/api/v1/users/{id}/2fa", tenantScoped, rbac.UserUpdate, s.reset2FA},

		// Sessions of the calling user.
		{http.MethodGet, "/api/v1/sessions", tenantScoped, rbac.SelfRead, s.listSessions},
		{http.MethodDelete, "/api/v1/sessions/{id}", tenantScoped, rbac.SelfUpdate, s.revokeSession},

		// Single sign-on: the tenant's identity providers.
		{http.MethodGet, "/api/v1/identity-providers", tenantScoped, rbac.SSOManage, s.listIdPs},
		{http.MethodPost, "/api/v1/identity-providers", tenantScoped, rbac.SSOManage, s.createIdP},
		{http.MethodPatch, "/api/v1/identity-providers/{id}", tenantScoped, rbac.SSOManage, s.patchIdP},
		{http.MethodDelete, "/api/v1/identity-providers/{id}", tenantScoped, rbac.SSOManage, s.deleteIdP},

		// API keys: one's own; api_key:manage sees and revokes every key of the tenant.
		{http.MethodGet, "/api/v1/api-keys", tenantScoped, rbac.SelfRead, s.listAPIKeys},
		{http.MethodPost, "/api/v1/api-keys", tenantScoped, rbac.SelfUpdate, s.createAPIKey},
		{http.MethodDelete, "/api/v1/api-keys/{id}", tenantScoped, rbac.SelfUpdate, s.revokeAPIKey},

		// Roles, permissions and checks.
		{http.MethodGet, "/api/v1/permissions", tenantScoped, rbac.RoleRead, s.listPermissions},
		{http.MethodGet, "/api/v1/roles", tenantScoped, rbac.RoleRead, s.listRoles},
		{http.MethodPost, "/api/v1/roles", tenantScoped, rbac.RoleManage, s.createRole},
		{http.MethodGet, "/api/v1/roles/{id}", tenantScoped, rbac.RoleRead, s.getRole},
		{http.MethodPatch, "/api/v1/roles/{id}", tenantScoped, rbac.RoleManage, s.patchRole},
		{http.MethodDelete, "/api/v1/roles/{id}", tenantScoped, rbac.RoleManage, s.deleteRole},
		{http.MethodGet, "/api/v1/users/{id}/roles", tenantScoped, rbac.UserRead, s.listUserRoles},
		{http.MethodPost, "/api/v1/users/{id}/roles", tenantScoped, rbac.UserAssignRole, s.assignRole},
		{http.MethodDelete, "/api/v1/users/{id}/roles/{roleId}", tenantScoped, rbac.UserAssignRole, s.unassignRole},
		{http.MethodPost, "/api/v1/authz/check", tenantScoped, rbac.SelfRead, s.authzCheck},
		{http.MethodPost, "/api/v1/authz/check-batch", tenantScoped, rbac.SelfRead, s.authzCheckBatch},

		// Audit log: a tenant's own; operators see every tenant's.
		{http.MethodGet, "/api/v1/audit", authenticated, rbac.AuditRead, s.listAudit},

		// The AI gateway: OpenAI's API for a tenant's keys (errors in OpenAI's shape).
		{http.MethodPost, "/v1/chat/completions", tenantScoped, rbac.AIInvoke, s.relay(wire.OpChat)},
		{http.MethodPost, "/v1/completions", tenantScoped, rbac.AIInvoke, s.relay(wire.OpCompletion)},
		{http.MethodPost, "/v1/embeddings", tenantScoped, rbac.AIInvoke, s.relay(wire.OpEmbedding)},
		{http.MethodGet, "/v1/models", tenantScoped, rbac.AIInvoke, s.listModels},
		{http.MethodGet, "/v1/models/{model...}", tenantScoped, rbac.AIInvoke, s.getModel},
		// The tenant's own channels (BYOK), gateway settings and request log.
		{http.MethodGet, "/api/v1/channels", tenantScoped, rbac.ChannelRead, s.listChannels(false)},
		{http.MethodPost, "/api/v1/channels", tenantScoped, rbac.ChannelManage, s.createChannel(false)},
		{http.MethodGet, "/api/v1/channels/{id}", tenantScoped, rbac.ChannelRead, s.getChannel(false)},
		{http.MethodPatch, "/api/v1/channels/{id}", tenantScoped, rbac.ChannelManage, s.patchChannel(false)},
		{http.MethodDelete, "/api/v1/channels/{id}", tenantScoped, rbac.ChannelManage, s.deleteChannel(false)},
		{http.MethodPost, "/api/v1/channels/{id}/test", tenantScoped, rbac.ChannelManage, s.testChannel(false)},
		{http.MethodGet, "/api/v1/gateway/settings", tenantScoped, rbac.ChannelRead, s.getGatewaySettings},
		{http.MethodPatch, "/api/v1/gateway/settings", tenantScoped, rbac.ChannelManage, s.patchGatewaySettings},
		{http.MethodGet, "/api/v1/logs", tenantScoped, rbac.AILogRead, s.listAILogs},

		// Billing: balances, ledger, prices, top-ups, redemption codes.
		{http.MethodGet, "/api/v1/billing/balance", tenantScoped, rbac.BillingRead, s.bill(s.billingBalance)},
		{http.MethodGet, "/api/v1/billing/ledger", tenantScoped, rbac.BillingRead, s.bill(s.billingLedger)},
		{http.MethodGet, "/api/v1/billing/prices", tenantScoped, rbac.BillingRead, s.bill(s.billingPrices)},
		{http.MethodPut, "/api/v1/billing/settings", tenantScoped, rbac.BillingManage, s.bill(s.billingSettings)},
		{http.MethodPost, "/api/v1/billing/redeem", tenantScoped, rbac.BillingManage, s.bill(s.billingRedeem)},
		{http.MethodPost, "/api/v1/billing/webhooks/payment", public, "", s.bill(s.billingPaymentWebhook)}, // signed (X-Tenantgate-Signature)
		{http.MethodGet, "/api/v1/admin/prices", platformOnly, rbac.PlatformTenants, s.bill(s.adminListPrices)},
		{http.MethodGet, "/api/v1/admin/prices/{model...}", platformOnly, rbac.PlatformTenants, s.bill(s.adminGetPrice)},
		{http.MethodPut, "/api/v1/admin/prices/{model...}", platformOnly, rbac.PlatformTenants, s.bill(s.adminPutPrice)},
		{http.MethodDelete, "/api/v1/admin/prices/{model...}", platformOnly, rbac.PlatformTenants, s.bill(s.adminDeletePrice)},
		{http.MethodGet, "/api/v1/admin/tenants/{id}/prices", platformOnly, rbac.PlatformTenants, s.bill(s.adminTenantPrices)},
		{http.MethodPut, "/api/v1/admin/tenants/{id}/prices/{model...}", platformOnly, rbac.PlatformTenants, s.bill(s.adminPutTenantPrice)},
		{http.MethodDelete, "/api/v1/admin/tenants/{id}/prices/{model...}", platformOnly, rbac.PlatformTenants, s.bill(s.adminDeleteTenantPrice)},
		{http.MethodPost, "/api/v1/admin/tenants/{id}/topups", platformOnly, rbac.PlatformTenants, s.bill(s.adminTopUp)},
		{http.MethodPost, "/api/v1/admin/redemption-codes", platformOnly, rbac.PlatformTenants, s.bill(s.adminCreateCodes)},
		{http.MethodGet, "/api/v1/admin/redemption-codes", platformOnly, rbac.PlatformTenants, s.bill(s.adminListCodes)},
		{http.MethodDelete, "/api/v1/admin/redemption-codes/{id}", platformOnly, rbac.PlatformTenants, s.bill(s.adminDisableCode)},

		// The service API for a tenant's other services (seed 004), X-Service-Token only.
		{http.MethodPost, "/internal/tokens/verify", serviceOnly, rbac.ServiceInternal, s.svcVerifyToken},
		{http.MethodGet, "/internal/users/{id}", serviceOnly, rbac.ServiceInternal, s.svcGetUser},
		{http.MethodPost, "/internal/users/validate-credentials", serviceOnly, rbac.ServiceInternal, s.svcValidateCredentials},
		{http.MethodPost, "/internal/users/validate-status", serviceOnly, rbac.ServiceInternal, s.svcValidateStatus},
		{http.MethodPost, "/internal/sessions/revoke-user", serviceOnly, rbac.ServiceInternal, s.svcRevokeUser},
		{http.MethodPost, "/internal/permissions/check", serviceOnly, rbac.ServiceInternal, s.svcCheck},
		{http.MethodPost, "/internal/permissions/check-batch", serviceOnly, rbac.ServiceInternal, s.svcCheckBatch},
		{http.MethodGet, "/internal/users/{id}/roles", serviceOnly, rbac.ServiceInternal, s.svcUserRoles},
		{http.MethodPost, "/internal/users/{id}/roles", serviceOnly, rbac.ServiceInternal, s.svcAssignRole},
		{http.MethodDelete, "/internal/users/{id}/roles/{roleId}", serviceOnly, rbac.ServiceInternal, s.svcUnassignRole},
		{http.MethodPost, "/internal/metrics/usage", serviceOnly, rbac.ServiceInternal, s.svcUsage},
		{http.MethodPost, "/internal/quota/check", serviceOnly, rbac.ServiceInternal, s.svcQuotaCheck},
		{http.MethodPost, "/internal/billing/payment-status", serviceOnly, rbac.ServiceInternal, s.svcPaymentStatus},
		{http.MethodPost, "/internal/events", serviceOnly, rbac.ServiceInternal, s.svcEvent},
		{http.MethodPost, "/internal/events/batch", serviceOnly, rbac.ServiceInternal, s.svcEventBatch},

		// Platform operators.
		{http.MethodGet, "/api/v1/admin/tenants", platformOnly, rbac.PlatformTenants, s.adminListTenants},
		{http.MethodPost, "/api/v1/admin/tenants", platformOnly, rbac.PlatformTenants, s.adminCreateTenant},
		{http.MethodGet, "/api/v1/admin/tenants/{id}", platformOnly, rbac.PlatformTenants, s.adminGetTenant},
		{http.MethodPatch, "/api/v1/admin/tenants/{id}", platformOnly, rbac.PlatformTenants, s.adminPatchTenant},
		{http.MethodDelete, "/api/v1/admin/tenants/{id}", platformOnly, rbac.PlatformTenants, s.adminTransition("delete")},
		{http.MethodPost, "/api/v1/admin/tenants/{id}/suspend", platformOnly, rbac.PlatformTenants, s.adminTransition("suspend")},
		{http.MethodPost, "/api/v1/admin/tenants/{id}/activate", platformOnly, rbac.PlatformTenants, s.adminTransition("activate")},
		{http.MethodPost, "/api/v1/admin/tenants/{id}/restore", platformOnly, rbac.PlatformTenants, s.adminTransition("restore")},
		{http.MethodPost, "/api/v1/admin/tenants/{id}/impersonate", platformOnly, rbac.PlatformTenants, s.adminImpersonate},
		{http.MethodGet, "/api/v1/admin/tenants/{id}/usage", platformOnly, rbac.PlatformTenants, s.adminUsage},
		{http.MethodGet, "/api/v1/admin/tenants/{id}/entitlements", platformOnly, rbac.PlatformTenants, s.adminEntitlements},
		{http.MethodPut, "/api/v1/admin/tenants/{id}/entitlements", platformOnly, rbac.PlatformTenants, s.adminSetOverrides},
		{http.MethodGet, "/api/v1/admin/plans", platformOnly, rbac.PlatformTenants, s.listPlans},
		{http.MethodGet, "/api/v1/admin/plans/{name}", platformOnly, rbac.PlatformTenants, s.adminGetPlan},
		{http.MethodPut, "/api/v1/admin/plans/{name}", platformOnly, rbac.PlatformTenants, s.adminPutPlan},
		{http.MethodGet, "/api/v1/admin/channels", platformOnly, rbac.PlatformTenants, s.listChannels(true)},
		{http.MethodPost, "/api/v1/admin/channels", platformOnly, rbac.PlatformTenants, s.createChannel(true)},
		{http.MethodGet, "/api/v1/admin/channels/{id}", platformOnly, rbac.PlatformTenants, s.getChannel(true)},
		{http.MethodPatch, "/api/v1/admin/channels/{id}", platformOnly, rbac.PlatformTenants, s.patchChannel(true)},
		{http.MethodDelete, "/api/v1/admin/channels/{id}", platformOnly, rbac.PlatformTenants, s.deleteChannel(true)},
		{http.MethodPost, "/api/v1/admin/channels/{id}/test", platformOnly, rbac.PlatformTenants, s.testChannel(true)},
	}
}

// routeFeatures names the plan feature a route needs, checked after the
// permission for tenant principals (operators are not bound by plans).
var routeFeatures = map[string]string{
	"POST /api/v1/api-keys":                 "apiAccess",
	"POST /api/v1/identity-providers":       "sso",
	"PATCH /api/v1/identity-providers/{id}": "sso",
	"POST /api/v1/channels":                 "byok",
	"PATCH /api/v1/channels/{id}":           "byok",
	"POST /api/v1/channels/{id}/test":       "byok",
}
