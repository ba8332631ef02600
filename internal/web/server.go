// Package web is tenantgate's HTTP layer: the request pipeline (request id
// and trace headers, tenant resolution, authentication, tenant gate,
// permission check), every route in one table (routes.go), JSON decoding,
// and the one error table (errors.go).
package web

import (
	"context"
	"log/slog"
	"net/http"
	"slices"
	"strings"
	"time"

	"github.com/tenantgate/tenantgate/internal/billing"
	"github.com/tenantgate/tenantgate/internal/gateway"
	"github.com/tenantgate/tenantgate/internal/identity"
	"github.com/tenantgate/tenantgate/internal/identity/oidc"
	"github.com/tenantgate/tenantgate/internal/kv"
	"github.com/tenantgate/tenantgate/internal/quota"
	"github.com/tenantgate/tenantgate/internal/rbac"
	"github.com/tenantgate/tenantgate/internal/store"
	"github.com/tenantgate/tenantgate/internal/tenant"
)

// Pinger is a dependency /api/health reports on.
type Pinger interface {
	Ping(ctx context.Context) error
}

// Deps is everything the HTTP layer needs, built in cmd/tenantgate/run.go.
type Deps struct {
	Log               *slog.Logger
	Store             *store.Store
	Tenants           *tenant.Service
	Identity          *identity.Service
	RBAC              *rbac.Engine
	OIDC              *oidc.Service // single sign-on; nil when not configured
	Quota             *quota.Service
	Limiter           quota.RateLimiter // nil: no rate limits
	Counters          kv.Store          // hourly API-call counters for apiCallsPerHour (nil: not counted)
	AuthRatePerMinute int               // the auth route class, per client address (0: unlimited)
	BaseDomain        string            // tenants answer at {slug}.{BaseDomain}
	PublicURL         string            // where clients reach the server; the token issuer
	Version           string
	StartedAt         time.Time
	Dependencies      map[string]Pinger // extra health dependencies: down makes /api/health 503 unhealthy
	// Degradable dependencies (Redis) have a fallback: down, /api/health
	// answers 200 "degraded" and names them "unavailable".
	Degradable    map[string]Pinger
	ServiceTokens []ServiceToken   // credentials of the service API (/internal/*)
	Gateway       *gateway.Service // the AI gateway (/v1/*, channels, request log)
	Billing       *billing.Service // balances, ledger, prices, codes (nil: the billing routes answer 503)
}

type server struct {
	Deps
	log *slog.Logger
	mux *http.ServeMux
}

// NewServer builds the handler.
func NewServer(d Deps) http.Handler {
	if d.Log == nil {
		d.Log = slog.New(slog.DiscardHandler)
	}
	if d.StartedAt.IsZero() {
		d.StartedAt = time.Now()
	}
	s := &server{Deps: d, log: d.Log, mux: http.NewServeMux()}
	byPath := map[string][]route{}
	var order []string
	for _, rt := range s.routes() {
		if _, ok := byPath[rt.path]; !ok {
			order = append(order, rt.path)
		}
		byPath[rt.path] = append(byPath[rt.path], rt)
	}
	for _, p := range order {
		s.mux.Handle(p, s.dispatch(byPath[p]))
	}
	s.mux.Handle("/", s.handle(route{access: public, h: func(w http.ResponseWriter, r *http.Request) error {
		return errNotFoundRoute(r)
	}}))
	return s.edge(s.mux)
}

// dispatch picks the route for the request's method on one path, answering
// 405 with an Allow header when none matches.
func (s *server) dispatch(rs []route) http.Handler {
	handlers := map[string]http.Handler{}
	var allow []string
	for _, rt := range rs {
		handlers[rt.method] = s.handle(rt)
		allow = append(allow, rt.method)
	}
	if _, ok := handlers[http.MethodGet]; ok {
		allow = append(allow, http.MethodHead)
	}
	slices.Sort(allow)
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		m := r.Method
		if m == http.MethodHead {
			m = http.MethodGet
		}
		if h, ok := handlers[m]; ok {
			h.ServeHTTP(w, r)
			return
		}
		w.Header().Set("Allow", strings.Join(allow, ", "))
		s.writeError(w, r, errMethod(r, allow))
	})
}
