package web

import (
	"net/http"

	"github.com/tenantgate/tenantgate/internal/quota"
)

func (s *server) listPlans(w http.ResponseWriter, r *http.Request) error {
	plans, err := s.Quota.Plans(r.Context())
	if err != nil {
		return err
	}
	writeJSON(w, http.StatusOK, newList(plans, nil))
	return nil
}

func (s *server) adminGetPlan(w http.ResponseWriter, r *http.Request) error {
	p, err := s.Quota.Plan(r.Context(), r.PathValue("name"))
	if err != nil {
		return err
	}
	writeJSON(w, http.StatusOK, p)
	return nil
}

type planRequest struct {
	DisplayName string           `json:"displayName"`
	Features    map[string]bool  `json:"features"`
	Limits      map[string]int64 `json:"limits"`
	Isolation   string           `json:"isolation"`
	Paid        bool             `json:"paid"`
	SortOrder   int              `json:"sortOrder"`
}

func (s *server) adminPutPlan(w http.ResponseWriter, r *http.Request) error {
	var in planRequest
	if err := decodeJSON(r, &in); err != nil {
		return err
	}
	p, err := s.Quota.SavePlan(r.Context(), quota.Plan{Name: r.PathValue("name"), DisplayName: in.DisplayName, Features: in.Features,
		Limits: in.Limits, Isolation: in.Isolation, Paid: in.Paid, SortOrder: in.SortOrder})
	if err != nil {
		return err
	}
	writeJSON(w, http.StatusOK, p)
	return nil
}

// entitlementsAnswer is entitlements with the current use of each countable limit.
func (s *server) entitlementsAnswer(w http.ResponseWriter, r *http.Request, tenantID string) error {
	e, err := s.Quota.Entitlements(r.Context(), tenantID)
	if err != nil {
		return err
	}
	used, err := s.Quota.Usage(r.Context(), tenantID)
	if err != nil {
		return err
	}
	limits := map[string]any{}
	for name, limit := range e.Limits {
		entry := map[string]any{"limit": limit}
		if n, ok := used[name]; ok {
			entry["used"] = n
		}
		limits[name] = entry
	}
	writeJSON(w, http.StatusOK, map[string]any{"tenantId": e.TenantID, "plan": e.Plan, "isolation": e.Isolation,
		"features": e.Features, "limits": limits, "overrides": e.Overrides})
	return nil
}

func (s *server) entitlements(w http.ResponseWriter, r *http.Request) error {
	return s.entitlementsAnswer(w, r, currentTenant(r.Context()).ID)
}

func (s *server) adminEntitlements(w http.ResponseWriter, r *http.Request) error {
	t, err := s.Tenants.Get(r.Context(), r.PathValue("id"))
	if err != nil {
		return err
	}
	return s.entitlementsAnswer(w, r, t.ID)
}

func (s *server) adminSetOverrides(w http.ResponseWriter, r *http.Request) error {
	var in quota.Overrides
	if err := decodeJSON(r, &in); err != nil {
		return err
	}
	t, err := s.Tenants.Get(r.Context(), r.PathValue("id"))
	if err != nil {
		return err
	}
	if _, err := s.Quota.SetOverrides(r.Context(), t.ID, in); err != nil {
		return err
	}
	s.Tenants.Forget(t.ID)
	return s.entitlementsAnswer(w, r, t.ID)
}
