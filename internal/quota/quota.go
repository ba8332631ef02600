// Package quota owns plans, entitlements and quotas: the plan catalogue
// (operators edit it), per-tenant overrides, the features and limits a
// tenant is entitled to, plan changes, and the atomic reservation of
// countable resources at creation.
package quota

import (
	"context"
	"fmt"
	"golang.org/x/sync/singleflight"
	"maps"
	"regexp"
	"slices"
	"sort"
	"strings"
	"sync"
	"time"

	"gorm.io/gorm"

	"github.com/tenantgate/tenantgate/internal/audit"
	"github.com/tenantgate/tenantgate/internal/errs"
	"github.com/tenantgate/tenantgate/internal/store"
)

// Error codes.
const (
	CodeQuotaExceeded           = "TENANT_QUOTA_EXCEEDED"
	CodeFeatureNotEnabled       = "FEATURE_NOT_ENABLED"
	CodePlanNotFound            = "PLAN_NOT_FOUND"
	CodeDowngradeExceeded       = "PLAN_DOWNGRADE_EXCEEDS_USAGE"
	Unlimited             int64 = -1
	// MaxLimit is the largest limit a plan or an override may set (10^15);
	// -1 is unlimited. Bounded so that no limit arithmetic (thresholds,
	// rate limiters) can overflow, and far below the period counters' cap.
	MaxLimit int64 = 1_000_000_000_000_000
)

// Features and limits known to the server; plans may carry others.
var (
	Features = []string{"apiAccess", "customDomain", "sso", "auditExport", "whiteLabel", "analytics", "byok", "dedicatedDatabase", "dedicatedInstance"}
	Limits   = []string{"users", "apiKeys", "roles", "customDomains", "webhooks", "storageBytes", "requestsPerMinute", "apiCallsPerHour", "monthlyTokens", "monthlyMessages", "tokensPerMinute"}
)

// Plan is one entry of the catalogue.
type Plan struct {
	Name        string           `gorm:"primaryKey" json:"name"`
	DisplayName string           `json:"displayName"`
	Features    map[string]bool  `gorm:"serializer:json" json:"features"`
	Limits      map[string]int64 `gorm:"serializer:json" json:"limits"`
	Isolation   string           `json:"isolation"` // shared | dedicated_db | dedicated_instance
	Paid        bool             `json:"paid"`
	SortOrder   int              `json:"sortOrder"`
	UpdatedAt   time.Time        `json:"updatedAt"`
}

// TableName maps plans to plans.
func (Plan) TableName() string { return "plans" }

// Overrides replace a plan's features and limits for one tenant.
type Overrides struct {
	Features map[string]bool  `json:"features,omitempty"`
	Limits   map[string]int64 `json:"limits,omitempty"`
}

type tenantRow struct {
	ID                   string
	Plan                 string
	EntitlementOverrides Overrides `gorm:"serializer:json"`
}

func (tenantRow) TableName() string { return "tenants" }

// Entitlements are what a tenant may do now.
type Entitlements struct {
	TenantID  string           `json:"tenantId"`
	Plan      string           `json:"plan"`
	Isolation string           `json:"isolation"`
	Features  map[string]bool  `json:"features"`
	Limits    map[string]int64 `json:"limits"`
	Overrides Overrides        `json:"overrides"`
}

// Limit returns a limit (Unlimited when -1 or absent... absent means 0).
func (e *Entitlements) Limit(name string) int64 {
	v, ok := e.Limits[name]
	if !ok {
		return 0
	}
	return v
}

// Service is the quota service.
type Service struct {
	store *store.Store
	now   func() time.Time

	mu        sync.Mutex
	ttl       time.Duration // of the catalogue and the entitlements (PlanCacheTTL)
	periodTTL time.Duration // of the cached periods (periodCacheTTL)
	plans     map[string]Plan
	plansAt   time.Time
	// counters count the current use of countable resources, registered by
	// the packages that own them (users by identity, roles by rbac, …).
	counters map[string]func(tx *gorm.DB) (int64, error)
	ents     map[string]cachedEnt // tenant id → entitlements, for the hot path

	callsMu sync.Mutex
	calls   map[callKey]int64 // API calls counted since the last flush

	periodsMu sync.Mutex
	periods   map[string]cachedPeriods // tenant id → current periods, for the AI gateway's hot path
	periodsSF singleflight.Group
}

type cachedPeriods struct {
	uses []PeriodUse
	exp  time.Time
}

type callKey struct {
	tenantID string
	hour     time.Time
}

type cachedEnt struct {
	e   *Entitlements
	exp time.Time
}

// Invalidate drops a tenant's cached entitlements (after its plan changed).
func (s *Service) Invalidate(tenantID string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	delete(s.ents, tenantID)
}

// Cached returns a tenant's entitlements from a cache that lives
// PlanCacheTTL, for the request path (the rate limiter reads it per request).
func (s *Service) Cached(ctx context.Context, tenantID string) (*Entitlements, error) {
	now := s.now()
	s.mu.Lock()
	if c, ok := s.ents[tenantID]; ok && now.Before(c.exp) {
		s.mu.Unlock()
		return c.e, nil
	}
	s.mu.Unlock()
	e, err := s.Entitlements(ctx, tenantID)
	if err != nil {
		return nil, err
	}
	s.mu.Lock()
	if len(s.ents) > 100000 {
		clear(s.ents)
	}
	s.ents[tenantID] = cachedEnt{e: e, exp: now.Add(s.ttl)}
	s.mu.Unlock()
	return e, nil
}

// PlanCacheTTL is how long the catalogue is cached; edits on this process
// drop the cache at once.
const PlanCacheTTL = 10 * time.Second

// New builds the service.
func New(s *store.Store) *Service {
	return &Service{store: s, now: func() time.Time { return time.Now().UTC() }, counters: map[string]func(*gorm.DB) (int64, error){},
		ents: map[string]cachedEnt{}, calls: map[callKey]int64{}, periods: map[string]cachedPeriods{},
		ttl: PlanCacheTTL, periodTTL: periodCacheTTL}
}

// SetCacheTTL sets how long the catalogue, entitlements and current periods
// are cached; 0 reads them on every use (tests use it to prove that no path
// depends on a warm cache).
func (s *Service) SetCacheTTL(d time.Duration) {
	s.mu.Lock()
	s.ttl = d
	s.mu.Unlock()
	s.periodsMu.Lock()
	s.periodTTL = d
	s.periodsMu.Unlock()
}

// RegisterCounter says how to count a countable resource inside a tenant's
// transaction. run.go registers one per resource at start.
func (s *Service) RegisterCounter(resource string, count func(tx *gorm.DB) (int64, error)) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.counters[resource] = count
}

// Plans returns the catalogue, cheapest first.
func (s *Service) Plans(ctx context.Context) ([]Plan, error) {
	m, err := s.catalogue(ctx, nil)
	if err != nil {
		return nil, err
	}
	out := slices.Collect(maps.Values(m))
	sort.Slice(out, func(i, j int) bool {
		return out[i].SortOrder < out[j].SortOrder || out[i].SortOrder == out[j].SortOrder && out[i].Name < out[j].Name
	})
	return out, nil
}

// catalogue returns the plan catalogue, from the cache or read through tx,
// the transaction the caller is in (nil: a transaction of its own).
func (s *Service) catalogue(ctx context.Context, tx *gorm.DB) (map[string]Plan, error) {
	s.mu.Lock()
	if s.plans != nil && s.now().Sub(s.plansAt) < s.ttl {
		m := s.plans
		s.mu.Unlock()
		return m, nil
	}
	s.mu.Unlock()
	var list []Plan
	read := func(tx *gorm.DB) error { return tx.Find(&list).Error }
	var err error
	if tx != nil {
		err = read(tx)
	} else {
		err = s.store.Tx(ctx, read)
	}
	if err != nil {
		return nil, errs.Internal(err, "read the plan catalogue")
	}
	m := map[string]Plan{}
	for _, p := range list {
		m[p.Name] = p
	}
	s.mu.Lock()
	s.plans, s.plansAt = m, s.now()
	s.mu.Unlock()
	return m, nil
}

// PlanExists reports whether a plan is in the catalogue.
func (s *Service) PlanExists(ctx context.Context, name string) bool {
	m, err := s.catalogue(ctx, nil)
	if err != nil {
		return false
	}
	_, ok := m[name]
	return ok
}

// Plan returns one plan.
func (s *Service) Plan(ctx context.Context, name string) (*Plan, error) {
	return s.planTx(ctx, nil, name)
}

// planTx is Plan read through tx, the transaction the caller is in (nil:
// a transaction of its own).
func (s *Service) planTx(ctx context.Context, tx *gorm.DB, name string) (*Plan, error) {
	m, err := s.catalogue(ctx, tx)
	if err != nil {
		return nil, err
	}
	p, ok := m[name]
	if !ok {
		return nil, errs.NotFound(CodePlanNotFound, "no plan %q", name)
	}
	return &p, nil
}

var planNameRe = regexp.MustCompile(`^[a-z][a-z0-9_-]{1,31}$`)

func validateEntries(f errs.Fields, prefix string, features map[string]bool, limits map[string]int64) {
	for k := range features {
		if !planNameRe.MatchString(strings.ToLower(k)) {
			f.Add(prefix+"features", fmt.Sprintf("%q is not a feature name", k))
		}
	}
	for k, v := range limits {
		if !planNameRe.MatchString(strings.ToLower(k)) {
			f.Add(prefix+"limits", fmt.Sprintf("%q is not a limit name", k))
		}
		if v < Unlimited || v > MaxLimit {
			f.Add(prefix+"limits."+k, fmt.Sprintf("must be -1 (unlimited) or from 0 to %d", MaxLimit))
		}
	}
}

// platform is ctx in platform scope, for writes to platform tables (plans,
// tenants), which only the platform role may make; a platform scope the
// caller took (an operator's, with its reason) stays.
func platform(ctx context.Context, why string) context.Context {
	if store.ScopeFrom(ctx).Platform {
		return ctx
	}
	return store.WithPlatform(ctx, why)
}

// SavePlan creates or replaces a plan of the catalogue (operators).
func (s *Service) SavePlan(ctx context.Context, p Plan) (*Plan, error) {
	f := errs.Fields{}
	if !planNameRe.MatchString(p.Name) {
		f.Add("name", "must be 2-32 characters of a-z, 0-9, _ and -, starting with a letter")
	}
	p.DisplayName = f.Text("displayName", p.DisplayName, 1, 100)
	if !slices.Contains([]string{"shared", "dedicated_db", "dedicated_instance"}, p.Isolation) {
		f.Add("isolation", "must be shared, dedicated_db or dedicated_instance")
	}
	validateEntries(f, "", p.Features, p.Limits)
	if err := f.Err(); err != nil {
		return nil, err
	}
	if p.Features == nil {
		p.Features = map[string]bool{}
	}
	if p.Limits == nil {
		p.Limits = map[string]int64{}
	}
	p.UpdatedAt = s.now()
	err := s.store.Tx(platform(ctx, "plan catalogue"), func(tx *gorm.DB) error {
		var before *Plan
		var old Plan
		if err := tx.Where("name = ?", p.Name).Take(&old).Error; err == nil {
			before = &old
		}
		if err := tx.Save(&p).Error; err != nil {
			return err
		}
		return audit.Record(ctx, tx, audit.Entry{TenantID: store.PlatformTenantID, EventType: "plan.saved", Resource: "plan",
			ResourceID: p.Name, Action: "update", Before: before, After: p})
	})
	s.mu.Lock()
	s.plans = nil
	clear(s.ents)
	s.mu.Unlock()
	if err != nil {
		return nil, errs.Internal(err, "save the plan")
	}
	return &p, nil
}

// Entitlements computes a tenant's entitlements: its plan, then its overrides.
func (s *Service) Entitlements(ctx context.Context, tenantID string) (*Entitlements, error) {
	var t tenantRow
	err := s.store.Tx(ctx, func(tx *gorm.DB) error {
		return tx.Select("id", "plan", "entitlement_overrides").Where("id = ?", tenantID).Take(&t).Error
	})
	if err != nil {
		if store.IsNotFound(err) {
			return nil, errs.NotFound(errs.CodeTenantNotFound, "no tenant with id %q", tenantID)
		}
		return nil, errs.Internal(err, "read the tenant's plan")
	}
	return s.compute(ctx, nil, t)
}

// EntitlementsTx is Entitlements read through tx, for work inside an open
// transaction (which must never open a second one).
func (s *Service) EntitlementsTx(ctx context.Context, tx *gorm.DB, tenantID string) (*Entitlements, error) {
	var t tenantRow
	if err := tx.Select("id", "plan", "entitlement_overrides").Where("id = ?", tenantID).Take(&t).Error; err != nil {
		if store.IsNotFound(err) {
			return nil, errs.NotFound(errs.CodeTenantNotFound, "no tenant with id %q", tenantID)
		}
		return nil, errs.Internal(err, "read the tenant's plan")
	}
	return s.compute(ctx, tx, t)
}

// compute applies the tenant's overrides to its plan, reading the catalogue
// through tx when the caller is inside a transaction (nil: outside one).
func (s *Service) compute(ctx context.Context, tx *gorm.DB, t tenantRow) (*Entitlements, error) {
	p, err := s.planTx(ctx, tx, t.Plan)
	if err != nil {
		return nil, err
	}
	e := &Entitlements{TenantID: t.ID, Plan: p.Name, Isolation: p.Isolation, Features: maps.Clone(p.Features), Limits: maps.Clone(p.Limits),
		Overrides: t.EntitlementOverrides}
	if e.Features == nil {
		e.Features = map[string]bool{}
	}
	if e.Limits == nil {
		e.Limits = map[string]int64{}
	}
	maps.Copy(e.Features, t.EntitlementOverrides.Features)
	maps.Copy(e.Limits, t.EntitlementOverrides.Limits)
	if e.Overrides.Features == nil {
		e.Overrides.Features = map[string]bool{}
	}
	if e.Overrides.Limits == nil {
		e.Overrides.Limits = map[string]int64{}
	}
	return e, nil
}

// SetOverrides replaces a tenant's overrides (operators).
func (s *Service) SetOverrides(ctx context.Context, tenantID string, o Overrides) (*Entitlements, error) {
	f := errs.Fields{}
	validateEntries(f, "", o.Features, o.Limits)
	if err := f.Err(); err != nil {
		return nil, err
	}
	err := s.store.Tx(platform(ctx, "entitlement overrides"), func(tx *gorm.DB) error {
		var t tenantRow
		if err := tx.Where("id = ?", tenantID).Take(&t).Error; err != nil {
			if store.IsNotFound(err) {
				return errs.NotFound(errs.CodeTenantNotFound, "no tenant with id %q", tenantID)
			}
			return err
		}
		before := t.EntitlementOverrides
		if err := tx.Model(&tenantRow{}).Where("id = ?", tenantID).Update("entitlement_overrides", store.MustJSON(o)).Error; err != nil {
			return err
		}
		return audit.Record(ctx, tx, audit.Entry{TenantID: tenantID, EventType: "tenant.entitlements_overridden", Resource: "tenant",
			ResourceID: tenantID, Action: "update", Before: before, After: o})
	})
	s.Invalidate(tenantID)
	if err != nil {
		return nil, errs.Wrap(err, "save the overrides")
	}
	return s.Entitlements(ctx, tenantID)
}

// Usage counts the current use of every registered countable resource.
func (s *Service) Usage(ctx context.Context, tenantID string) (map[string]int64, error) {
	s.mu.Lock()
	counters := maps.Clone(s.counters)
	s.mu.Unlock()
	out := map[string]int64{}
	err := s.store.Tx(store.WithTenant(ctx, tenantID), func(tx *gorm.DB) error {
		for name, count := range counters {
			n, err := count(tx)
			if err != nil {
				return err
			}
			out[name] = n
		}
		return nil
	})
	if err != nil {
		return nil, errs.Internal(err, "count usage")
	}
	return out, nil
}

// Exceeded describes one limit a tenant is over.
type Exceeded struct {
	Resource string `json:"resource"`
	Limit    int64  `json:"limit"`
	Used     int64  `json:"used"`
}

// Reserve checks, inside tx (the creating transaction, scoped to the
// tenant), that one more of resource fits the tenant's limit. It locks the
// tenant first, so concurrent creations are counted one after another: 50
// parallel creations at a limit of 10 end with exactly 10.
func (s *Service) Reserve(ctx context.Context, tx *gorm.DB, resource string) error {
	tenantID := store.TenantFrom(ctx)
	if tenantID == "" {
		return nil // platform-level creation (tests, tools) is not metered
	}
	if err := s.store.LockTenantTx(tx, tenantID); err != nil {
		return err
	}
	var t tenantRow
	if err := tx.Select("id", "plan", "entitlement_overrides").Where("id = ?", tenantID).Take(&t).Error; err != nil {
		return err
	}
	e, err := s.compute(ctx, tx, t) // through tx: a second transaction here would wait on this one
	if err != nil {
		return err
	}
	limit, ok := e.Limits[resource]
	if !ok || limit == Unlimited {
		return nil
	}
	s.mu.Lock()
	count := s.counters[resource]
	s.mu.Unlock()
	if count == nil {
		return fmt.Errorf("quota: no counter registered for %q", resource)
	}
	used, err := count(tx)
	if err != nil {
		return err
	}
	if used >= limit {
		return &errs.Error{Kind: errs.KindForbidden, Code: CodeQuotaExceeded,
			Msg:    fmt.Sprintf("the %s plan allows %d %s and %d are in use; upgrade the plan or remove some", e.Plan, limit, resource, used),
			Fields: map[string]string{"resource": resource, "limit": fmt.Sprint(limit), "used": fmt.Sprint(used)}}
	}
	return nil
}

// CheckPlanChange refuses a change to a plan whose limits the tenant's
// current usage exceeds, naming every such limit. An upgrade always passes.
func (s *Service) CheckPlanChange(ctx context.Context, tenantID, plan string) error {
	p, err := s.Plan(ctx, plan)
	if err != nil {
		return errs.Invalid("unknown plan", map[string]string{"plan": "is not in the plan catalogue"})
	}
	var t tenantRow
	if err := s.store.Tx(ctx, func(tx *gorm.DB) error { return tx.Where("id = ?", tenantID).Take(&t).Error }); err != nil {
		return errs.NotFound(errs.CodeTenantNotFound, "no tenant with id %q", tenantID)
	}
	t.Plan = p.Name
	e, err := s.compute(ctx, nil, t)
	if err != nil {
		return err
	}
	used, err := s.Usage(ctx, tenantID)
	if err != nil {
		return err
	}
	var over []Exceeded
	fields := map[string]string{}
	for res, n := range used {
		if limit, ok := e.Limits[res]; ok && limit != Unlimited && n > limit {
			over = append(over, Exceeded{res, limit, n})
			fields[res] = fmt.Sprintf("%d in use, the %s plan allows %d", n, plan, limit)
		}
	}
	if len(over) > 0 {
		return &errs.Error{Kind: errs.KindConflict, Code: CodeDowngradeExceeded, Fields: fields,
			Msg: fmt.Sprintf("the tenant uses more than the %s plan allows; reduce usage first", plan)}
	}
	return nil
}

// FeatureError is the refusal of a feature the plan lacks, naming the
// cheapest plan that has it.
func (s *Service) FeatureError(ctx context.Context, feature string) error {
	plans, _ := s.Plans(ctx)
	for _, p := range plans {
		if p.Features[feature] {
			return &errs.Error{Kind: errs.KindForbidden, Code: CodeFeatureNotEnabled, Fields: map[string]string{"feature": feature, "plan": p.Name},
				Msg: fmt.Sprintf("%s is not part of your plan; it comes with the %s plan", feature, p.DisplayName)}
		}
	}
	return &errs.Error{Kind: errs.KindForbidden, Code: CodeFeatureNotEnabled, Fields: map[string]string{"feature": feature},
		Msg: fmt.Sprintf("%s is not available on any plan", feature)}
}

// PaidPlan reports whether a plan is a paid one (for trial expiry).
func (s *Service) PaidPlan(ctx context.Context, name string) bool {
	p, err := s.Plan(ctx, name)
	return err == nil && p.Paid
}
