package web

import (
	"net/http"

	"github.com/tenantgate/tenantgate/internal/errs"
)

type passwordRequest struct {
	Password string `json:"password"`
	Code     string `json:"code"`
}

func (s *server) setup2FA(w http.ResponseWriter, r *http.Request) error {
	if _, err := me(r); err != nil {
		return err
	}
	var in passwordRequest
	if err := decodeJSON(r, &in); err != nil {
		return err
	}
	issuer := "tenantgate"
	if t := currentTenant(r.Context()); t != nil {
		issuer = t.Name
	}
	out, err := s.Identity.SetupTOTP(r.Context(), in.Password, issuer)
	if err != nil {
		return err
	}
	writeJSON(w, http.StatusOK, out)
	return nil
}

func (s *server) enable2FA(w http.ResponseWriter, r *http.Request) error {
	if _, err := me(r); err != nil {
		return err
	}
	var in passwordRequest
	if err := decodeJSON(r, &in); err != nil {
		return err
	}
	if in.Code == "" {
		return errs.Invalid("the code is missing", map[string]string{"code": "is required"})
	}
	codes, err := s.Identity.EnableTOTP(r.Context(), in.Code)
	if err != nil {
		return err
	}
	writeJSON(w, http.StatusOK, map[string]any{"recoveryCodes": codes,
		"note": "store these recovery codes now: each signs you in once if you lose your device, and they are shown only once"})
	return nil
}

func (s *server) disable2FA(w http.ResponseWriter, r *http.Request) error {
	a, err := me(r)
	if err != nil {
		return err
	}
	var in passwordRequest
	if err := decodeJSON(r, &in); err != nil {
		return err
	}
	if err := s.Identity.DisableTOTP(r.Context(), a.ID, in.Password, in.Code, false); err != nil {
		return err
	}
	w.WriteHeader(http.StatusNoContent)
	return nil
}

func (s *server) reset2FA(w http.ResponseWriter, r *http.Request) error {
	if err := s.Identity.DisableTOTP(r.Context(), r.PathValue("id"), "", "", true); err != nil {
		return err
	}
	w.WriteHeader(http.StatusNoContent)
	return nil
}
