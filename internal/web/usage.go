package web

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"time"

	"github.com/tenantgate/tenantgate/internal/errs"
	"github.com/tenantgate/tenantgate/internal/identity"
	"github.com/tenantgate/tenantgate/internal/quota"
	"github.com/tenantgate/tenantgate/internal/store"
	"github.com/tenantgate/tenantgate/internal/tenant"
)

func (s *server) ingestUsage(w http.ResponseWriter, r *http.Request) error {
	evs, err := decodeOneOrBatch[quota.Event](r)
	if err != nil {
		return err
	}
	t := currentTenant(r.Context())
	for _, e := range evs {
		if e.TenantID != "" && e.TenantID != t.ID {
			return errs.Invalid("an event names another tenant", map[string]string{"tenant": "must be omitted or this tenant's id"})
		}
	}
	res, err := s.Quota.Ingest(r.Context(), evs)
	if err != nil {
		return err
	}
	writeJSON(w, http.StatusAccepted, res)
	return nil
}

// usageAnswer answers counts and current periods, or with ?meter= an
// aggregation ?from=&to=&groupBy=hour|day (default: the last 24 hours by hour).
func (s *server) usageAnswer(w http.ResponseWriter, r *http.Request, tenantID, plan string) error {
	ctx := store.WithTenant(r.Context(), tenantID)
	q := r.URL.Query()
	if meter := q.Get("meter"); meter != "" {
		f := errs.Fields{}
		to := time.Now().UTC()
		if t := parseTime(f, "to", q.Get("to")); t != nil {
			to = *t
		}
		from := to.Add(-24 * time.Hour)
		if t := parseTime(f, "from", q.Get("from")); t != nil {
			from = *t
		}
		groupBy := q.Get("groupBy")
		if groupBy == "" {
			groupBy = "hour"
		}
		if err := f.Err(); err != nil {
			return err
		}
		buckets, total, err := s.Quota.Aggregate(ctx, meter, from, to, groupBy)
		if err != nil {
			return err
		}
		writeJSON(w, http.StatusOK, map[string]any{"tenantId": tenantID, "meter": meter, "from": from, "to": to, "groupBy": groupBy,
			"total": total, "buckets": buckets})
		return nil
	}
	counts, err := s.Identity.CountUsers(ctx)
	if err != nil {
		return err
	}
	var total int64
	for st, n := range counts {
		if st != identity.StatusDeleted {
			total += n
		}
	}
	periods, err := s.Quota.CurrentPeriods(r.Context(), tenantID)
	if err != nil {
		return err
	}
	writeJSON(w, http.StatusOK, map[string]any{"tenantId": tenantID, "plan": plan,
		"users": map[string]any{"total": total, "byStatus": counts}, "periods": periods})
	return nil
}

func (s *server) adminUsage(w http.ResponseWriter, r *http.Request) error {
	t, err := s.Tenants.Get(r.Context(), r.PathValue("id"))
	if err != nil {
		return err
	}
	return s.usageAnswer(w, r, t.ID, t.Plan)
}

// svcUsage is seed 004's POST /internal/metrics/usage: {tenantId,
// resourceType, value, timestamp, id?}, or {"events": [...]} with a
// tenantId on each.
func (s *server) svcUsage(w http.ResponseWriter, r *http.Request) error {
	type seedEvent struct {
		ID           string          `json:"id"`
		TenantID     string          `json:"tenantId"`
		ResourceType string          `json:"resourceType"`
		Meter        string          `json:"meter"`
		Value        int64           `json:"value"`
		Timestamp    time.Time       `json:"timestamp"`
		Attributes   json.RawMessage `json:"attributes"`
	}
	list, err := decodeOneOrBatch[seedEvent](r)
	if err != nil {
		return err
	}
	// Values are checked here, against the request's own indices: Ingest
	// sees each tenant's events apart and would number them per tenant.
	f := errs.Fields{}
	for i, e := range list {
		if e.Value < 0 || e.Value > quota.MaxEventValue {
			name := fmt.Sprintf("events[%d].value", i)
			if len(list) == 1 {
				name = "value"
			}
			f.Add(name, fmt.Sprintf("must be from 0 to %d", quota.MaxEventValue))
		}
	}
	if err := f.Err(); err != nil {
		return err
	}
	byTenant := map[string][]quota.Event{}
	for _, e := range list {
		if e.Meter == "" {
			e.Meter = e.ResourceType
		}
		if e.ID == "" {
			e.ID = "svc-" + requestID(r.Context()) + "-" + time.Now().UTC().Format("150405.000000000") // not idempotent without an id
		}
		if _, err := s.Tenants.Get(r.Context(), e.TenantID); err != nil {
			return err
		}
		byTenant[e.TenantID] = append(byTenant[e.TenantID], quota.Event{ID: e.ID, Meter: e.Meter, Value: e.Value, OccurredAt: e.Timestamp, Attributes: store.JSON(e.Attributes)})
	}
	out := quota.IngestResult{}
	for tid, evs := range byTenant {
		res, err := s.Quota.Ingest(store.WithTenant(r.Context(), tid), evs)
		if err != nil {
			return err
		}
		out.Accepted += res.Accepted
		out.Duplicates += res.Duplicates
	}
	writeJSON(w, http.StatusAccepted, out)
	return nil
}

type quotaCheckRequest struct {
	TenantID string `json:"tenantId"`
	Meter    string `json:"meter"`
	Amount   int64  `json:"amount"`
}

// svcQuotaCheck tells another service whether amount more of a metered
// usage fits the tenant's current period (429 with the reset time if not).
func (s *server) svcQuotaCheck(w http.ResponseWriter, r *http.Request) error {
	var in quotaCheckRequest
	if err := decodeJSON(r, &in); err != nil {
		return err
	}
	if in.Amount < 0 || in.Amount > quota.MaxEventValue {
		return errs.Invalid("bad amount", map[string]string{"amount": fmt.Sprintf("must be from 0 to %d", quota.MaxEventValue)})
	}
	if _, err := s.Tenants.Get(r.Context(), in.TenantID); err != nil {
		return err
	}
	u, err := s.Quota.CheckPeriod(context.WithoutCancel(r.Context()), in.TenantID, in.Meter, in.Amount)
	if err != nil {
		return err
	}
	writeJSON(w, http.StatusOK, map[string]any{"allowed": true, "usage": u})
	return nil
}

type paymentStatusRequest struct {
	TenantID string `json:"tenantId"`
	Status   string `json:"status"` // succeeded | failed
	Reason   string `json:"reason"`
}

// svcPaymentStatus is the billing hook: a failed payment suspends the
// tenant, a successful one activates it (ending a trial, or lifting a
// suspension). Reporting the state a tenant is already in changes nothing.
func (s *server) svcPaymentStatus(w http.ResponseWriter, r *http.Request) error {
	var in paymentStatusRequest
	if err := decodeJSON(r, &in); err != nil {
		return err
	}
	action := map[string]string{"succeeded": tenant.ActionActivate, "failed": tenant.ActionSuspend}[in.Status]
	if action == "" {
		return errs.Invalid("bad status", map[string]string{"status": "must be succeeded or failed"})
	}
	if len(in.Reason) > 500 {
		return errs.Invalid("the reason is too long", map[string]string{"reason": "must be at most 500 characters"})
	}
	t, err := s.Tenants.Get(r.Context(), in.TenantID)
	if err != nil {
		return err
	}
	target := map[string]string{tenant.ActionActivate: tenant.StatusActive, tenant.ActionSuspend: tenant.StatusSuspended}[action]
	if t.Status != target {
		reason := "payment " + in.Status
		if in.Reason != "" {
			reason += ": " + in.Reason
		}
		if t, err = s.Tenants.Transition(store.WithPlatform(r.Context(), "billing hook"), t.ID, action, reason); err != nil {
			return err
		}
	}
	writeJSON(w, http.StatusOK, map[string]any{"tenantId": t.ID, "status": t.Status})
	return nil
}
