package web

import (
	"net/http"
	"strings"

	"github.com/tenantgate/tenantgate/internal/actor"
	"github.com/tenantgate/tenantgate/internal/errs"
	"github.com/tenantgate/tenantgate/internal/identity"
	"github.com/tenantgate/tenantgate/internal/identity/oidc"
	"github.com/tenantgate/tenantgate/internal/store"
)

const oidcCookie = "tg_oidc"

func (s *server) needOIDC() error {
	if s.OIDC == nil {
		return errs.E(errs.KindUnavailable, "IDP_NOT_CONFIGURED", "single sign-on is not enabled on this server (it needs a master key)")
	}
	return nil
}

// oidcLogin sends the browser to the tenant's identity provider.
func (s *server) oidcLogin(w http.ResponseWriter, r *http.Request) error {
	if err := s.needOIDC(); err != nil {
		return err
	}
	t, err := s.Tenants.BySlug(r.Context(), r.PathValue("tenant_slug"))
	if err != nil {
		return err
	}
	if err := gate(t); err != nil {
		return err
	}
	q := r.URL.Query()
	c := oidc.Choice{ProviderID: q.Get("provider")}
	f := errs.Fields{}
	if c.ProviderID != "" && !store.ValidID(c.ProviderID) {
		f.Add("provider", "must be an identity provider's id (GET /api/v1/identity-providers)")
	}
	if e := q.Get("email"); e != "" {
		if c.Email = identity.NormalizeEmail(e); c.Email == "" {
			f.Add("email", "must be an email address")
		}
	}
	if err := f.Err(); err != nil {
		return err
	}
	authURL, state, err := s.OIDC.Begin(r.Context(), t, c)
	if err != nil {
		return err
	}
	http.SetCookie(w, &http.Cookie{Name: oidcCookie, Value: state, Path: "/api/v1/auth/oidc", MaxAge: int(oidc.StateTTL.Seconds()),
		HttpOnly: true, Secure: strings.HasPrefix(s.PublicURL, "https://"), SameSite: http.SameSiteLaxMode})
	http.Redirect(w, r, authURL, http.StatusFound)
	return nil
}

// oidcCallback completes the sign-in and answers with our tokens.
func (s *server) oidcCallback(w http.ResponseWriter, r *http.Request) error {
	if err := s.needOIDC(); err != nil {
		return err
	}
	q := r.URL.Query()
	if e := q.Get("error"); e != "" {
		return errs.Unauthenticated("OIDC_PROVIDER_ERROR", "the identity provider refused the sign-in: %s %s", cleanHeader(e, 100), cleanHeader(q.Get("error_description"), 300))
	}
	c, err := r.Cookie(oidcCookie)
	if err != nil {
		return errs.Unauthenticated("OIDC_STATE_INVALID", "the sign-in cookie is missing; start again at /api/v1/auth/oidc/{tenant}/login in the same browser")
	}
	http.SetCookie(w, &http.Cookie{Name: oidcCookie, Value: "", Path: "/api/v1/auth/oidc", MaxAge: -1, HttpOnly: true})
	_, tokens, err := s.OIDC.Complete(r.Context(), c.Value, q.Get("state"), q.Get("code"))
	if err != nil {
		return err
	}
	writeJSON(w, http.StatusOK, tokens)
	return nil
}

// authenticateFederated accepts a bearer token of a federated issuer.
func (s *server) authenticateFederated(r *http.Request, base *actor.Actor, tok string) (*actor.Actor, error) {
	pathSlug, _ := r.Context().Value(pathSlugKey{}).(string)
	t, err := s.resolve(r.Context(), readHint(r, s.BaseDomain, pathSlug), nil)
	if err != nil {
		return nil, err
	}
	b, err := s.OIDC.VerifyBearer(r.Context(), tok, t)
	if err != nil {
		return nil, err
	}
	a := *base
	a.Type, a.ID, a.TenantID, a.Email, a.Username, a.Roles, a.MFA = actor.TypeUser, b.User.ID, b.Tenant.ID, b.User.Email, b.User.Username, b.User.Roles, b.MFA
	return &a, nil
}

func (s *server) listIdPs(w http.ResponseWriter, r *http.Request) error {
	if err := s.needOIDC(); err != nil {
		return err
	}
	ps, err := s.OIDC.ListProviders(r.Context())
	if err != nil {
		return err
	}
	writeJSON(w, http.StatusOK, map[string]any{"items": ps, "nextCursor": nil, "redirectUri": s.OIDC.RedirectURL()})
	return nil
}

func (s *server) createIdP(w http.ResponseWriter, r *http.Request) error {
	if err := s.needOIDC(); err != nil {
		return err
	}
	var in oidc.NewProvider
	if err := decodeJSON(r, &in); err != nil {
		return err
	}
	p, err := s.OIDC.CreateProvider(r.Context(), in)
	if err != nil {
		return err
	}
	writeJSON(w, http.StatusCreated, map[string]any{"provider": p, "redirectUri": s.OIDC.RedirectURL()})
	return nil
}

func (s *server) patchIdP(w http.ResponseWriter, r *http.Request) error {
	if err := s.needOIDC(); err != nil {
		return err
	}
	var in oidc.ProviderPatch
	if err := decodeJSON(r, &in); err != nil {
		return err
	}
	p, err := s.OIDC.UpdateProvider(r.Context(), r.PathValue("id"), in)
	if err != nil {
		return err
	}
	writeJSON(w, http.StatusOK, p)
	return nil
}

func (s *server) deleteIdP(w http.ResponseWriter, r *http.Request) error {
	if err := s.needOIDC(); err != nil {
		return err
	}
	if err := s.OIDC.DeleteProvider(r.Context(), r.PathValue("id")); err != nil {
		return err
	}
	w.WriteHeader(http.StatusNoContent)
	return nil
}
