package web

import (
	"context"
	"fmt"
	"net/http"
	"runtime"
	"strings"
	"time"

	"gorm.io/gorm"

	"github.com/tenantgate/tenantgate/internal/actor"
	"github.com/tenantgate/tenantgate/internal/audit"
	"github.com/tenantgate/tenantgate/internal/errs"
	"github.com/tenantgate/tenantgate/internal/identity"
	"github.com/tenantgate/tenantgate/internal/quota"
	"github.com/tenantgate/tenantgate/internal/rbac"
	"github.com/tenantgate/tenantgate/internal/store"
	"github.com/tenantgate/tenantgate/internal/tenant"
)

// --- health and discovery ---

func (s *server) healthz(w http.ResponseWriter, r *http.Request) error {
	writeJSON(w, http.StatusOK, map[string]string{"status": "ok"})
	return nil
}

func (s *server) readyz(w http.ResponseWriter, r *http.Request) error {
	ctx, cancel := context.WithTimeout(r.Context(), 2*time.Second)
	defer cancel()
	if err := s.Store.Ping(ctx); err != nil {
		return &errs.Error{Kind: errs.KindUnavailable, Code: errs.CodeServiceUnavailable, Msg: "the database does not answer", Err: err}
	}
	if !s.Store.Available() {
		return &errs.Error{Kind: errs.KindUnavailable, Code: errs.CodeServiceUnavailable, RetryAfter: dbRetryAfter,
			Msg: "the database answers, but transactions failed in the last seconds (full disk, read-only, I/O errors)"}
	}
	if s.Gateway != nil && !s.Gateway.Ready() {
		return errNotReady
	}
	writeJSON(w, http.StatusOK, map[string]string{"status": "ready"})
	return nil
}

func (s *server) health(w http.ResponseWriter, r *http.Request) error {
	ctx, cancel := context.WithTimeout(r.Context(), 2*time.Second)
	defer cancel()
	deps := map[string]string{}
	status, code := "healthy", http.StatusOK
	check := func(name string, p Pinger) {
		if err := p.Ping(ctx); err != nil {
			deps[name] = "unhealthy"
			status, code = "unhealthy", http.StatusServiceUnavailable
			s.log.Warn("health check failed", "dependency", name, "err", err)
			return
		}
		deps[name] = "healthy"
	}
	check("database", s.Store)
	for name, p := range s.Dependencies {
		check(name, p)
	}
	for name, p := range s.Degradable {
		if err := p.Ping(ctx); err != nil {
			deps[name] = "unavailable"
			if status == "healthy" {
				status = "degraded"
			}
			s.log.Debug("health check: a dependency with a fallback is down", "dependency", name, "err", err)
			continue
		}
		deps[name] = "healthy"
	}
	if g, ok := s.Limiter.(*quota.Guarded); ok {
		deps["rateLimiter"] = g.Status()
		if deps["rateLimiter"] != "healthy" && status == "healthy" {
			status = "degraded"
		}
	}
	var m runtime.MemStats
	runtime.ReadMemStats(&m)
	st := s.Store.SQL().Stats()
	writeJSON(w, code, map[string]any{
		"status": status, "timestamp": time.Now().UTC().Format(time.RFC3339), "service": ServiceName, "version": s.Version,
		"dependencies": deps,
		"metrics": map[string]any{
			"uptime":      int64(time.Since(s.StartedAt).Seconds()),
			"memory":      map[string]string{"used": humanBytes(m.HeapAlloc), "total": humanBytes(m.Sys)},
			"connections": map[string]int{"active": st.InUse, "max": st.MaxOpenConnections},
			"goroutines":  runtime.NumGoroutine(),
		},
	})
	return nil
}

func humanBytes(n uint64) string {
	switch {
	case n >= 1<<30:
		return fmt.Sprintf("%.1fGB", float64(n)/(1<<30))
	case n >= 1<<20:
		return fmt.Sprintf("%dMB", n>>20)
	}
	return fmt.Sprintf("%dKB", n>>10)
}

func (s *server) jwks(w http.ResponseWriter, r *http.Request) error {
	raw, err := s.Identity.Signer().Keys().JWKS()
	if err != nil {
		return errs.Internal(err, "publish keys")
	}
	w.Header().Set("Content-Type", "application/jwk-set+json")
	w.Header().Set("Cache-Control", "public, max-age=300")
	_, _ = w.Write(raw)
	return nil
}

func (s *server) discovery(w http.ResponseWriter, r *http.Request) error {
	cfg := s.Identity.Signer().Config()
	base := strings.TrimSuffix(s.PublicURL, "/")
	writeJSON(w, http.StatusOK, map[string]any{
		"issuer":                                cfg.Issuer,
		"jwks_uri":                              base + "/.well-known/jwks.json",
		"token_endpoint":                        base + "/api/v1/auth/login",
		"response_types_supported":              []string{"token"},
		"subject_types_supported":               []string{"public"},
		"id_token_signing_alg_values_supported": []string{"EdDSA"},
		"claims_supported": []string{"sub", "tenant", "username", "email", "roles", "permissions", "sid",
			"iat", "nbf", "exp", "iss", "aud", "jti"},
	})
	return nil
}

// --- sign-up and sessions ---

// SignupRequest creates a tenant with its owner.
type SignupRequest struct {
	Slug          string `json:"slug"`
	Name          string `json:"name"`
	OwnerEmail    string `json:"ownerEmail"`
	OwnerPassword string `json:"ownerPassword"`
	OwnerName     string `json:"ownerName"`
	Plan          string `json:"plan"`
}

func (s *server) createTenant(ctx context.Context, in SignupRequest, withTokens bool) (*tenant.Tenant, *identity.User, *identity.Tokens, error) {
	return CreateTenant(ctx, s.Tenants, s.Identity, in, withTokens)
}

// owner is the new user a signup creates.
func (in SignupRequest) owner() identity.NewUser {
	first, last, _ := strings.Cut(strings.TrimSpace(in.OwnerName), " ")
	return identity.NewUser{Email: in.OwnerEmail, Password: in.OwnerPassword, FirstName: first, LastName: strings.TrimSpace(last),
		Roles: []string{rbac.RoleOwner}}
}

// Validate reports every problem of a signup's values (the tenant's and its
// owner's; the plan is checked against the catalogue on creation).
func (in SignupRequest) Validate() errs.Fields {
	f := tenant.Signup{Slug: in.Slug, Name: in.Name}.Validate()
	for k, p := range ownerFields(in.owner().Validate()) {
		f.Add(k, p)
	}
	return f
}

// ownerFields names a new owner's problems by the signup body's fields.
func ownerFields(f errs.Fields) errs.Fields {
	names := map[string]string{"email": "ownerEmail", "username": "ownerEmail", "password": "ownerPassword",
		"firstName": "ownerName", "lastName": "ownerName"}
	out := errs.Fields{}
	for k, p := range f {
		if n, ok := names[k]; ok {
			out.Add(n, p)
		} else {
			out.Add("owner"+strings.ToUpper(k[:1])+k[1:], p)
		}
	}
	return out
}

// CreateTenant provisions a tenant and its owner in one transaction; the
// API's signup, the operators' API and the CLI all create tenants through it.
// Every problem of the tenant's and the owner's values is named at once.
func CreateTenant(ctx context.Context, tenants *tenant.Service, ident *identity.Service, in SignupRequest, withTokens bool) (*tenant.Tenant, *identity.User, *identity.Tokens, error) {
	f := tenants.CheckSignup(ctx, tenant.Signup{Slug: in.Slug, Name: in.Name, Plan: in.Plan})
	for k, p := range ownerFields(in.owner().Validate()) {
		f.Add(k, p)
	}
	if err := f.Err(); err != nil {
		return nil, nil, nil, err
	}
	ownerIn, err := ident.Hashed(in.owner()) // before the transaction, not inside it
	if err != nil {
		return nil, nil, nil, err
	}
	var owner *identity.User
	var tokens *identity.Tokens
	t, err := tenants.Create(ctx, tenant.Signup{Slug: in.Slug, Name: in.Name, Plan: in.Plan},
		func(ctx context.Context, tx *gorm.DB, t *tenant.Tenant) error {
			var err error
			owner, err = ident.CreateUserTx(ctx, tx, ownerIn)
			if err != nil {
				return prefixFields(err, "owner")
			}
			if withTokens {
				tokens, err = ident.IssueUserTokensTx(ctx, tx, owner)
			}
			return err
		})
	return t, owner, tokens, err
}

// prefixFields renames user field errors to the signup body's names.
func prefixFields(err error, prefix string) error {
	e, ok := errs.As(err)
	if !ok || len(e.Fields) == 0 {
		return err
	}
	cp := *e
	cp.Fields = map[string]string{}
	for k, v := range e.Fields {
		cp.Fields[prefix+strings.ToUpper(k[:1])+k[1:]] = v
	}
	return &cp
}

func (s *server) signup(w http.ResponseWriter, r *http.Request) error {
	var in SignupRequest
	if err := decodeJSON(r, &in); err != nil {
		return err
	}
	ctx := r.Context()
	t, owner, tokens, err := s.createTenant(ctx, in, true)
	if err != nil {
		return err
	}
	writeJSON(w, http.StatusCreated, map[string]any{"tenant": t, "user": owner, "tokens": tokens})
	return nil
}

type loginRequest struct {
	Email    string `json:"email"`
	Password string `json:"password"`
	Tenant   string `json:"tenant"` // slug or id; empty for operators
	OTP      string `json:"otp"`    // the authenticator code or a recovery code, when 2FA is on
}

func (s *server) login(w http.ResponseWriter, r *http.Request) error {
	var in loginRequest
	if err := decodeJSON(r, &in); err != nil {
		return err
	}
	f := errs.Fields{}
	if strings.TrimSpace(in.Email) == "" {
		f.Add("email", "is required")
	}
	if in.Password == "" {
		f.Add("password", "is required")
	}
	if len(in.Password) > 1024 {
		f.Add("password", "is too long")
	}
	if err := f.Err(); err != nil {
		return err
	}
	ctx := r.Context()
	if err, _ := ctx.Value(keyResolveErr).(error); err != nil {
		return err // the host or a header names a tenant that does not exist
	}
	t := currentTenant(ctx)
	if in.Tenant != "" {
		named, err := s.Tenants.ByRef(ctx, strings.ToLower(strings.TrimSpace(in.Tenant)))
		if err != nil {
			return err
		}
		if t != nil && t.ID != named.ID {
			return errs.NotFound(errs.CodeTenantNotFound, "no tenant by that reference")
		}
		t = named
	}
	if t == nil {
		_, tokens, err := s.Identity.LoginOperator(ctx, in.Email, in.Password)
		if err != nil {
			return err
		}
		writeJSON(w, http.StatusOK, tokens)
		return nil
	}
	if err := gate(t); err != nil {
		return err
	}
	if a := actor.From(ctx); !t.Compliance.AllowsIP(a.SourceIP) {
		return errs.Forbidden(CodeIPNotAllowed, "this organisation does not allow sign-in from %s", a.SourceIP)
	}
	_, tokens, err := s.Identity.Login(store.WithTenant(ctx, t.ID), in.Email, in.Password, in.OTP)
	if err != nil {
		return err
	}
	writeJSON(w, http.StatusOK, tokens)
	return nil
}

type refreshRequest struct {
	RefreshToken string `json:"refreshToken"`
}

func (s *server) refresh(w http.ResponseWriter, r *http.Request) error {
	var in refreshRequest
	if err := decodeJSON(r, &in); err != nil {
		return err
	}
	tenantID, ok := identity.RefreshTokenTenant(in.RefreshToken)
	if !ok {
		return errs.Unauthenticated(errs.CodeTokenInvalid, "the refresh token is not valid; log in again")
	}
	if tenantID != store.PlatformTenantID {
		t, err := s.Tenants.Get(r.Context(), tenantID)
		if err != nil {
			return errs.Unauthenticated(errs.CodeTokenInvalid, "the refresh token is not valid; log in again")
		}
		if err := gate(t); err != nil {
			return err
		}
		// The allowlist binds a session's renewal as it binds its start.
		if a := actor.From(r.Context()); !t.Compliance.AllowsIP(a.SourceIP) {
			return errs.Forbidden(CodeIPNotAllowed, "this organisation does not allow sign-in from %s", a.SourceIP)
		}
	}
	tokens, err := s.Identity.Refresh(r.Context(), in.RefreshToken)
	if err != nil {
		return err
	}
	writeJSON(w, http.StatusOK, tokens)
	return nil
}

func (s *server) logout(w http.ResponseWriter, r *http.Request) error {
	var in refreshRequest
	if r.ContentLength != 0 {
		if err := decodeJSON(r, &in); err != nil {
			return err
		}
	}
	a := actor.From(r.Context())
	switch {
	case in.RefreshToken != "":
		if err := s.Identity.Logout(r.Context(), in.RefreshToken); err != nil {
			return err
		}
	case a != nil && a.SessionID != "" && (a.Type == actor.TypeUser || a.Type == actor.TypeOperator):
		tid := a.TenantID
		if a.IsOperator() {
			tid = store.PlatformTenantID
		}
		if err := s.Identity.LogoutSession(r.Context(), tid, a.SessionID); err != nil {
			return errs.Internal(err, "log out")
		}
	default:
		return errs.Invalid("say which session to end", map[string]string{"refreshToken": "send the refresh token, or call with the session's bearer token"})
	}
	w.WriteHeader(http.StatusNoContent)
	return nil
}

// --- the caller's tenant ---

func (s *server) currentTenant(w http.ResponseWriter, r *http.Request) error {
	writeJSON(w, http.StatusOK, currentTenant(r.Context()))
	return nil
}

func (s *server) patchSettings(w http.ResponseWriter, r *http.Request) error {
	var in tenant.SettingsPatch
	if err := decodeJSON(r, &in); err != nil {
		return err
	}
	return s.patchCurrent(w, r, tenant.Patch{Settings: &in})
}

func (s *server) patchBranding(w http.ResponseWriter, r *http.Request) error {
	var in tenant.BrandingPatch
	if err := decodeJSON(r, &in); err != nil {
		return err
	}
	return s.patchCurrent(w, r, tenant.Patch{Branding: &in})
}

func (s *server) patchCompliance(w http.ResponseWriter, r *http.Request) error {
	var in tenant.CompliancePatch
	if err := decodeJSON(r, &in); err != nil {
		return err
	}
	return s.patchCurrent(w, r, tenant.Patch{Compliance: &in})
}

func (s *server) patchCurrent(w http.ResponseWriter, r *http.Request, p tenant.Patch) error {
	t, err := s.Tenants.Update(r.Context(), currentTenant(r.Context()).ID, p, false)
	if err != nil {
		return err
	}
	writeJSON(w, http.StatusOK, t)
	return nil
}

func (s *server) usage(w http.ResponseWriter, r *http.Request) error {
	t := currentTenant(r.Context())
	return s.usageAnswer(w, r, t.ID, t.Plan)
}

// --- users ---

func (s *server) listUsers(w http.ResponseWriter, r *http.Request) error {
	q := r.URL.Query()
	p, err := store.ParsePage(q.Get("limit"), q.Get("cursor"))
	if err != nil {
		return err
	}
	items, next, err := s.Identity.ListUsers(r.Context(), identity.UserFilter{Status: q.Get("status"), Role: q.Get("role"), Query: q.Get("q")}, p)
	if err != nil {
		return err
	}
	writeJSON(w, http.StatusOK, newList(items, next))
	return nil
}

func (s *server) createUser(w http.ResponseWriter, r *http.Request) error {
	var in identity.NewUser
	if err := decodeJSON(r, &in); err != nil {
		return err
	}
	u, err := s.Identity.CreateUser(r.Context(), in)
	if err != nil {
		return err
	}
	w.Header().Set("Location", "/api/v1/users/"+u.ID)
	writeJSON(w, http.StatusCreated, u)
	return nil
}

func (s *server) getUser(w http.ResponseWriter, r *http.Request) error {
	u, err := s.Identity.GetUser(r.Context(), r.PathValue("id"))
	if err != nil {
		return err
	}
	writeJSON(w, http.StatusOK, u)
	return nil
}

func (s *server) patchUser(w http.ResponseWriter, r *http.Request) error {
	var in identity.UserPatch
	if err := decodeJSON(r, &in); err != nil {
		return err
	}
	if in.CurrentPassword != nil {
		return errs.Invalid("currentPassword is only for PATCH /api/v1/users/me", map[string]string{"currentPassword": "is not a field of this endpoint"})
	}
	u, err := s.Identity.UpdateUser(r.Context(), r.PathValue("id"), in, false)
	if err != nil {
		return err
	}
	writeJSON(w, http.StatusOK, u)
	return nil
}

func (s *server) deleteUser(w http.ResponseWriter, r *http.Request) error {
	if err := s.Identity.DeleteUser(r.Context(), r.PathValue("id")); err != nil {
		return err
	}
	w.WriteHeader(http.StatusNoContent)
	return nil
}

// me is the calling tenant user; operators have no /users/me.
func me(r *http.Request) (*actor.Actor, error) {
	a := actor.From(r.Context())
	if a == nil || a.Type != actor.TypeUser {
		return nil, errs.NotFound(errs.CodeUserNotFound, "operators are not users of a tenant; use /api/v1/users/{id}")
	}
	return a, nil
}

func (s *server) getMe(w http.ResponseWriter, r *http.Request) error {
	a, err := me(r)
	if err != nil {
		return err
	}
	u, err := s.Identity.GetUser(r.Context(), a.ID)
	if err != nil {
		return err
	}
	writeJSON(w, http.StatusOK, u)
	return nil
}

func (s *server) patchMe(w http.ResponseWriter, r *http.Request) error {
	a, err := me(r)
	if err != nil {
		return err
	}
	var in identity.UserPatch
	if err := decodeJSON(r, &in); err != nil {
		return err
	}
	u, err := s.Identity.UpdateUser(r.Context(), a.ID, in, true)
	if err != nil {
		return err
	}
	writeJSON(w, http.StatusOK, u)
	return nil
}

// --- audit ---

func parseTime(f errs.Fields, name, v string) *time.Time {
	if v == "" {
		return nil
	}
	t, err := time.Parse(time.RFC3339, v)
	if err != nil {
		f.Add(name, "must be an RFC 3339 time such as 2026-01-02T15:04:05Z")
		return nil
	}
	return &t
}

func (s *server) listAudit(w http.ResponseWriter, r *http.Request) error {
	q := r.URL.Query()
	p, err := store.ParsePage(q.Get("limit"), q.Get("cursor"))
	if err != nil {
		return err
	}
	f := errs.Fields{}
	flt := audit.Filter{From: parseTime(f, "from", q.Get("from")), To: parseTime(f, "to", q.Get("to")),
		ActorID: q.Get("actorId"), Resource: q.Get("resource"), ResourceID: q.Get("resourceId"), Action: q.Get("action"),
		EventType: q.Get("eventType"), Outcome: q.Get("outcome"), TenantID: q.Get("tenantId")}
	if flt.TenantID != "" {
		if !actor.From(r.Context()).IsOperator() {
			f.Add("tenantId", "is for operators; your own tenant's events are listed")
		} else if !store.ValidID(flt.TenantID) {
			f.Add("tenantId", "must be a tenant id")
		}
	}
	if err := f.Err(); err != nil {
		return err
	}
	items, next, err := audit.List(r.Context(), s.Store, flt, p)
	if err != nil {
		return err
	}
	writeJSON(w, http.StatusOK, newList(items, next))
	return nil
}

// --- platform operators ---

func (s *server) adminListTenants(w http.ResponseWriter, r *http.Request) error {
	q := r.URL.Query()
	p, err := store.ParsePage(q.Get("limit"), q.Get("cursor"))
	if err != nil {
		return err
	}
	items, next, err := s.Tenants.List(r.Context(), tenant.Filter{Status: q.Get("status"), Plan: q.Get("plan"), Query: q.Get("q")}, p)
	if err != nil {
		return err
	}
	writeJSON(w, http.StatusOK, newList(items, next))
	return nil
}

func (s *server) adminCreateTenant(w http.ResponseWriter, r *http.Request) error {
	var in SignupRequest
	if err := decodeJSON(r, &in); err != nil {
		return err
	}
	t, owner, _, err := s.createTenant(r.Context(), in, false)
	if err != nil {
		return err
	}
	w.Header().Set("Location", "/api/v1/admin/tenants/"+t.ID)
	writeJSON(w, http.StatusCreated, map[string]any{"tenant": t, "user": owner})
	return nil
}

func (s *server) adminGetTenant(w http.ResponseWriter, r *http.Request) error {
	t, err := s.Tenants.Get(r.Context(), r.PathValue("id"))
	if err != nil {
		return err
	}
	writeJSON(w, http.StatusOK, t)
	return nil
}

func (s *server) adminPatchTenant(w http.ResponseWriter, r *http.Request) error {
	var in tenant.Patch
	if err := decodeJSON(r, &in); err != nil {
		return err
	}
	if in.Plan != nil {
		// An upgrade applies at once; a downgrade that usage exceeds is refused.
		if err := s.Quota.CheckPlanChange(r.Context(), r.PathValue("id"), *in.Plan); err != nil {
			return err
		}
		defer s.Quota.Invalidate(r.PathValue("id"))
	}
	t, err := s.Tenants.Update(r.Context(), r.PathValue("id"), in, true)
	if err != nil {
		return err
	}
	writeJSON(w, http.StatusOK, t)
	return nil
}

type transitionRequest struct {
	Reason string `json:"reason"`
}

func (s *server) adminTransition(action string) func(w http.ResponseWriter, r *http.Request) error {
	return func(w http.ResponseWriter, r *http.Request) error {
		var in transitionRequest
		if r.ContentLength != 0 {
			if err := decodeJSON(r, &in); err != nil {
				return err
			}
		}
		if len(in.Reason) > 500 {
			return errs.Invalid("the reason is too long", map[string]string{"reason": "must be at most 500 characters"})
		}
		t, err := s.Tenants.Transition(r.Context(), r.PathValue("id"), action, in.Reason)
		if err != nil {
			return err
		}
		writeJSON(w, http.StatusOK, t)
		return nil
	}
}

type impersonateRequest struct {
	UserID   string `json:"userId"`
	ReadOnly bool   `json:"readOnly"`
	Reason   string `json:"reason"`
}

func (s *server) adminImpersonate(w http.ResponseWriter, r *http.Request) error {
	var in impersonateRequest
	if err := decodeJSON(r, &in); err != nil {
		return err
	}
	t, err := s.Tenants.Get(r.Context(), r.PathValue("id"))
	if err != nil {
		return err
	}
	if err := gate(t); err != nil {
		return err
	}
	ctx := store.WithTenant(r.Context(), t.ID)
	tokens, u, err := s.Identity.Impersonate(ctx, in.UserID, in.ReadOnly, in.Reason)
	if err != nil {
		return err
	}
	writeJSON(w, http.StatusOK, map[string]any{"accessToken": tokens.AccessToken, "tokenType": tokens.TokenType,
		"expiresIn": tokens.ExpiresIn, "user": u, "readOnly": in.ReadOnly})
	return nil
}
