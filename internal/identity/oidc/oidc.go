// Package oidc federates sign-in with OpenID Connect identity providers:
// each tenant's own providers, and one platform-wide provider (Zitadel
// style) that serves many tenants, the tenant chosen from an organisation
// claim. It runs the authorization-code flow with PKCE, state and nonce,
// verifies ID tokens (discovery, JWKS by kid), maps external identities to
// users (just-in-time creation if allowed), and verifies external bearer
// tokens presented to the API.
package oidc

import (
	"context"
	"crypto/rand"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"net"
	"net/http"
	"net/url"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/google/uuid"
	"github.com/zitadel/oidc/v3/pkg/client/rp"
	zoidc "github.com/zitadel/oidc/v3/pkg/oidc"
	"golang.org/x/oauth2"
	"gorm.io/gorm"

	"github.com/tenantgate/tenantgate/internal/actor"
	"github.com/tenantgate/tenantgate/internal/audit"
	"github.com/tenantgate/tenantgate/internal/egress"
	"github.com/tenantgate/tenantgate/internal/errs"
	"github.com/tenantgate/tenantgate/internal/identity"
	"github.com/tenantgate/tenantgate/internal/rbac"
	"github.com/tenantgate/tenantgate/internal/secret"
	"github.com/tenantgate/tenantgate/internal/store"
	"github.com/tenantgate/tenantgate/internal/tenant"
)

// Provider is a tenant's own identity provider.
type Provider struct {
	TenantID       string    `gorm:"primaryKey" json:"tenantId"`
	ID             string    `gorm:"primaryKey" json:"id"`
	Name           string    `json:"name"`
	Issuer         string    `json:"issuer"`
	ClientID       string    `json:"clientId"`
	ClientSecret   string    `json:"-"` // sealed
	Scopes         []string  `gorm:"serializer:json" json:"scopes"`
	ClaimEmail     string    `json:"claimEmail"`
	ClaimName      string    `json:"claimName"`
	ClaimRoles     string    `json:"claimRoles"`
	AllowedDomains []string  `gorm:"serializer:json" json:"allowedDomains"`
	JIT            bool      `gorm:"column:jit" json:"jit"`
	DefaultRole    string    `json:"defaultRole"`
	Enabled        bool      `json:"enabled"`
	CreatedAt      time.Time `json:"createdAt"`
	UpdatedAt      time.Time `json:"updatedAt"`
}

// TableName maps providers to identity_providers.
func (Provider) TableName() string { return "identity_providers" }

// TenantOwned marks providers as tenant data.
func (Provider) TenantOwned() {}

// Link ties an external identity to a user.
type Link struct {
	TenantID    string `gorm:"primaryKey"`
	ID          string `gorm:"primaryKey"`
	Issuer      string
	Subject     string
	UserID      string
	Email       string
	CreatedAt   time.Time
	LastLoginAt *time.Time
}

// TableName maps links to identity_links.
func (Link) TableName() string { return "identity_links" }

// TenantOwned marks links as tenant data.
func (Link) TenantOwned() {}

// Platform is the platform-wide provider, from configuration.
type Platform struct {
	Issuer       string
	ClientID     string
	ClientSecret string
	Scopes       []string
	OrgClaim     string // default urn:zitadel:iam:org:id
	RolesClaim   string // optional: a claim listing tenant roles
	JIT          bool
	DefaultRole  string
}

// Service runs federation.
type Service struct {
	store       *store.Store
	ident       *identity.Service
	tenants     *tenant.Service
	box         *secret.Box
	redirectURL string // our callback, registered at every provider
	platform    *Platform
	now         func() time.Time

	mu           sync.Mutex
	tenantHTTP   *http.Client          // tenants' providers: through egress (SetEgress)
	platformHTTP *http.Client          // the platform provider: the operator's, trusted
	rps          map[string]rpEntry    // by provider (see relyingParty)
	gates        map[string]*fetchGate // by provider and issuer (see fetchGate)
}

// SetPlatform configures the platform provider after construction (tests
// that must know the server's URL before the provider exists).
func (s *Service) SetPlatform(p *Platform) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.platform = normalizePlatform(p)
}

func normalizePlatform(platform *Platform) *Platform {
	if platform != nil {
		if platform.OrgClaim == "" {
			platform.OrgClaim = "urn:zitadel:iam:org:id"
		}
		if len(platform.Scopes) == 0 {
			platform.Scopes = []string{"openid", "email", "profile"}
		}
		if platform.DefaultRole == "" {
			platform.DefaultRole = rbac.RoleUser
		}
	}
	return platform
}

// New builds the service. platform may be nil.
func New(s *store.Store, ident *identity.Service, tenants *tenant.Service, box *secret.Box, publicURL string, platform *Platform) *Service {
	platform = normalizePlatform(platform)
	return &Service{store: s, ident: ident, tenants: tenants, box: box, platform: platform,
		redirectURL: strings.TrimSuffix(publicURL, "/") + "/api/v1/auth/oidc/callback",
		tenantHTTP:  egress.Policy{}.Client(fetchOptions), platformHTTP: egress.Trusted.Client(fetchOptions),
		now: func() time.Time { return time.Now().UTC() }, rps: map[string]rpEntry{}, gates: map[string]*fetchGate{}}
}

// RedirectURL is the callback to register at providers.
func (s *Service) RedirectURL() string { return s.redirectURL }

// settings is what a login needs of either kind of provider.
type settings struct {
	providerID               string // "" for the platform provider
	issuer, clientID, secret string
	scopes                   []string
	claimEmail, claimName    string
	claimRoles               string
	allowedDomains           []string
	jit                      bool
	defaultRole              string
	orgClaim                 string // platform only
}

func (s *Service) tenantSettings(p *Provider) (*settings, error) {
	sec, err := s.box.Open(p.ClientSecret, []byte("oidc-client-secret:"+p.ID))
	if err != nil {
		return nil, errs.Internal(err, "open the provider's client secret")
	}
	return &settings{providerID: p.ID, issuer: p.Issuer, clientID: p.ClientID, secret: string(sec), scopes: p.Scopes,
		claimEmail: p.ClaimEmail, claimName: p.ClaimName, claimRoles: p.ClaimRoles, allowedDomains: p.AllowedDomains,
		jit: p.JIT, defaultRole: p.DefaultRole}, nil
}

func (s *Service) platformSettings() *settings {
	p := s.platform
	return &settings{issuer: p.Issuer, clientID: p.ClientID, secret: p.ClientSecret, scopes: p.Scopes, claimEmail: "email",
		claimName: "name", claimRoles: p.RolesClaim, jit: p.JIT, defaultRole: p.DefaultRole, orgClaim: p.OrgClaim}
}

type nonceKey struct{}

func nonceFrom(ctx context.Context) string { v, _ := ctx.Value(nonceKey{}).(string); return v }

// loginState travels, sealed, in a cookie between the redirect to the
// provider and the callback.
type loginState struct {
	TenantID   string `json:"t"`
	ProviderID string `json:"p"`
	State      string `json:"s"`
	Nonce      string `json:"n"`
	Verifier   string `json:"v"`
	Expires    int64  `json:"e"`
}

// StateTTL bounds how long a user may take at the provider.
const StateTTL = 10 * time.Minute

func random() string {
	b := make([]byte, 24)
	_, _ = rand.Read(b)
	return base64.RawURLEncoding.EncodeToString(b)
}

// Choice says which of a tenant's providers a login is for: by id, or by
// the user's email (its domain against the providers' allowedDomains). Both
// may be empty when the tenant has a single provider.
type Choice struct {
	ProviderID string
	Email      string // normalised; also sent to the provider as login_hint
}

// CodeChoiceRequired asks the client to name the provider of a login.
const CodeChoiceRequired = "IDP_CHOICE_REQUIRED"

// choose picks the provider of a login among the tenant's enabled ones
// (oldest first): the one named by id; else the first whose allowedDomains
// holds the email's domain, else the first without allowedDomains (it takes
// any domain); else the only one. Several and no choice is a 400 listing them,
// never a guess (the oldest might be the one that is down).
func choose(providers []Provider, c Choice) (*Provider, error) {
	if c.ProviderID != "" {
		for i := range providers {
			if providers[i].ID == c.ProviderID {
				return &providers[i], nil
			}
		}
		return nil, errs.NotFound("IDP_NOT_FOUND", "this organisation has no enabled identity provider %q", c.ProviderID)
	}
	if c.Email != "" {
		domain := c.Email[strings.LastIndexByte(c.Email, '@')+1:]
		for i := range providers {
			if slices.Contains(providers[i].AllowedDomains, domain) {
				return &providers[i], nil
			}
		}
		for i := range providers {
			if len(providers[i].AllowedDomains) == 0 {
				return &providers[i], nil
			}
		}
		return nil, errs.NotFound("IDP_NOT_CONFIGURED", "this organisation has no single sign-on for accounts of %q", domain)
	}
	if len(providers) == 1 {
		return &providers[0], nil
	}
	names := make([]string, 0, len(providers))
	for _, p := range providers {
		names = append(names, fmt.Sprintf("%s (%s)", p.Name, p.ID))
	}
	return nil, &errs.Error{Kind: errs.KindInvalid, Code: CodeChoiceRequired,
		Msg:    "this organisation has several identity providers; name one with ?provider={id} or give your ?email=: " + strings.Join(names, ", "),
		Fields: map[string]string{"provider": "is required here: one of " + strings.Join(names, ", "), "email": "or your email address, chosen by its domain"}}
}

// Begin starts a login at one of the tenant's providers (chosen by c), or
// at the platform provider when the tenant has none of its own and is linked
// to an organisation, and returns the provider URL to send the browser to and
// the sealed state for the cookie.
func (s *Service) Begin(ctx context.Context, t *tenant.Tenant, c Choice) (authURL, cookie string, err error) {
	var st *settings
	var providers []Provider
	err = s.store.Tx(store.WithTenant(ctx, t.ID), func(tx *gorm.DB) error {
		return tx.Where("enabled = ?", true).Order("created_at, id").Find(&providers).Error
	})
	if err != nil {
		return "", "", errs.Internal(err, "read identity providers")
	}
	switch {
	case len(providers) > 0:
		p, err := choose(providers, c)
		if err != nil {
			return "", "", err
		}
		if st, err = s.tenantSettings(p); err != nil {
			return "", "", err
		}
	case c.ProviderID != "":
		return "", "", errs.NotFound("IDP_NOT_FOUND", "this organisation has no enabled identity provider %q", c.ProviderID)
	case s.platform != nil && t.ExternalOrgID != nil:
		st = s.platformSettings()
	default:
		return "", "", errs.NotFound("IDP_NOT_CONFIGURED", "this organisation has no single sign-on configured")
	}
	relying, err := s.relyingParty(ctx, st)
	if err != nil {
		return "", "", err
	}
	ls := loginState{TenantID: t.ID, ProviderID: st.providerID, State: random(), Nonce: random(), Verifier: oauth2.GenerateVerifier(),
		Expires: s.now().Add(StateTTL).Unix()}
	raw, _ := json.Marshal(ls)
	opts := []rp.AuthURLOpt{rp.WithCodeChallenge(oauth2.S256ChallengeFromVerifier(ls.Verifier)),
		func() []oauth2.AuthCodeOption {
			o := []oauth2.AuthCodeOption{oauth2.SetAuthURLParam("nonce", ls.Nonce), oauth2.SetAuthURLParam("code_challenge_method", "S256")}
			if c.Email != "" {
				o = append(o, oauth2.SetAuthURLParam("login_hint", c.Email))
			}
			if st.providerID == "" {
				// Ask Zitadel for the tenant's organisation.
				o = append(o, oauth2.SetAuthURLParam("scope", strings.Join(append(slices.Clone(st.scopes), "urn:zitadel:iam:org:id:"+*t.ExternalOrgID), " ")))
			}
			return o
		}}
	return rp.AuthURL(ls.State, relying, opts...), s.box.Seal(raw, []byte("oidc-state")), nil
}

// Complete finishes a login: it checks the state, exchanges the code with the
// PKCE verifier, verifies the ID token (signature, issuer, audience, expiry,
// nonce), maps the identity to a user and starts a session.
func (s *Service) Complete(ctx context.Context, cookie, state, code string) (*identity.User, *identity.Tokens, error) {
	bad := errs.Unauthenticated("OIDC_STATE_INVALID", "the sign-in could not be completed (expired or tampered state); start again")
	raw, err := s.box.Open(cookie, []byte("oidc-state"))
	if err != nil {
		return nil, nil, bad
	}
	var ls loginState
	if json.Unmarshal(raw, &ls) != nil || s.now().Unix() > ls.Expires || !secret.Equal(ls.State, state) || code == "" {
		return nil, nil, bad
	}
	t, err := s.tenants.Get(ctx, ls.TenantID)
	if err != nil {
		return nil, nil, err
	}
	st, err := s.settingsFor(ctx, t.ID, ls.ProviderID)
	if err != nil {
		return nil, nil, err
	}
	relying, err := s.relyingParty(ctx, st)
	if err != nil {
		return nil, nil, err
	}
	tokens, err := rp.CodeExchange[*zoidc.IDTokenClaims](context.WithValue(ctx, nonceKey{}, ls.Nonce), code, relying, rp.WithCodeVerifier(ls.Verifier))
	if err != nil {
		return nil, nil, &errs.Error{Kind: errs.KindUnauthenticated, Code: "OIDC_EXCHANGE_FAILED",
			Msg: "the identity provider did not confirm the sign-in; start again", Err: err}
	}
	claims := tokens.IDTokenClaims
	tctx := store.WithTenant(ctx, t.ID)
	var user *identity.User
	var out *identity.Tokens
	err = s.store.Tx(tctx, func(tx *gorm.DB) error {
		var err error
		if user, err = s.mapIdentity(tctx, tx, t, st, claims.Subject, claims.Claims); err != nil {
			return err
		}
		amr := []string{"oidc"}
		if slices.Contains(claims.AuthenticationMethodsReferences, "mfa") || slices.Contains(claims.AuthenticationMethodsReferences, "otp") {
			amr = append(amr, "otp")
		}
		if out, err = s.ident.IssueUserTokensTx(tctx, tx, user, amr...); err != nil {
			return err
		}
		a := &actor.Actor{Type: actor.TypeUser, ID: user.ID, TenantID: t.ID, Email: user.Email}
		if prev := actor.From(ctx); prev != nil {
			a.SourceIP, a.UserAgent, a.RequestID = prev.SourceIP, prev.UserAgent, prev.RequestID
		}
		return audit.Record(actor.With(tctx, a), tx, audit.Entry{EventType: "auth.login", Resource: "session", ResourceID: user.ID,
			Action: "login", Metadata: map[string]any{"method": "oidc", "issuer": secret.RedactURL(st.issuer)}})
	})
	if err != nil {
		return nil, nil, errs.Wrap(err, "complete the sign-in")
	}
	return user, out, nil
}

func (s *Service) settingsFor(ctx context.Context, tenantID, providerID string) (*settings, error) {
	if providerID == "" {
		if s.platform == nil {
			return nil, errs.NotFound("IDP_NOT_CONFIGURED", "the platform identity provider is not configured")
		}
		return s.platformSettings(), nil
	}
	var p Provider
	err := s.store.Tx(store.WithTenant(ctx, tenantID), func(tx *gorm.DB) error {
		return tx.Where("id = ? AND enabled = ?", providerID, true).Take(&p).Error
	})
	if err != nil {
		return nil, errs.NotFound("IDP_NOT_CONFIGURED", "the identity provider of this sign-in is gone or disabled")
	}
	return s.tenantSettings(&p)
}

func claimString(claims map[string]any, name string) string {
	v, _ := claims[name].(string)
	return v
}

// claimRoles reads a roles claim: a list of names, or Zitadel's map of role
// name to organisations.
func claimRoles(claims map[string]any, name string) []string {
	var out []string
	switch v := claims[name].(type) {
	case []any:
		for _, r := range v {
			if s, ok := r.(string); ok {
				out = append(out, s)
			}
		}
	case map[string]any:
		for r := range v {
			out = append(out, r)
		}
	case string:
		out = strings.Fields(strings.ReplaceAll(v, ",", " "))
	}
	return out
}

// mapIdentity finds or creates the user an external identity is.
func (s *Service) mapIdentity(ctx context.Context, tx *gorm.DB, t *tenant.Tenant, st *settings, subject string, claims map[string]any) (*identity.User, error) {
	refuse := func(format string, args ...any) error {
		return errs.Forbidden("OIDC_ACCESS_DENIED", format, args...)
	}
	if subject == "" {
		return nil, refuse("the identity provider gave no subject")
	}
	if st.orgClaim != "" {
		if t.ExternalOrgID == nil || claimString(claims, st.orgClaim) != *t.ExternalOrgID {
			return nil, refuse("this account belongs to another organisation")
		}
	}
	email := identity.NormalizeEmail(claimString(claims, st.claimEmail))
	if len(st.allowedDomains) > 0 {
		domain := email[strings.LastIndexByte(email, '@')+1:]
		if email == "" || !slices.Contains(st.allowedDomains, domain) {
			return nil, refuse("accounts of %q may not sign in to this organisation", domain)
		}
	}
	now := s.now()
	var link Link
	err := tx.Where("issuer = ? AND subject = ?", st.issuer, subject).Take(&link).Error
	switch {
	case err == nil:
		u, err := s.ident.GetUserTx(tx, link.UserID)
		if err != nil {
			return nil, err
		}
		if u.Status != identity.StatusActive {
			return nil, refuse("this account is %s", u.Status)
		}
		return u, tx.Model(&link).Update("last_login_at", now).Error
	case !store.IsNotFound(err):
		return nil, err
	}
	// A first sign-in: link to the account with the same, verified email, or create one.
	var u *identity.User
	verified, _ := claims["email_verified"].(bool)
	if verified && email != "" {
		if u, err = s.ident.FindByEmailTx(tx, email); err != nil {
			return nil, err
		}
		switch {
		case u == nil:
		case u.Status != identity.StatusActive:
			return nil, refuse("this account is %s", u.Status)
		case u.TwoFactorEnabled:
			// Linking would let whoever runs the provider skip this account's second factor.
			return nil, refuse("this account uses two-factor authentication; sign in with your password and code")
		case slices.Contains(u.Roles, rbac.RoleOwner) && st.providerID != "":
			// A tenant provider is configured by the tenant's admins; it must not become a way into an owner's account.
			return nil, refuse("an owner's account is not linked to a single sign-on identity automatically")
		}
	}
	if u == nil {
		if !st.jit {
			return nil, refuse("no account of this organisation matches; ask an admin to invite you")
		}
		if len(st.allowedDomains) > 0 && !verified {
			return nil, refuse("the identity provider has not verified this email address")
		}
		roles := []string{}
		for _, r := range claimRoles(claims, st.claimRoles) {
			if rbac.IsTenantRole(r) && r != rbac.RoleOwner {
				roles = append(roles, r)
			}
		}
		if len(roles) == 0 {
			roles = []string{st.defaultRole}
		}
		first, last, _ := strings.Cut(claimString(claims, st.claimName), " ")
		if g := claimString(claims, "given_name"); g != "" {
			first, last = g, claimString(claims, "family_name")
		}
		if u, err = s.ident.CreateFederatedUserTx(ctx, tx, email, first, last, roles); err != nil {
			return nil, err
		}
	}
	link = Link{ID: uuid.Must(uuid.NewV7()).String(), Issuer: st.issuer, Subject: subject, UserID: u.ID, Email: email, CreatedAt: now, LastLoginAt: &now}
	if err := tx.Create(&link).Error; err != nil {
		return nil, err
	}
	return u, audit.Record(ctx, tx, audit.Entry{EventType: "user.identity_linked", Resource: "user", ResourceID: u.ID, Action: "link",
		Metadata: map[string]any{"issuer": secret.RedactURL(st.issuer), "subject": subject}})
}

// IsIssuer reports whether a JWT's (unverified) issuer is a provider this
// server federates with, rather than itself.
func PeekIssuer(raw string) string {
	parts := strings.Split(raw, ".")
	if len(parts) != 3 {
		return ""
	}
	payload, err := base64.RawURLEncoding.DecodeString(parts[1])
	if err != nil {
		return ""
	}
	var c struct {
		Iss string `json:"iss"`
	}
	if json.Unmarshal(payload, &c) != nil {
		return ""
	}
	return c.Iss
}

// Bearer is an external token's verified principal.
type Bearer struct {
	User   *identity.User
	Tenant *tenant.Tenant
	MFA    bool
}

// VerifyBearer verifies a token of a federated issuer (signature via the
// provider's JWKS, issuer, audience = our client id, expiry) and maps it to a
// user. t is the tenant the request named, if any: a tenant provider's
// token needs it; the platform provider's token names its own tenant.
func (s *Service) VerifyBearer(ctx context.Context, raw string, t *tenant.Tenant) (*Bearer, error) {
	iss := PeekIssuer(raw)
	var st *settings
	switch {
	case s.platform != nil && iss == s.platform.Issuer:
		st = s.platformSettings()
	case t != nil:
		var p Provider
		err := s.store.Tx(store.WithTenant(ctx, t.ID), func(tx *gorm.DB) error {
			return tx.Where("issuer = ? AND enabled = ?", iss, true).Take(&p).Error
		})
		if err != nil {
			return nil, errs.Unauthenticated(errs.CodeTokenInvalid, "the token's issuer is not an identity provider of this organisation")
		}
		if st, err = s.tenantSettings(&p); err != nil {
			return nil, err
		}
	default:
		return nil, errs.Unauthenticated(errs.CodeTokenInvalid, "the token's issuer is not trusted; name the organisation (X-Tenant-Slug) for its own provider")
	}
	relying, err := s.relyingParty(ctx, st)
	if err != nil {
		return nil, err
	}
	v := *relying.IDTokenVerifier()
	v.Nonce = nil // a bearer token is not the answer to one of our logins
	claims, err := rp.VerifyIDToken[*zoidc.IDTokenClaims](ctx, raw, &v)
	if err != nil {
		return nil, &errs.Error{Kind: errs.KindUnauthenticated, Code: errs.CodeTokenInvalid, Msg: "the identity provider's token is not valid", Err: err}
	}
	if st.orgClaim != "" {
		org := claimString(claims.Claims, st.orgClaim)
		owner, err := s.tenants.ByExternalOrg(ctx, org)
		if err != nil {
			return nil, errs.Unauthenticated(errs.CodeTokenInvalid, "the token's organisation is not a tenant here")
		}
		if t != nil && t.ID != owner.ID {
			return nil, errs.NotFound(errs.CodeTenantNotFound, "no tenant by that reference")
		}
		t = owner
	}
	tctx := store.WithTenant(ctx, t.ID)
	var u *identity.User
	err = s.store.Tx(tctx, func(tx *gorm.DB) error {
		var err error
		u, err = s.mapIdentity(tctx, tx, t, st, claims.Subject, claims.Claims)
		return err
	})
	if err != nil {
		return nil, errs.Wrap(err, "map the identity")
	}
	return &Bearer{User: u, Tenant: t, MFA: slices.Contains(claims.AuthenticationMethodsReferences, "mfa")}, nil
}

// NewProvider is what configuring a tenant's provider takes.
type NewProvider struct {
	Name           string   `json:"name"`
	Issuer         string   `json:"issuer"`
	ClientID       string   `json:"clientId"`
	ClientSecret   *string  `json:"clientSecret"`
	Scopes         []string `json:"scopes"`
	ClaimEmail     string   `json:"claimEmail"`
	ClaimName      string   `json:"claimName"`
	ClaimRoles     string   `json:"claimRoles"`
	AllowedDomains []string `json:"allowedDomains"`
	JIT            *bool    `json:"jit"`
	DefaultRole    string   `json:"defaultRole"`
	Enabled        *bool    `json:"enabled"`
}

// ProviderPatch changes a provider; nil fields keep their value.
type ProviderPatch struct {
	Name           *string   `json:"name"`
	Issuer         *string   `json:"issuer"`
	ClientID       *string   `json:"clientId"`
	ClientSecret   *string   `json:"clientSecret"`
	Scopes         *[]string `json:"scopes"`
	ClaimEmail     *string   `json:"claimEmail"`
	ClaimName      *string   `json:"claimName"`
	ClaimRoles     *string   `json:"claimRoles"`
	AllowedDomains *[]string `json:"allowedDomains"`
	JIT            *bool     `json:"jit"`
	DefaultRole    *string   `json:"defaultRole"`
	Enabled        *bool     `json:"enabled"`
}

// IssuerRule is what an issuer must be, on create and change alike.
const IssuerRule = "must be the provider's https URL (plain http only on localhost or a loopback address, for development), " +
	"without query or fragment; its /.well-known/openid-configuration is read from there"

// validIssuer accepts https URLs, and http only on a loopback host (local
// development and tests).
func validIssuer(s string) bool {
	u, err := url.Parse(s)
	if err != nil || u.Host == "" || u.RawQuery != "" || u.Fragment != "" || u.User != nil {
		return false
	}
	if u.Scheme == "https" {
		return true
	}
	host := u.Hostname()
	ip := net.ParseIP(host)
	return u.Scheme == "http" && (host == "localhost" || (ip != nil && ip.IsLoopback()))
}

// validate is the one rule for a provider, applied to a new one and to the
// result of a change alike. It fills defaults and records every problem.
func (in *NewProvider) validate(f errs.Fields, creating bool) {
	in.Name = f.Text("name", in.Name, 1, 100)
	in.Issuer = strings.TrimSuffix(strings.TrimSpace(in.Issuer), "/")
	if !validIssuer(in.Issuer) || len(in.Issuer) > 2048 {
		f.Add("issuer", IssuerRule)
	}
	if in.ClientID == "" || len(in.ClientID) > 500 {
		f.Add("clientId", "is required: at most 500 characters")
	}
	if creating && (in.ClientSecret == nil || *in.ClientSecret == "") {
		f.Add("clientSecret", "is required")
	}
	if in.ClientSecret != nil && len(*in.ClientSecret) > 2000 {
		f.Add("clientSecret", "must be at most 2000 characters")
	}
	if len(in.Scopes) == 0 {
		in.Scopes = []string{"openid", "email", "profile"}
	} else if !slices.Contains(in.Scopes, "openid") {
		f.Add("scopes", "must include openid")
	} else if len(in.Scopes) > 50 {
		f.Add("scopes", "at most 50 scopes")
	}
	for _, d := range in.AllowedDomains {
		if d == "" || strings.ContainsAny(d, "@/ ") || !strings.Contains(d, ".") || len(d) > 253 {
			f.Add("allowedDomains", fmt.Sprintf("%q is not a domain", d))
		}
	}
	if len(in.AllowedDomains) > 100 {
		f.Add("allowedDomains", "at most 100 domains")
	}
	for i, d := range in.AllowedDomains {
		in.AllowedDomains[i] = strings.ToLower(d)
	}
	if in.DefaultRole == "" {
		in.DefaultRole = rbac.RoleUser
	}
	if !rbac.IsTenantRole(in.DefaultRole) || in.DefaultRole == rbac.RoleOwner {
		f.Add("defaultRole", "must be admin, billing_manager or user")
	}
	if in.ClaimEmail == "" {
		in.ClaimEmail = "email"
	}
	if in.ClaimName == "" {
		in.ClaimName = "name"
	}
	for name, v := range map[string]string{"claimEmail": in.ClaimEmail, "claimName": in.ClaimName, "claimRoles": in.ClaimRoles} {
		if len(v) > 200 {
			f.Add(name, "must be at most 200 characters")
		}
	}
}

// Validate reports every problem of a new provider without saving it.
func (in NewProvider) Validate() errs.Fields {
	f := errs.Fields{}
	in.AllowedDomains = slices.Clone(in.AllowedDomains)
	in.validate(f, true)
	return f
}

// CreateProvider adds a tenant's provider.
func (s *Service) CreateProvider(ctx context.Context, in NewProvider) (*Provider, error) {
	f := errs.Fields{}
	in.validate(f, true)
	if err := f.Err(); err != nil {
		return nil, err
	}
	return s.save(ctx, nil, in)
}

// UpdateProvider changes a tenant's provider: the patch is applied to the
// stored provider and the result is checked by the same rule as a new one,
// so {"enabled": false} alone is a valid change.
func (s *Service) UpdateProvider(ctx context.Context, id string, p ProviderPatch) (*Provider, error) {
	if !store.ValidID(id) {
		return nil, errs.NotFound("IDP_NOT_FOUND", "no identity provider %q", id)
	}
	old, err := store.Read(ctx, s.store, func(tx *gorm.DB) (*Provider, error) {
		var old Provider
		if err := tx.Where("id = ?", id).Take(&old).Error; err != nil {
			if store.IsNotFound(err) {
				return nil, errs.NotFound("IDP_NOT_FOUND", "no identity provider %q", id)
			}
			return nil, err
		}
		return &old, nil
	})
	if err != nil {
		return nil, errs.Wrap(err, "read the identity provider")
	}
	in := NewProvider{Name: old.Name, Issuer: old.Issuer, ClientID: old.ClientID, Scopes: old.Scopes, ClaimEmail: old.ClaimEmail,
		ClaimName: old.ClaimName, ClaimRoles: old.ClaimRoles, AllowedDomains: slices.Clone(old.AllowedDomains), JIT: &old.JIT,
		DefaultRole: old.DefaultRole, Enabled: &old.Enabled, ClientSecret: p.ClientSecret}
	set := func(dst *string, v *string) {
		if v != nil {
			*dst = *v
		}
	}
	set(&in.Name, p.Name)
	set(&in.Issuer, p.Issuer)
	set(&in.ClientID, p.ClientID)
	set(&in.ClaimEmail, p.ClaimEmail)
	set(&in.ClaimName, p.ClaimName)
	set(&in.ClaimRoles, p.ClaimRoles)
	set(&in.DefaultRole, p.DefaultRole)
	if p.Scopes != nil {
		in.Scopes = *p.Scopes
	}
	if p.AllowedDomains != nil {
		in.AllowedDomains = *p.AllowedDomains
	}
	if p.JIT != nil {
		in.JIT = p.JIT
	}
	if p.Enabled != nil {
		in.Enabled = p.Enabled
	}
	f := errs.Fields{}
	if p.ClientSecret != nil && *p.ClientSecret == "" {
		f.Add("clientSecret", "must not be empty; leave it out to keep the current secret")
	}
	in.validate(f, false)
	if err := f.Err(); err != nil {
		return nil, err
	}
	return s.save(ctx, old, in)
}

// save writes a validated provider: a new one (old nil) or a change.
func (s *Service) save(ctx context.Context, old *Provider, in NewProvider) (*Provider, error) {
	var out *Provider
	err := s.store.Tx(ctx, func(tx *gorm.DB) error {
		now := s.now()
		p := &Provider{ID: uuid.Must(uuid.NewV7()).String(), CreatedAt: now}
		var before *Provider
		if old != nil {
			cur := *old
			cp := cur
			before, p = &cp, &cur
		}
		p.Name, p.Issuer, p.ClientID, p.Scopes = in.Name, in.Issuer, in.ClientID, in.Scopes
		p.ClaimEmail, p.ClaimName, p.ClaimRoles, p.DefaultRole = in.ClaimEmail, in.ClaimName, in.ClaimRoles, in.DefaultRole
		p.AllowedDomains = in.AllowedDomains
		if p.AllowedDomains == nil {
			p.AllowedDomains = []string{}
		}
		p.JIT = in.JIT == nil || *in.JIT
		p.Enabled = in.Enabled == nil || *in.Enabled
		if in.ClientSecret != nil && *in.ClientSecret != "" {
			p.ClientSecret = s.box.Seal([]byte(*in.ClientSecret), []byte("oidc-client-secret:"+p.ID))
		}
		p.UpdatedAt = now
		var err error
		if old == nil {
			err = tx.Create(p).Error
		} else {
			res := tx.Select("*").Omit("tenant_id", "id", "created_at").Where("id = ?", p.ID).Updates(p)
			if err = res.Error; err == nil && res.RowsAffected == 0 {
				return errs.NotFound("IDP_NOT_FOUND", "no identity provider %q", p.ID) // deleted meanwhile
			}
		}
		if err != nil {
			if store.IsUniqueViolation(err) {
				return errs.Conflict("IDP_ALREADY_EXISTS", "this issuer and client id are already configured")
			}
			return err
		}
		out = p
		action := map[bool]string{true: "create", false: "update"}[old == nil]
		return audit.Record(ctx, tx, audit.Entry{EventType: "identity_provider." + action + "d", Resource: "identity_provider",
			ResourceID: p.ID, Action: action, Before: before, After: p})
	})
	if err != nil {
		return nil, errs.Wrap(err, "save the identity provider")
	}
	s.mu.Lock()
	delete(s.rps, "provider:"+out.ID) // its settings may have changed: discover again
	s.mu.Unlock()
	return out, nil
}

// ListProviders lists the tenant's providers.
func (s *Service) ListProviders(ctx context.Context) ([]Provider, error) {
	var out []Provider
	if err := s.store.Tx(ctx, func(tx *gorm.DB) error { return tx.Order("created_at").Find(&out).Error }); err != nil {
		return nil, errs.Internal(err, "list identity providers")
	}
	if out == nil {
		out = []Provider{}
	}
	return out, nil
}

// DeleteProvider removes a provider; its links stay, so re-adding it keeps users.
func (s *Service) DeleteProvider(ctx context.Context, id string) error {
	if !store.ValidID(id) {
		return errs.NotFound("IDP_NOT_FOUND", "no identity provider %q", id)
	}
	return s.store.Tx(ctx, func(tx *gorm.DB) error {
		res := tx.Where("id = ?", id).Delete(&Provider{})
		if res.Error != nil {
			return res.Error
		}
		if res.RowsAffected == 0 {
			return errs.NotFound("IDP_NOT_FOUND", "no identity provider %q", id)
		}
		return audit.Record(ctx, tx, audit.Entry{EventType: "identity_provider.deleted", Resource: "identity_provider", ResourceID: id, Action: "delete"})
	})
}
