package rbac

// PermissionInfo describes one permission of the catalogue.
type PermissionInfo struct {
	Name        string `json:"name"`
	Resource    string `json:"resource"`
	Action      string `json:"action"`
	Scope       string `json:"scope"`
	Description string `json:"description"`
	IsBuiltIn   bool   `json:"isBuiltIn"`
}

var catalogue = []PermissionInfo{
	{string(SelfRead), "self", "read", "tenant", "read one's own profile, sessions and API keys", true},
	{string(SelfUpdate), "self", "update", "tenant", "change one's own profile, password, 2FA, sessions and API keys", true},
	{string(TenantRead), "tenant", "read", "tenant", "read the tenant", true},
	{string(TenantUpdate), "tenant", "update", "tenant", "change the tenant's settings, branding and compliance", true},
	{string(UserRead), "user", "read", "tenant", "list and read users", true},
	{string(UserCreate), "user", "create", "tenant", "create users", true},
	{string(UserUpdate), "user", "update", "tenant", "change users, reset their 2FA", true},
	{string(UserDelete), "user", "delete", "tenant", "delete users", true},
	{string(UserAssignRole), "user", "assign_role", "tenant", "assign and remove roles", true},
	{string(RoleRead), "role", "read", "tenant", "read roles and the permission catalogue", true},
	{string(RoleManage), "role", "manage", "tenant", "create, change and delete custom roles", true},
	{string(AuthzCheck), "authz", "check", "tenant", "check any user's permissions", true},
	{string(SSOManage), "sso", "manage", "tenant", "configure the tenant's single sign-on (OIDC identity providers)", true},
	{string(AuditRead), "audit", "read", "tenant", "read the audit log", true},
	{string(UsageRead), "usage", "read", "tenant", "read usage", true},
	{string(UsageWrite), "usage", "write", "tenant", "report metered usage events", true},
	{string(BillingRead), "billing", "read", "tenant", "read billing", true},
	{string(BillingManage), "billing", "manage", "tenant", "manage billing", true},
	{string(AIInvoke), "ai", "invoke", "tenant", "call the AI gateway's OpenAI-compatible API (/v1/*)", true},
	{string(ChannelRead), "channel", "read", "tenant", "list the tenant's AI channels and gateway settings", true},
	{string(ChannelManage), "channel", "manage", "tenant", "add, change, test and delete the tenant's own AI channels (BYOK) and gateway settings", true},
	{string(AILogRead), "ai_log", "read", "tenant", "read the AI gateway's request log", true},
	{string(APIKeyManage), "api_key", "manage", "tenant", "list and revoke every API key of the tenant", true},
}

// Catalogue lists every permission a tenant role can grant.
func Catalogue() []PermissionInfo { return append([]PermissionInfo(nil), catalogue...) }

// Known reports whether a permission is in the catalogue.
func Known(p string) bool {
	for _, c := range catalogue {
		if c.Name == p {
			return true
		}
	}
	return false
}
