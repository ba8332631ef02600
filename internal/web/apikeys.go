package web

import (
	"net/http"

	"github.com/tenantgate/tenantgate/internal/actor"
	"github.com/tenantgate/tenantgate/internal/errs"
	"github.com/tenantgate/tenantgate/internal/identity"
	"github.com/tenantgate/tenantgate/internal/rbac"
	"github.com/tenantgate/tenantgate/internal/store"
)

func (s *server) createAPIKey(w http.ResponseWriter, r *http.Request) error {
	var in identity.NewAPIKey
	if err := decodeJSON(r, &in); err != nil {
		return err
	}
	k, secret, err := s.Identity.CreateAPIKey(r.Context(), in)
	if err != nil {
		return err
	}
	w.Header().Set("Location", "/api/v1/api-keys/"+k.ID)
	writeJSON(w, http.StatusCreated, map[string]any{"apiKey": k, "secret": secret,
		"note": "store the secret now: it is shown only once"})
	return nil
}

func (s *server) listAPIKeys(w http.ResponseWriter, r *http.Request) error {
	q := r.URL.Query()
	p, err := store.ParsePage(q.Get("limit"), q.Get("cursor"))
	if err != nil {
		return err
	}
	all := rbac.Allowed(actor.From(r.Context()), rbac.APIKeyManage)
	userID := q.Get("userId")
	if userID != "" && (!all || !store.ValidID(userID)) {
		return errs.Invalid("userId needs the api_key:manage permission and a user id", map[string]string{"userId": "is not allowed here"})
	}
	items, next, err := s.Identity.ListAPIKeys(r.Context(), all, userID, q.Get("revoked") == "true", p)
	if err != nil {
		return err
	}
	writeJSON(w, http.StatusOK, newList(items, next))
	return nil
}

func (s *server) revokeAPIKey(w http.ResponseWriter, r *http.Request) error {
	all := rbac.Allowed(actor.From(r.Context()), rbac.APIKeyManage)
	if err := s.Identity.RevokeAPIKey(r.Context(), r.PathValue("id"), all); err != nil {
		return err
	}
	w.WriteHeader(http.StatusNoContent)
	return nil
}

func (s *server) listSessions(w http.ResponseWriter, r *http.Request) error {
	if _, err := me(r); err != nil {
		return err
	}
	items, err := s.Identity.ListSessions(r.Context())
	if err != nil {
		return err
	}
	writeJSON(w, http.StatusOK, newList(items, nil))
	return nil
}

func (s *server) revokeSession(w http.ResponseWriter, r *http.Request) error {
	if _, err := me(r); err != nil {
		return err
	}
	if err := s.Identity.RevokeOwnSession(r.Context(), r.PathValue("id")); err != nil {
		return err
	}
	w.WriteHeader(http.StatusNoContent)
	return nil
}
