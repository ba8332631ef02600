package web

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"net"
	"net/http"
	"regexp"
	"runtime/debug"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/google/uuid"

	"github.com/tenantgate/tenantgate/internal/actor"
	"github.com/tenantgate/tenantgate/internal/audit"
	"github.com/tenantgate/tenantgate/internal/errs"
	"github.com/tenantgate/tenantgate/internal/identity"
	"github.com/tenantgate/tenantgate/internal/identity/oidc"
	"github.com/tenantgate/tenantgate/internal/quota"
	"github.com/tenantgate/tenantgate/internal/rbac"
	"github.com/tenantgate/tenantgate/internal/store"
	"github.com/tenantgate/tenantgate/internal/tenant"
	"gorm.io/gorm"
)

var (
	requestIDRe = regexp.MustCompile(`^[A-Za-z0-9._:-]{1,128}$`)
	traceIDRe   = regexp.MustCompile(`^[A-Za-z0-9-]{8,64}$`)
)

// validRequestID reports whether a caller's X-Request-ID may be reused.
func validRequestID(s string) bool { return requestIDRe.MatchString(s) }

func randomHex(n int) string {
	b := make([]byte, n)
	_, _ = rand.Read(b)
	return hex.EncodeToString(b)
}

type pathSlugKey struct{}

type statusRecorder struct {
	http.ResponseWriter
	status int
	bytes  int
}

func (w *statusRecorder) WriteHeader(code int) {
	if w.status == 0 {
		w.status = code
	}
	w.ResponseWriter.WriteHeader(code)
}

func (w *statusRecorder) Write(b []byte) (int, error) {
	if w.status == 0 {
		w.status = http.StatusOK
	}
	n, err := w.ResponseWriter.Write(b)
	w.bytes += n
	return n, err
}

func (w *statusRecorder) Unwrap() http.ResponseWriter { return w.ResponseWriter }

// edge runs for every request: request id and trace headers (seed 004),
// panic recovery, the /t/{slug}/ path prefix, and one log line.
func (s *server) edge(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		start := time.Now()
		rid := r.Header.Get("X-Request-ID")
		if !validRequestID(rid) {
			rid = "req_" + strings.ReplaceAll(uuid.Must(uuid.NewV7()).String(), "-", "")
		}
		trace := r.Header.Get("X-Trace-ID")
		if !traceIDRe.MatchString(trace) {
			trace = randomHex(16)
		}
		parent := r.Header.Get("X-Span-ID")
		if !traceIDRe.MatchString(parent) {
			parent = ""
		}
		span := randomHex(8)
		h := w.Header()
		h.Set("X-Request-ID", rid)
		h.Set("X-Trace-ID", trace)
		h.Set("X-Span-ID", span)
		if parent != "" {
			h.Set("X-Parent-Span-ID", parent)
		}
		h.Set("X-Content-Type-Options", "nosniff")
		// One request is one line of work: store.Tx refuses a transaction inside another.
		ctx := context.WithValue(store.Track(r.Context()), keyRequestID, rid)
		ctx = context.WithValue(ctx, keyTraceID, trace)
		if slug, rest, ok := splitTenantPath(r.URL.Path); ok {
			ctx = context.WithValue(ctx, pathSlugKey{}, slug)
			r2 := r.Clone(ctx)
			r2.URL.Path, r2.URL.RawPath = rest, ""
			r = r2
		} else {
			r = r.WithContext(ctx)
		}
		rec := &statusRecorder{ResponseWriter: w}
		defer func() {
			if p := recover(); p != nil {
				s.log.Error("panic while serving a request", "panic", fmt.Sprint(p), "requestId", rid, "stack", string(debug.Stack()))
				if rec.status == 0 {
					s.writeError(rec, r, errs.Internal(fmt.Errorf("panic: %v", p), ""))
				}
			}
			attrs := []any{"method", r.Method, "path", r.URL.Path, "status", rec.status, "bytes", rec.bytes,
				"duration", time.Since(start).Round(time.Microsecond).String(), "requestId", rid, "traceId", trace, "spanId", span}
			if parent != "" {
				attrs = append(attrs, "parentSpanId", parent)
			}
			if info, ok := r.Context().Value(logInfoKey{}).(*logInfo); ok {
				if info.tenant != "" {
					attrs = append(attrs, "tenant", info.tenant)
				}
				if info.actor != "" {
					attrs = append(attrs, "actor", info.actor)
				}
			}
			s.log.Info("request", attrs...)
		}()
		info := &logInfo{}
		r = r.WithContext(context.WithValue(r.Context(), logInfoKey{}, info))
		next.ServeHTTP(rec, r)
	})
}

type logInfoKey struct{}

type logInfo struct{ tenant, actor, key string }

// access says who may call a route.
type access int

const (
	public        access = iota // anyone; a tenant is resolved if the request names one
	authenticated               // any valid credential
	tenantScoped                // a credential acting in one resolved tenant
	platformOnly                // a platform operator
	serviceOnly                 // another service, by X-Service-Token; the tenant is in the body
)

type route struct {
	method string
	path   string
	access access
	perm   rbac.Permission // checked after access; "" for none
	h      func(w http.ResponseWriter, r *http.Request) error
}

// handle is the pipeline around one route: authentication, tenant
// resolution, the tenant gate, the permission check, then the handler.
func (s *server) handle(rt route) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		ctx, err := s.pipeline(w, r, rt)
		if err != nil {
			s.writeError(w, r, err)
			return
		}
		if err := rt.h(w, r.WithContext(ctx)); err != nil {
			s.writeError(w, r, err)
		}
	})
}

func clientIP(r *http.Request) string {
	host, _, err := net.SplitHostPort(r.RemoteAddr)
	if err != nil {
		return r.RemoteAddr
	}
	return host
}

func (s *server) pipeline(w http.ResponseWriter, r *http.Request, rt route) (context.Context, error) {
	ctx := r.Context()
	if err := cleanQuery(r); err != nil {
		return nil, err
	}
	base := &actor.Actor{Type: actor.TypeSystem, ID: "anonymous", SourceIP: clientIP(r), UserAgent: cleanHeader(r.UserAgent(), 512), RequestID: requestID(ctx)}

	// The auth endpoints are limited per client address, before any work.
	if authRoutes[rt.path] {
		if err := s.limit(w, r.Context(), "ip:"+clientIP(r)+":auth", s.AuthRatePerMinute); err != nil {
			return nil, err
		}
	}

	// The service API has its own credential and names tenants in its bodies.
	if rt.access == serviceOnly {
		a, err := s.authenticateService(r, base)
		if err != nil {
			return nil, err
		}
		if info, ok := ctx.Value(logInfoKey{}).(*logInfo); ok {
			info.actor = "service:" + a.ID
		}
		return actor.With(ctx, a), nil
	}

	// 1. Authentication (bearer JWT; the credential is checked before any lookup).
	a, err := s.authenticate(r, base)
	if err != nil {
		if rt.access != public {
			return nil, err
		}
		a = nil // a bad credential on a public route is ignored
	}
	if a == nil && rt.access != public {
		return nil, errs.Unauthenticated(errs.CodeUnauthorized, "this endpoint needs a bearer token: log in at POST /api/v1/auth/login")
	}
	if rt.access == platformOnly && !a.IsOperator() {
		return nil, errs.Forbidden(errs.CodePermissionDenied, "this endpoint is for platform operators")
	}

	// 2. Tenant resolution, first match wins.
	pathSlug, _ := ctx.Value(pathSlugKey{}).(string)
	t, err := s.resolve(ctx, readHint(r, s.BaseDomain, pathSlug), a)
	if err != nil {
		if rt.access != public {
			return nil, err
		}
		// Public routes answer the same whatever tenant is named; the login
		// handler reports the error itself when it needs the tenant.
		ctx = context.WithValue(ctx, keyResolveErr, err)
		t = nil
	}

	// 3. The credential's tenant must be the resolved one; operators may cross.
	if a != nil && !a.IsOperator() {
		switch {
		case t == nil:
			if t, err = s.Tenants.Get(ctx, a.TenantID); err != nil {
				return nil, err
			}
		case t.ID != a.TenantID:
			return nil, errs.NotFound(errs.CodeTenantNotFound, "no tenant by that reference")
		}
	}
	if rt.access == tenantScoped && t == nil {
		return nil, errs.Invalid("name the tenant to act in", map[string]string{
			"X-Tenant-ID": "an operator must name the tenant with X-Tenant-ID, X-Tenant-Slug, /t/{slug}/ or ?tenant="})
	}

	// 4. Tenant gate: only serving tenants answer their users, from the
	// tenant's allowed addresses, signed in as its policy demands. Public
	// routes skip it so an anonymous caller learns nothing of a tenant.
	if t != nil && rt.access != platformOnly && rt.access != public && !(a != nil && a.IsOperator()) {
		if err := gate(t); err != nil {
			return nil, err
		}
		if !t.Compliance.AllowsIP(base.SourceIP) {
			return nil, errs.Forbidden(CodeIPNotAllowed, "this organisation does not allow requests from %s", base.SourceIP)
		}
		if t.Compliance.Require2FA && a != nil && a.Type == actor.TypeUser && a.KeyID == "" && !a.MFA && !mfaExempt[rt.method+" "+rt.path] {
			return nil, errs.Forbidden(identity.CodeMFAEnrollmentRequired,
				"this organisation requires two-factor authentication: set it up with POST /api/v1/users/me/2fa/setup and /enable, then log in again with your code")
		}
	}

	// A read-only impersonation may only read.
	if a != nil && a.ReadOnly && r.Method != http.MethodGet && r.Method != http.MethodHead {
		return nil, errs.Forbidden(CodeReadOnlySession, "this is a read-only impersonation session")
	}

	// 4b. Rate limits: the tenant's plan rate, and a key's own rate.
	if t != nil && a != nil && a.Type == actor.TypeUser && s.Quota != nil && s.Limiter != nil {
		e, err := s.Quota.Cached(ctx, t.ID)
		if err != nil {
			return nil, err
		}
		if rpm := int(e.Limit("requestsPerMinute")); rpm != -1 {
			if err := s.limit(w, ctx, "tenant:"+t.ID+":rpm", rpm); err != nil {
				return nil, err
			}
		}
		if a.KeyRate > 0 {
			if err := s.limit(w, ctx, "tenant:"+t.ID+":key:"+a.KeyID+":rpm", a.KeyRate); err != nil {
				return nil, err
			}
		}
		if err := s.countAPICall(ctx, t.ID, e.Limit("apiCallsPerHour")); err != nil {
			return nil, err
		}
		s.Quota.CountAPICall(t.ID)
	}

	// 5. Permission: operators hold every one; a tenant principal's come from
	// the RBAC engine (built-in, assigned and inherited roles; conditions).
	if rt.perm != "" {
		ok := rbac.Allowed(a, rt.perm)
		if a != nil && a.Type == actor.TypeUser && t != nil {
			if ok, err = s.RBAC.Allowed(ctx, a, t.ID, rt.perm); err != nil {
				return nil, errs.Internal(err, "check permissions")
			}
		}
		if !ok {
			return nil, errs.Forbidden(errs.CodePermissionDenied, "you need the %s permission for this", rt.perm)
		}
	}

	// 6. Plan feature, for tenant principals.
	if feature := routeFeatures[rt.method+" "+rt.path]; feature != "" && t != nil && a != nil && !a.IsOperator() && s.Quota != nil {
		e, err := s.Quota.Cached(ctx, t.ID)
		if err != nil {
			return nil, err
		}
		if !e.Features[feature] {
			return nil, s.Quota.FeatureError(ctx, feature)
		}
	}

	// The store scope follows: a tenant's rows, or (operators on platform
	// routes) every tenant's.
	if info, ok := ctx.Value(logInfoKey{}).(*logInfo); ok {
		if t != nil {
			info.tenant = t.ID
		}
		if a != nil {
			info.actor, info.key = string(a.Type)+":"+a.ID, a.KeyID
		}
	}
	if a == nil {
		a = base
	}
	ctx = actor.With(ctx, a)
	switch {
	case rt.access == platformOnly:
		ctx = store.WithPlatform(ctx, "operator "+a.ID+" "+r.Method+" "+r.URL.Path)
	case t != nil:
		ctx = context.WithValue(ctx, keyTenant, t)
		ctx = store.WithTenant(ctx, t.ID)
		if a.IsOperator() && rt.access != platformOnly {
			if err := s.auditCrossing(ctx, r, t); err != nil {
				return nil, err
			}
		}
	case a.IsOperator():
		ctx = store.WithPlatform(ctx, "operator "+a.ID+" "+r.Method+" "+r.URL.Path)
	}
	return ctx, nil
}

// CodeReadOnlySession refuses a write in a read-only impersonation.
const CodeReadOnlySession = "READ_ONLY_SESSION"

// CodeIPNotAllowed refuses a request from outside the tenant's IP allowlist.
const CodeIPNotAllowed = "IP_NOT_ALLOWED"

// mfaExempt are the routes a user without a second factor may still call
// when the tenant requires one: enough to enrol.
var mfaExempt = map[string]bool{
	"GET /api/v1/users/me": true, "POST /api/v1/users/me/2fa/setup": true, "POST /api/v1/users/me/2fa/enable": true,
	"GET /api/v1/tenants/current": true, "GET /api/v1/sessions": true,
}

// gate refuses tenants that are not serving.
func gate(t *tenant.Tenant) error {
	switch t.Status {
	case tenant.StatusTrial, tenant.StatusActive:
		return nil
	case tenant.StatusSuspended:
		return errs.Forbidden(errs.CodeTenantSuspended, "this tenant is suspended; its owner can contact support to reactivate it")
	case tenant.StatusDeleted:
		return errs.E(errs.KindGone, errs.CodeTenantDeleted, "this tenant was deleted; an operator can restore it until it is purged")
	case tenant.StatusProvisioning:
		return errs.E(errs.KindUnavailable, errs.CodeTenantUnavailable, "this tenant is still being set up; try again shortly")
	}
	return errs.NotFound(errs.CodeTenantNotFound, "no tenant by that reference")
}

// resolve finds the tenant a request names, if any.
func (s *server) resolve(ctx context.Context, h hint, a *actor.Actor) (*tenant.Tenant, error) {
	if h.Domain != "" {
		t, err := s.Tenants.ByDomain(ctx, h.Domain)
		if err == nil {
			return t, nil
		}
		if !errs.Is(err, errs.CodeTenantNotFound) {
			return nil, err
		}
		// An unknown host is not a tenant reference (it may be a proxy's name).
	}
	switch {
	case h.Subdomain != "":
		return s.Tenants.BySlug(ctx, h.Subdomain)
	case h.PathSlug != "":
		return s.Tenants.BySlug(ctx, h.PathSlug)
	case h.HeaderID != "":
		if !validHeaderID(h.HeaderID) {
			return nil, errs.Invalid("X-Tenant-ID is not a tenant id", map[string]string{"X-Tenant-ID": "must be a tenant id (a UUID)"})
		}
		return s.Tenants.Get(ctx, h.HeaderID)
	case h.HeaderSlug != "":
		return s.Tenants.BySlug(ctx, h.HeaderSlug)
	case h.Query != "" && a.IsOperator():
		return s.Tenants.ByRef(ctx, strings.ToLower(h.Query))
	}
	return nil, nil
}

// authenticate reads a bearer token, if any.
func (s *server) authenticate(r *http.Request, base *actor.Actor) (*actor.Actor, error) {
	authz := r.Header.Get("Authorization")
	if authz == "" {
		return nil, nil
	}
	scheme, tok, ok := strings.Cut(authz, " ")
	if !ok || !strings.EqualFold(scheme, "Bearer") || strings.TrimSpace(tok) == "" {
		return nil, errs.Unauthenticated(errs.CodeUnauthorized, "the Authorization header must be: Bearer <token>")
	}
	tok = strings.TrimSpace(tok)
	if identity.IsAPIKey(tok) {
		p, err := s.Identity.AuthenticateKey(r.Context(), tok, base.SourceIP)
		if err != nil {
			return nil, err
		}
		a := *base
		a.Type, a.ID, a.TenantID, a.KeyID = actor.TypeUser, p.Key.UserID, p.Key.TenantID, p.Key.ID
		a.Email, a.Username, a.Roles, a.Permissions = p.Email, p.Username, p.Roles, p.Key.Scopes
		if p.Key.RateLimit != nil {
			a.KeyRate = *p.Key.RateLimit
		}
		if p.Key.TokenRate != nil {
			a.KeyTokenRate = *p.Key.TokenRate
		}
		a.KeyModels, a.KeyBudget = p.Key.AllowedModels, p.Key.BudgetMicros
		return &a, nil
	}
	if s.OIDC != nil {
		if iss := oidc.PeekIssuer(tok); iss != "" && iss != s.Identity.Signer().Config().Issuer {
			return s.authenticateFederated(r, base, tok)
		}
	}
	c, err := s.Identity.Signer().Verify(tok)
	if err != nil {
		return nil, err
	}
	if s.Identity.SessionRevoked(c.SessionID) {
		return nil, errs.Unauthenticated(errs.CodeTokenInvalid, "this session has ended; log in again")
	}
	a := *base
	a.ID, a.Email, a.Username, a.SessionID, a.TokenID = c.Subject, c.Email, c.Username, c.SessionID, c.ID
	a.Roles, a.Permissions, a.MFA = c.Roles, c.Permissions, slices.Contains(c.AMR, "otp")
	a.ImpersonatedBy, a.ReadOnly = c.Actor, c.ReadOnly
	// An impersonation passes the tenant's 2FA policy: the operator signed in.
	a.MFA = a.MFA || c.Actor != ""
	switch {
	case c.Tenant == "" && containsRole(c.Roles, rbac.RolePlatformAdmin):
		a.Type = actor.TypeOperator
	case store.ValidID(c.Tenant) && c.Tenant != store.PlatformTenantID:
		a.Type, a.TenantID = actor.TypeUser, c.Tenant
		// Only tenant roles count for tenant users, whatever the token says.
		roles := a.Roles[:0:0]
		for _, role := range c.Roles {
			if rbac.IsTenantRole(role) {
				roles = append(roles, role)
			}
		}
		a.Roles = roles
	default:
		return nil, errs.Unauthenticated(errs.CodeTokenInvalid, "the access token names no tenant")
	}
	return &a, nil
}

func containsRole(roles []string, role string) bool {
	for _, r := range roles {
		if r == role {
			return true
		}
	}
	return false
}

// auditCrossing records an operator acting inside a tenant.
func (s *server) auditCrossing(ctx context.Context, r *http.Request, t *tenant.Tenant) error {
	return s.Store.Tx(ctx, func(tx *gorm.DB) error {
		return audit.Record(ctx, tx, audit.Entry{TenantID: t.ID, EventType: "platform.cross_tenant_access", Resource: "tenant",
			ResourceID: t.ID, Action: "access", Metadata: map[string]any{"method": r.Method, "path": r.URL.Path}})
	})
}

func errNotFoundRoute(r *http.Request) error {
	return errs.NotFound(errs.CodeNotFound, "no endpoint %s %s; see the README for the API", r.Method, r.URL.Path)
}

func errMethod(r *http.Request, allow []string) error {
	return errs.E(errs.KindMethodNotAllowed, errs.CodeMethodNotAllowed, "%s is not allowed on %s; use %s", r.Method, r.URL.Path, strings.Join(allow, ", "))
}

// authRoutes form the "auth" route class, limited per client address.
var authRoutes = map[string]bool{
	"/api/v1/tenants/signup": true, "/api/v1/auth/login": true, "/api/v1/auth/refresh": true,
	"/api/v1/auth/oidc/{tenant_slug}/login": true, "/api/v1/auth/oidc/callback": true,
}

// limit takes one request from a GCRA bucket, writes the X-RateLimit
// headers, and refuses with 429 RATE_LIMITED when the bucket is empty.
func (s *server) limit(w http.ResponseWriter, ctx context.Context, key string, perMinute int) error {
	if s.Limiter == nil || perMinute == 0 {
		return nil
	}
	d, err := s.Limiter.Allow(ctx, key, perMinute)
	if err != nil {
		return &errs.Error{Kind: errs.KindUnavailable, Code: errs.CodeServiceUnavailable, RetryAfter: 1,
			Msg: "rate limiting is unavailable and this server refuses limited requests meanwhile; try again shortly", Err: err}
	}
	h := w.Header()
	h.Set("X-RateLimit-Limit", strconv.Itoa(d.Limit))
	if d.Remaining >= 0 {
		h.Set("X-RateLimit-Remaining", strconv.Itoa(d.Remaining))
	}
	h.Set("X-RateLimit-Reset", strconv.Itoa(int((d.ResetAfter+time.Second-1)/time.Second)))
	if !d.Allowed {
		secs := int((d.RetryAfter + time.Second - 1) / time.Second)
		if secs < 1 {
			secs = 1
		}
		return &errs.Error{Kind: errs.KindRateLimited, Code: errs.CodeRateLimited, RetryAfter: secs,
			Msg: fmt.Sprintf("too many requests: the limit is %d a minute; try again in %d seconds", d.Limit, secs)}
	}
	return nil
}

// countAPICall counts a tenant's request toward apiCallsPerHour in the
// shared counters and refuses once the hour's allowance is used.
func (s *server) countAPICall(ctx context.Context, tenantID string, limit int64) error {
	if s.Counters == nil || limit == quota.Unlimited {
		return nil
	}
	start := quota.PeriodStart("hour", time.Now())
	reset := start.Add(time.Hour)
	n, err := s.Counters.Incr(ctx, "tenant:"+tenantID+":api_calls:"+start.Format("2006010215"), time.Until(reset)+time.Minute)
	if err != nil {
		return nil // counting is best effort; the rate limiter guards the service itself
	}
	if n > limit {
		secs := int(time.Until(reset).Seconds()) + 1
		return &errs.Error{Kind: errs.KindRateLimited, Code: quota.CodeQuotaExceeded, RetryAfter: secs,
			Msg:    fmt.Sprintf("this organisation's %d API calls for this hour are used up; the allowance resets at %s", limit, reset.Format(time.RFC3339)),
			Fields: map[string]string{"limit": fmt.Sprint(limit), "used": fmt.Sprint(n - 1), "resetsAt": reset.Format(time.RFC3339)}}
	}
	return nil
}
