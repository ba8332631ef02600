package web

import (
	"net/http"
	"strconv"
	"strings"
	"time"

	"github.com/tenantgate/tenantgate/internal/actor"
	"github.com/tenantgate/tenantgate/internal/errs"
	"github.com/tenantgate/tenantgate/pkg/snapshot"
)

// DefaultSnapshotTTL is how long an entitlement snapshot is valid.
const DefaultSnapshotTTL = 10 * time.Minute

func limitPeriod(name string) string {
	switch {
	case strings.HasPrefix(name, "monthly"):
		return "month"
	case strings.HasSuffix(name, "PerHour"):
		return "hour"
	case strings.HasSuffix(name, "PerMinute"):
		return "minute"
	}
	return "none"
}

// entitlementSnapshot answers a JWS (EdDSA, key in the JWKS) carrying the
// tenant's entitlements, for offline enforcement with pkg/snapshot.
func (s *server) entitlementSnapshot(w http.ResponseWriter, r *http.Request) error {
	ctx := r.Context()
	id := r.PathValue("id")
	t := currentTenant(ctx)
	if a := actor.From(ctx); a.IsOperator() {
		var err error
		if t, err = s.Tenants.Get(ctx, id); err != nil {
			return err
		}
	} else if t == nil || t.ID != id {
		return errs.NotFound(errs.CodeTenantNotFound, "no tenant by that reference")
	}
	ttl := DefaultSnapshotTTL
	if v := r.URL.Query().Get("ttl"); v != "" {
		secs, err := strconv.Atoi(v)
		if err != nil || secs < 60 || secs > 3600 {
			return errs.Invalid("bad ttl", map[string]string{"ttl": "must be 60 to 3600 seconds"})
		}
		ttl = time.Duration(secs) * time.Second
	}
	e, err := s.Quota.Entitlements(ctx, t.ID)
	if err != nil {
		return err
	}
	used, err := s.Quota.Usage(ctx, t.ID)
	if err != nil {
		return err
	}
	periods, err := s.Quota.CurrentPeriods(ctx, t.ID) // metered limits: this period's use
	if err != nil {
		return err
	}
	for _, p := range periods {
		used[p.Limit] = p.Used
	}
	now := time.Now().UTC().Truncate(time.Second)
	snap := snapshot.Snapshot{TenantID: t.ID, Plan: e.Plan, Status: t.Status, Isolation: e.Isolation, ValidFrom: now,
		ValidUntil: now.Add(ttl), Features: e.Features, Quotas: map[string]snapshot.Quota{}, IssuedAt: now, TTL: int(ttl.Seconds())}
	for name, limit := range e.Limits {
		q := snapshot.Quota{Limit: limit, Period: limitPeriod(name)}
		if n, ok := used[name]; ok {
			q.Used = &n
		}
		snap.Quotas[name] = q
	}
	raw, err := s.Identity.Signer().Keys().SignJWT(snapshot.Type, map[string]any{
		"iss": s.Identity.Signer().Config().Issuer, "sub": t.ID, "iat": now.Unix(), "exp": snap.ValidUntil.Unix(), "snapshot": snap})
	if err != nil {
		return errs.Internal(err, "sign the snapshot")
	}
	w.Header().Set("Content-Type", "application/jwt")
	w.Header().Set("Cache-Control", "no-store")
	_, _ = w.Write([]byte(raw))
	return nil
}
