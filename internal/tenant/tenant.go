// Package tenant owns tenants: slugs and their aliases, the lifecycle state
// machine, settings, branding and compliance, resolution (by domain, slug or
// id), signup provisioning, and the purge of deleted tenants.
package tenant

import (
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"net/netip"
	"regexp"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/google/uuid"
	"gorm.io/gorm"

	"github.com/tenantgate/tenantgate/internal/audit"
	"github.com/tenantgate/tenantgate/internal/errs"
	"github.com/tenantgate/tenantgate/internal/store"
)

// Deployment modes (seed 001 §4). Only shared exists today.
const (
	ModeShared            = "shared"
	ModeDedicatedDB       = "dedicated_db"
	ModeDedicatedInstance = "dedicated_instance"
)

// Plans known to signup; the quota issue turns these into a catalogue.
var Plans = []string{"free", "starter", "pro", "business", "enterprise"}

// Settings are a tenant's preferences.
type Settings struct {
	Timezone string `json:"timezone"`
	Locale   string `json:"locale"`
	Currency string `json:"currency"`
}

// Branding is a tenant's look.
type Branding struct {
	LogoURL      string `json:"logoUrl"`
	PrimaryColor string `json:"primaryColor"`
	CustomCSS    string `json:"customCss"`
}

// Compliance holds data-protection settings.
type Compliance struct {
	DataRetentionDays int      `json:"dataRetentionDays"`
	GDPRContact       string   `json:"gdprContact"`
	IPAllowlist       []string `json:"ipAllowlist"` // when set, the tenant's users and keys are refused from other addresses
	Require2FA        bool     `json:"require2fa"`  // users must sign in with a second factor
}

// AllowsIP reports whether the tenant's IP allowlist admits ip (an empty list admits all).
func (c Compliance) AllowsIP(ip string) bool {
	if len(c.IPAllowlist) == 0 {
		return true
	}
	a, err := netip.ParseAddr(ip)
	if err != nil {
		return false
	}
	for _, s := range c.IPAllowlist {
		if p, err := netip.ParsePrefix(s); err == nil && p.Contains(a.Unmap()) {
			return true
		}
	}
	return false
}

// Tenant is one customer organisation.
type Tenant struct {
	ID                 string     `gorm:"primaryKey" json:"id"`
	Slug               string     `json:"slug"`
	Name               string     `json:"name"`
	Status             string     `json:"status"`
	StatusBeforeDelete *string    `json:"-"`
	Plan               string     `json:"plan"`
	DeploymentMode     string     `json:"deploymentMode"`
	Settings           Settings   `gorm:"serializer:json" json:"settings"`
	Branding           Branding   `gorm:"serializer:json" json:"branding"`
	Compliance         Compliance `gorm:"serializer:json" json:"compliance"`
	ExternalOrgID      *string    `json:"externalOrgId,omitempty"`
	TrialEndsAt        *time.Time `json:"trialEndsAt,omitempty"`
	CreatedAt          time.Time  `json:"createdAt"`
	UpdatedAt          time.Time  `json:"updatedAt"`
	DeletedAt          *time.Time `json:"deletedAt,omitempty"`
	PurgeAt            *time.Time `json:"purgeAt,omitempty"`
	PurgedAt           *time.Time `json:"purgedAt,omitempty"`
}

// TableName maps Tenant to tenants.
func (Tenant) TableName() string { return "tenants" }

type slugRow struct {
	Slug      string `gorm:"primaryKey"`
	TenantID  string
	Kind      string // primary | alias
	ExpiresAt *time.Time
	CreatedAt time.Time
}

func (slugRow) TableName() string { return "tenant_slugs" }

type domainRow struct {
	Domain            string `gorm:"primaryKey"`
	TenantID          string
	VerificationToken string
	VerifiedAt        *time.Time
	CreatedAt         time.Time
}

func (domainRow) TableName() string { return "tenant_domains" }

// Config tunes the service.
type Config struct {
	TrialDays  int           // length of a new tenant's trial
	PurgeDelay time.Duration // how long a deleted tenant can be restored
	AliasTTL   time.Duration // how long an old slug keeps answering after a rename
	CacheTTL   time.Duration // how long a resolved tenant is cached
	// PlanExists checks a plan name against the catalogue (default: Plans).
	PlanExists func(ctx context.Context, name string) bool
}

// DefaultConfig is 14-day trials, 30 days to restore, 30-day aliases, 5 s cache.
var DefaultConfig = Config{TrialDays: 14, PurgeDelay: 30 * 24 * time.Hour, AliasTTL: 30 * 24 * time.Hour, CacheTTL: 5 * time.Second}

// Service is the tenant service.
type Service struct {
	store *store.Store
	cfg   Config
	log   *slog.Logger
	now   func() time.Time

	mu    sync.Mutex
	cache map[string]cached // "id:…", "slug:…", "domain:…" → tenant
}

type cached struct {
	t   *Tenant
	exp time.Time
}

// New builds the service.
func New(s *store.Store, cfg Config, log *slog.Logger) *Service {
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	if cfg.PlanExists == nil {
		cfg.PlanExists = func(_ context.Context, name string) bool { return slices.Contains(Plans, name) }
	}
	return &Service{store: s, cfg: cfg, log: log, now: func() time.Time { return time.Now().UTC() }, cache: map[string]cached{}}
}

func notFound(what string) error {
	return errs.NotFound(errs.CodeTenantNotFound, "no tenant %s", what)
}

func (s *Service) cacheGet(key string) (*Tenant, bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	c, ok := s.cache[key]
	if !ok || s.now().After(c.exp) {
		return nil, false
	}
	if c.t == nil { // a remembered miss
		return nil, true
	}
	cp := *c.t
	return &cp, true
}

// cacheMiss remembers that a key names no tenant, so a host that is not a
// tenant domain (the API's own name behind a proxy) costs no query per request.
func (s *Service) cacheMiss(key string) {
	if s.cfg.CacheTTL <= 0 {
		return
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if len(s.cache) > 10000 {
		clear(s.cache)
	}
	s.cache[key] = cached{exp: s.now().Add(s.cfg.CacheTTL)}
}

func (s *Service) cachePut(t *Tenant, keys ...string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if len(s.cache) > 10000 {
		clear(s.cache)
	}
	if s.cfg.CacheTTL <= 0 {
		return
	}
	cp := *t
	for _, k := range keys {
		s.cache[k] = cached{t: &cp, exp: s.now().Add(s.cfg.CacheTTL)}
	}
}

// Forget drops a tenant's cached entries (after another package changed it).
func (s *Service) Forget(id string) { s.forget(id) }

// forget drops every cached entry of a tenant after it changed.
func (s *Service) forget(id string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	for k, c := range s.cache {
		if c.t != nil && c.t.ID == id {
			delete(s.cache, k)
		}
	}
}

func platform(ctx context.Context, why string) context.Context { return store.WithPlatform(ctx, why) }

// writeScope is the scope of a change to tenant id's row: the server's own
// role may not write platform tables, so a tenant's change to its own row
// (its admins' settings, branding, compliance) runs on the platform role,
// still confined to the tenant; a platform scope stays as it is. A tenant
// scope never changes another tenant's row.
func writeScope(ctx context.Context, id, why string) (context.Context, error) {
	sc := store.ScopeFrom(ctx)
	switch {
	case sc.Platform:
		return ctx, nil
	case sc.TenantID != "" && sc.TenantID != id:
		return nil, notFound(fmt.Sprintf("with id %q", id))
	}
	return store.WithTenantOnPlatform(ctx, id, why), nil
}

// Get reads a tenant by id (any status).
func (s *Service) Get(ctx context.Context, id string) (*Tenant, error) {
	if !store.ValidID(id) {
		return nil, notFound(fmt.Sprintf("with id %q", id))
	}
	if t, ok := s.cacheGet("id:" + id); ok {
		return t, nil
	}
	var t Tenant
	err := s.store.Tx(ctx, func(tx *gorm.DB) error { return tx.Where("id = ?", id).Take(&t).Error })
	if store.IsNotFound(err) || (err == nil && t.Status == StatusPurged) {
		return nil, notFound(fmt.Sprintf("with id %q", id))
	}
	if err != nil {
		return nil, errs.Internal(err, "read the tenant")
	}
	s.cachePut(&t, "id:"+id)
	return &t, nil
}

// BySlug resolves a current slug or a live alias.
func (s *Service) BySlug(ctx context.Context, slug string) (*Tenant, error) {
	slug = strings.ToLower(slug)
	if CheckSlug(slug) != "" && !IsReserved(slug) {
		return nil, notFound(fmt.Sprintf("with slug %q", slug))
	}
	if t, ok := s.cacheGet("slug:" + slug); ok {
		return t, nil
	}
	var row slugRow
	err := s.store.Tx(ctx, func(tx *gorm.DB) error {
		return tx.Where("slug = ? AND (expires_at IS NULL OR expires_at > ?)", slug, s.now()).Take(&row).Error
	})
	if store.IsNotFound(err) {
		return nil, notFound(fmt.Sprintf("with slug %q", slug))
	}
	if err != nil {
		return nil, errs.Internal(err, "resolve the tenant")
	}
	t, err := s.Get(ctx, row.TenantID)
	if err != nil {
		return nil, err
	}
	s.cachePut(t, "slug:"+slug)
	return t, nil
}

// ByDomain resolves a verified custom domain.
func (s *Service) ByDomain(ctx context.Context, host string) (*Tenant, error) {
	host = strings.ToLower(host)
	if t, ok := s.cacheGet("domain:" + host); ok {
		if t == nil {
			return nil, notFound(fmt.Sprintf("for domain %q", host))
		}
		return t, nil
	}
	var row domainRow
	err := s.store.Tx(ctx, func(tx *gorm.DB) error {
		return tx.Where("domain = ? AND verified_at IS NOT NULL", host).Take(&row).Error
	})
	if store.IsNotFound(err) {
		s.cacheMiss("domain:" + host)
		return nil, notFound(fmt.Sprintf("for domain %q", host))
	}
	if err != nil {
		return nil, errs.Internal(err, "resolve the tenant")
	}
	t, err := s.Get(ctx, row.TenantID)
	if err != nil {
		return nil, err
	}
	s.cachePut(t, "domain:"+host)
	return t, nil
}

// ByExternalOrg finds the tenant linked to an organisation of the platform
// identity provider (Zitadel's urn:zitadel:iam:org:id).
func (s *Service) ByExternalOrg(ctx context.Context, org string) (*Tenant, error) {
	if org == "" || len(org) > 200 {
		return nil, notFound("for that organisation")
	}
	var t Tenant
	err := s.store.Tx(ctx, func(tx *gorm.DB) error {
		return tx.Where("external_org_id = ? AND status <> ?", org, StatusPurged).Take(&t).Error
	})
	if store.IsNotFound(err) {
		return nil, notFound("for that organisation")
	}
	if err != nil {
		return nil, errs.Internal(err, "resolve the tenant")
	}
	return &t, nil
}

// ByRef resolves an id or a slug.
func (s *Service) ByRef(ctx context.Context, ref string) (*Tenant, error) {
	if store.ValidID(ref) {
		return s.Get(ctx, ref)
	}
	return s.BySlug(ctx, ref)
}

// AddVerifiedDomainTx binds a custom domain that was already verified. The
// domain API with DNS verification builds on it.
func (s *Service) AddVerifiedDomainTx(tx *gorm.DB, tenantID, domain string) error {
	now := s.now()
	return tx.Create(&domainRow{Domain: strings.ToLower(domain), TenantID: tenantID, VerificationToken: uuid.NewString(), VerifiedAt: &now, CreatedAt: now}).Error
}

// Signup is what creating a tenant takes.
type Signup struct {
	Slug string
	Name string
	Plan string
}

// check is the one rule for a new tenant's slug and name (the plan needs the
// catalogue): it records every problem and normalises both.
func (in *Signup) check(f errs.Fields) {
	in.Slug = strings.ToLower(strings.TrimSpace(in.Slug))
	if p := CheckSlug(in.Slug); p != "" {
		f.Add("slug", p)
	}
	in.Name = f.Text("name", in.Name, 1, 100)
}

// checkSignup is check and the plan, which defaults to free.
func (s *Service) checkSignup(ctx context.Context, in *Signup) errs.Fields {
	f := errs.Fields{}
	in.check(f)
	if in.Plan == "" {
		in.Plan = "free"
	}
	if !s.cfg.PlanExists(ctx, in.Plan) {
		f.Add("plan", "is not in the plan catalogue (GET /api/v1/plans)")
	}
	return f
}

// CheckSignup reports every problem of a new tenant's values, plan included,
// by the rule Create applies.
func (s *Service) CheckSignup(ctx context.Context, in Signup) errs.Fields {
	return s.checkSignup(ctx, &in)
}

// Validate reports every problem of a new tenant's slug and name.
func (in Signup) Validate() errs.Fields {
	f := errs.Fields{}
	in.check(f)
	return f
}

// Provision runs inside signup's transaction once the tenant row exists, to
// create what the tenant needs (its owner). The tx is scoped to the tenant.
type Provision func(ctx context.Context, tx *gorm.DB, t *Tenant) error

// Create provisions a tenant: provisioning → (provision) → trial, in one
// transaction, so a failure leaves nothing behind.
func (s *Service) Create(ctx context.Context, in Signup, provision Provision) (*Tenant, error) {
	f := s.checkSignup(ctx, &in)
	if err := f.Err(); err != nil {
		return nil, err
	}
	now := s.now()
	trialEnds := now.AddDate(0, 0, s.cfg.TrialDays)
	t := &Tenant{ID: uuid.Must(uuid.NewV7()).String(), Slug: in.Slug, Name: in.Name, Status: StatusProvisioning, Plan: in.Plan,
		DeploymentMode: ModeShared, Settings: Settings{Timezone: "UTC", Locale: "en", Currency: "USD"},
		Compliance: Compliance{IPAllowlist: []string{}}, TrialEndsAt: &trialEnds, CreatedAt: now, UpdatedAt: now}
	// The tenant's row and slug are platform tables: the platform role writes
	// them; the owner and everything else provisioned is confined to the tenant.
	ctx = store.WithTenantOnPlatform(ctx, t.ID, "sign-up")
	err := s.store.Tx(ctx, func(tx *gorm.DB) error {
		if err := tx.Create(t).Error; err != nil {
			return err
		}
		if err := s.claimSlugTx(tx, t.ID, t.Slug); err != nil {
			return err
		}
		if provision != nil {
			if err := provision(ctx, tx, t); err != nil {
				return err
			}
		}
		t.Status = StatusTrial
		if err := tx.Model(t).Update("status", t.Status).Error; err != nil {
			return err
		}
		return audit.Record(ctx, tx, audit.Entry{EventType: "tenant.created", Resource: "tenant", ResourceID: t.ID, Action: "create", After: t})
	})
	if err != nil {
		return nil, errs.Wrap(err, "create the tenant")
	}
	return t, nil
}

// claimSlugTx takes a slug for a tenant, freeing it from an expired alias first.
func (s *Service) claimSlugTx(tx *gorm.DB, tenantID, slug string) error {
	taken := &errs.Error{Kind: errs.KindConflict, Code: errs.CodeTenantAlreadyExists, Msg: "this slug is taken",
		Fields: map[string]string{"slug": "is already taken; choose another"}}
	var row slugRow
	err := tx.Where("slug = ?", slug).Take(&row).Error
	switch {
	case err == nil && row.ExpiresAt != nil && !s.now().Before(*row.ExpiresAt):
		if err := tx.Delete(&row).Error; err != nil {
			return err
		}
	case err == nil:
		if row.TenantID == tenantID {
			// Renaming back to one of its own aliases: make it primary again.
			return tx.Model(&row).Updates(map[string]any{"kind": "primary", "expires_at": nil}).Error
		}
		return taken
	case !store.IsNotFound(err):
		return err
	}
	if err := tx.Create(&slugRow{Slug: slug, TenantID: tenantID, Kind: "primary", CreatedAt: s.now()}).Error; err != nil {
		if store.IsUniqueViolation(err) {
			return taken
		}
		return err
	}
	return nil
}

// Patch is a partial update of a tenant; nil fields stay.
type Patch struct {
	Name          *string          `json:"name"`
	ExternalOrgID *string          `json:"externalOrgId"` // operators: the tenant's organisation at the platform identity provider
	Slug          *string          `json:"slug"`
	Plan          *string          `json:"plan"`
	Settings      *SettingsPatch   `json:"settings"`
	Branding      *BrandingPatch   `json:"branding"`
	Compliance    *CompliancePatch `json:"compliance"`
}

// SettingsPatch updates settings.
type SettingsPatch struct {
	Timezone *string `json:"timezone"`
	Locale   *string `json:"locale"`
	Currency *string `json:"currency"`
}

// BrandingPatch updates branding.
type BrandingPatch struct {
	LogoURL      *string `json:"logoUrl"`
	PrimaryColor *string `json:"primaryColor"`
	CustomCSS    *string `json:"customCss"`
}

// CompliancePatch updates compliance settings.
type CompliancePatch struct {
	DataRetentionDays *int      `json:"dataRetentionDays"`
	GDPRContact       *string   `json:"gdprContact"`
	IPAllowlist       *[]string `json:"ipAllowlist"`
	Require2FA        *bool     `json:"require2fa"`
}

// The range of compliance.dataRetentionDays (0 keeps everything): a
// tenant's own admins may set MinRetentionDays to MaxRetentionDays, an
// operator as few as 1.
const (
	MinRetentionDays = 30
	MaxRetentionDays = 3650
)

var (
	localeRe   = regexp.MustCompile(`^[a-z]{2,3}(-[A-Za-z0-9]{2,8})*$`)
	currencyRe = regexp.MustCompile(`^[A-Z]{3}$`)
	colorRe    = regexp.MustCompile(`^#(?:[0-9a-fA-F]{3}|[0-9a-fA-F]{6})$`)
)

// apply changes t as p says, adding each bad value to f. planKnown tells
// whether p.Plan is in the catalogue (checked before the caller's
// transaction began: the catalogue is never read inside it).
func (p *Patch) apply(t *Tenant, f errs.Fields, operator, planKnown bool) {
	if p.Name != nil {
		t.Name = f.Text("name", *p.Name, 1, 100)
	}
	if p.Slug != nil || p.Plan != nil {
		if !operator {
			f.Add("slug", "slug and plan are changed by an operator")
		}
	}
	if p.ExternalOrgID != nil {
		if !operator {
			f.Add("externalOrgId", "is set by an operator")
		}
		if len(*p.ExternalOrgID) > 200 {
			f.Add("externalOrgId", "must be at most 200 characters")
		}
		t.ExternalOrgID = emptyNil(*p.ExternalOrgID)
	}
	if p.Plan != nil {
		if !planKnown {
			f.Add("plan", "is not in the plan catalogue")
		}
		t.Plan = *p.Plan
	}
	if sp := p.Settings; sp != nil {
		if sp.Timezone != nil {
			if _, err := time.LoadLocation(*sp.Timezone); err != nil || *sp.Timezone == "" || *sp.Timezone == "Local" {
				f.Add("settings.timezone", "must be an IANA time zone such as Europe/Berlin")
			}
			t.Settings.Timezone = *sp.Timezone
		}
		if sp.Locale != nil {
			if !localeRe.MatchString(*sp.Locale) {
				f.Add("settings.locale", "must be a BCP 47 language tag such as en or pt-BR")
			}
			t.Settings.Locale = *sp.Locale
		}
		if sp.Currency != nil {
			if !currencyRe.MatchString(*sp.Currency) {
				f.Add("settings.currency", "must be an ISO 4217 code such as USD")
			}
			t.Settings.Currency = *sp.Currency
		}
	}
	if bp := p.Branding; bp != nil {
		if bp.LogoURL != nil {
			if *bp.LogoURL != "" && (!strings.HasPrefix(*bp.LogoURL, "https://") || len(*bp.LogoURL) > 2048) {
				f.Add("branding.logoUrl", "must be an https URL of at most 2048 characters, or empty")
			}
			t.Branding.LogoURL = *bp.LogoURL
		}
		if bp.PrimaryColor != nil {
			if *bp.PrimaryColor != "" && !colorRe.MatchString(*bp.PrimaryColor) {
				f.Add("branding.primaryColor", "must be a hex colour such as #1a73e8, or empty")
			}
			t.Branding.PrimaryColor = *bp.PrimaryColor
		}
		if bp.CustomCSS != nil {
			if len(*bp.CustomCSS) > 20000 {
				f.Add("branding.customCss", "must be at most 20000 characters")
			} else if strings.Contains(strings.ToLower(*bp.CustomCSS), "</style") {
				f.Add("branding.customCss", "must not close the style element")
			}
			t.Branding.CustomCSS = *bp.CustomCSS
		}
	}
	if cp := p.Compliance; cp != nil {
		if cp.DataRetentionDays != nil {
			// A tenant's admin may not erase its audit trail within days;
			// only an operator may go below the floor.
			lowest := MinRetentionDays
			if operator {
				lowest = 1
			}
			if d := *cp.DataRetentionDays; d != 0 && (d < lowest || d > MaxRetentionDays) {
				f.Add("compliance.dataRetentionDays", fmt.Sprintf("must be 0 (keep everything) or from %d to %d days (an operator may set as few as 1)", lowest, MaxRetentionDays))
			}
			t.Compliance.DataRetentionDays = *cp.DataRetentionDays
		}
		if cp.GDPRContact != nil {
			c := f.Text("compliance.gdprContact", *cp.GDPRContact, 0, 254)
			if c != "" && !strings.Contains(c, "@") {
				f.Add("compliance.gdprContact", "must be an email address, or empty")
			}
			t.Compliance.GDPRContact = c
		}
		if cp.IPAllowlist != nil {
			list := make([]string, 0, len(*cp.IPAllowlist))
			for _, c := range *cp.IPAllowlist {
				pfx, err := parseCIDR(c)
				if err != nil {
					f.Add("compliance.ipAllowlist", fmt.Sprintf("%q is not an IP address or CIDR range", c))
					continue
				}
				list = append(list, pfx.String())
			}
			if len(list) > 100 {
				f.Add("compliance.ipAllowlist", "must have at most 100 entries")
			}
			t.Compliance.IPAllowlist = list
		}
		if cp.Require2FA != nil {
			t.Compliance.Require2FA = *cp.Require2FA
		}
	}
}

func parseCIDR(s string) (netip.Prefix, error) {
	s = strings.TrimSpace(s)
	if strings.Contains(s, "/") {
		p, err := netip.ParsePrefix(s)
		return p.Masked(), err
	}
	a, err := netip.ParseAddr(s)
	if err != nil {
		return netip.Prefix{}, err
	}
	return netip.PrefixFrom(a, a.BitLen()), nil
}

// Update applies a patch. Operators may change slug and plan; a tenant's own
// admins may change name, settings, branding and compliance.
func (s *Service) Update(ctx context.Context, id string, p Patch, operator bool) (*Tenant, error) {
	// The catalogue is read before the transaction, never inside it.
	planKnown := p.Plan == nil || s.cfg.PlanExists(ctx, *p.Plan)
	ctx, err := writeScope(ctx, id, "tenant update")
	if err != nil {
		return nil, err
	}
	var out *Tenant
	err = s.store.Tx(ctx, func(tx *gorm.DB) error {
		t, err := s.lockTx(tx, id)
		if err != nil {
			return err
		}
		if t.Status == StatusDeleted {
			return errs.Conflict(errs.CodeInvalidStateTransition, "this tenant is deleted; restore it before changing it")
		}
		before := *t
		f := errs.Fields{}
		p.apply(t, f, operator, planKnown)
		newSlug := ""
		if p.Slug != nil && operator {
			newSlug = strings.ToLower(strings.TrimSpace(*p.Slug))
			if prob := CheckSlug(newSlug); prob != "" {
				f.Add("slug", prob)
			}
		}
		if err := f.Err(); err != nil {
			return err
		}
		if newSlug != "" && newSlug != t.Slug {
			if err := s.claimSlugTx(tx, t.ID, newSlug); err != nil {
				return err
			}
			exp := s.now().Add(s.cfg.AliasTTL)
			if err := tx.Model(&slugRow{}).Where("slug = ?", t.Slug).Updates(map[string]any{"kind": "alias", "expires_at": exp}).Error; err != nil {
				return err
			}
			t.Slug = newSlug
		}
		t.UpdatedAt = s.now()
		if err := tx.Select("name", "slug", "plan", "settings", "branding", "compliance", "external_org_id", "updated_at").Updates(t).Error; err != nil {
			if store.IsUniqueViolation(err) {
				return errs.Conflict(errs.CodeTenantAlreadyExists, "another tenant is linked to this organisation")
			}
			return err
		}
		out = t
		return audit.Record(store.WithTenant(ctx, t.ID), tx, audit.Entry{TenantID: t.ID, EventType: "tenant.updated",
			Resource: "tenant", ResourceID: t.ID, Action: "update", Before: &before, After: t})
	})
	s.forget(id)
	if err != nil {
		return nil, errs.Wrap(err, "update the tenant")
	}
	return out, nil
}

func (s *Service) lockTx(tx *gorm.DB, id string) (*Tenant, error) {
	if !store.ValidID(id) {
		return nil, notFound(fmt.Sprintf("with id %q", id))
	}
	// The advisory lock serialises this change with the tenant's quota
	// reservations, which cannot lock the row (the server's role may not).
	if err := s.store.LockTenantTx(tx, id); err != nil {
		return nil, err
	}
	var t Tenant
	q := tx.Where("id = ?", id)
	if s.store.Dialect() == store.Postgres {
		q = q.Clauses(forUpdate)
	}
	if err := q.Take(&t).Error; err != nil {
		if store.IsNotFound(err) {
			return nil, notFound(fmt.Sprintf("with id %q", id))
		}
		return nil, err
	}
	if t.Status == StatusPurged {
		return nil, notFound(fmt.Sprintf("with id %q", id))
	}
	return &t, nil
}

// Lifecycle actions.
const (
	ActionSuspend  = "suspend"
	ActionActivate = "activate"
	ActionDelete   = "delete"
	ActionRestore  = "restore"
)

// Transition performs a lifecycle action. An action the current status does
// not allow answers 409 INVALID_STATE_TRANSITION.
func (s *Service) Transition(ctx context.Context, id, action, reason string) (*Tenant, error) {
	ctx, err := writeScope(ctx, id, "tenant lifecycle")
	if err != nil {
		return nil, err
	}
	var out *Tenant
	err = s.store.Tx(ctx, func(tx *gorm.DB) error {
		t, err := s.lockTx(tx, id)
		if err != nil {
			return err
		}
		before := *t
		now := s.now()
		to := map[string]string{ActionSuspend: StatusSuspended, ActionActivate: StatusActive, ActionDelete: StatusDeleted}[action]
		if action == ActionRestore {
			if t.Status != StatusDeleted {
				return errs.Conflict(errs.CodeInvalidStateTransition, "only a deleted tenant can be restored; this one is %s", t.Status)
			}
			to = StatusActive
			if t.StatusBeforeDelete != nil {
				to = *t.StatusBeforeDelete
			}
		} else if to == "" {
			return errs.Invalid("unknown lifecycle action", map[string]string{"action": "must be suspend, activate, delete or restore"})
		} else if t.Status == StatusDeleted {
			return errs.Conflict(errs.CodeInvalidStateTransition, "this tenant is deleted; restore it first")
		}
		if !CanTransition(t.Status, to) {
			return errs.Conflict(errs.CodeInvalidStateTransition, "a %s tenant cannot be moved to %s", t.Status, to)
		}
		updates := map[string]any{"status": to, "updated_at": now}
		switch to {
		case StatusDeleted:
			purge := now.Add(s.cfg.PurgeDelay)
			updates["status_before_delete"], updates["deleted_at"], updates["purge_at"] = t.Status, now, purge
			t.DeletedAt, t.PurgeAt = &now, &purge
		default:
			if action == ActionRestore {
				updates["status_before_delete"], updates["deleted_at"], updates["purge_at"] = nil, nil, nil
				t.DeletedAt, t.PurgeAt = nil, nil
			}
		}
		if err := tx.Model(&Tenant{}).Where("id = ?", t.ID).Updates(updates).Error; err != nil {
			return err
		}
		t.Status, t.UpdatedAt = to, now
		out = t
		meta := map[string]any{"from": before.Status, "to": to}
		if reason != "" {
			meta["reason"] = reason
		}
		return audit.Record(store.WithTenant(ctx, t.ID), tx, audit.Entry{TenantID: t.ID, EventType: "tenant." + action,
			Resource: "tenant", ResourceID: t.ID, Action: action, Before: &before, After: t, Metadata: meta})
	})
	s.forget(id)
	if err != nil {
		return nil, errs.Wrap(err, "change the tenant's status")
	}
	return out, nil
}

// Filter narrows a tenant listing.
type Filter struct {
	Status string
	Plan   string
	Query  string // matches slug or name
}

// List lists tenants for operators, newest first; purged tenants only on request.
func (s *Service) List(ctx context.Context, f Filter, p store.Page) ([]Tenant, *string, error) {
	bad := errs.Fields{}
	if f.Status != "" && !slices.Contains(Statuses(), f.Status) {
		bad.Add("status", "must be one of "+strings.Join(Statuses(), ", "))
	}
	if f.Plan != "" && !s.cfg.PlanExists(ctx, f.Plan) {
		bad.Add("plan", "is not in the plan catalogue")
	}
	if len(f.Query) > 100 {
		bad.Add("q", "must be at most 100 characters")
	}
	if err := bad.Err(); err != nil {
		return nil, nil, err
	}
	var out []Tenant
	err := s.store.Tx(ctx, func(tx *gorm.DB) error {
		q := tx.Model(&Tenant{})
		if f.Status != "" {
			q = q.Where("status = ?", f.Status)
		} else {
			q = q.Where("status <> ?", StatusPurged)
		}
		if f.Plan != "" {
			q = q.Where("plan = ?", f.Plan)
		}
		if f.Query != "" {
			like := "%" + strings.NewReplacer(`\`, `\\`, `%`, `\%`, `_`, `\_`).Replace(strings.ToLower(f.Query)) + "%"
			q = q.Where("(LOWER(slug) LIKE ? ESCAPE '\\' OR LOWER(name) LIKE ? ESCAPE '\\')", like, like)
		}
		return p.Apply(q, "id").Find(&out).Error
	})
	if err != nil {
		return nil, nil, errs.Internal(err, "list tenants")
	}
	items, next := store.Trim(out, p, func(t Tenant) string { return t.ID })
	return items, next, nil
}

// PurgeDue purges every deleted tenant whose purge time has passed: all of its
// rows go, and the tenant row stays as a "purged" tombstone without data.
// It returns the ids purged.
func (s *Service) PurgeDue(ctx context.Context) ([]string, error) {
	var due []Tenant
	pctx := platform(ctx, "purge job")
	if err := s.store.Tx(pctx, func(tx *gorm.DB) error {
		return tx.Where("status = ? AND purge_at <= ?", StatusDeleted, s.now()).Limit(100).Find(&due).Error
	}); err != nil {
		return nil, err
	}
	var done []string
	for _, t := range due {
		removed, err := s.store.PurgeTenant(ctx, t.ID)
		if err != nil {
			return done, fmt.Errorf("purge tenant %s: %w", t.ID, err)
		}
		now := s.now()
		err = s.store.Tx(pctx, func(tx *gorm.DB) error {
			res := tx.Model(&Tenant{}).Where("id = ? AND status = ?", t.ID, StatusDeleted).Updates(map[string]any{
				"status": StatusPurged, "purged_at": now, "updated_at": now, "settings": "{}", "branding": "{}",
				"compliance": "{}", "name": "purged tenant", "external_org_id": nil})
			if res.Error != nil {
				return res.Error
			}
			raw, _ := json.Marshal(removed)
			s.log.Info("purged a deleted tenant", "tenant", t.ID, "slug", t.Slug, "rowsRemoved", string(raw))
			return nil
		})
		if err != nil {
			return done, err
		}
		s.forget(t.ID)
		done = append(done, t.ID)
	}
	return done, nil
}

// ExpireTrials ends the trials whose time has passed: a tenant on a paid
// plan that has not paid is suspended; one on a free plan becomes active.
// It returns how many tenants it moved.
func (s *Service) ExpireTrials(ctx context.Context, paidPlan func(ctx context.Context, plan string) bool) (int, error) {
	var due []Tenant
	pctx := platform(ctx, "trial expiry job")
	if err := s.store.Tx(pctx, func(tx *gorm.DB) error {
		return tx.Where("status = ? AND trial_ends_at <= ?", StatusTrial, s.now()).Limit(500).Find(&due).Error
	}); err != nil {
		return 0, err
	}
	n := 0
	for _, t := range due {
		action, reason := ActionActivate, "trial ended on a free plan"
		if paidPlan(ctx, t.Plan) {
			action, reason = ActionSuspend, "trial ended without payment"
		}
		if _, err := s.Transition(pctx, t.ID, action, reason); err != nil {
			if errs.Is(err, errs.CodeInvalidStateTransition) {
				continue // changed meanwhile
			}
			return n, err
		}
		n++
	}
	return n, nil
}

// ApplyRetention deletes, for every tenant with a data-retention setting,
// its activity records (audit and usage events, notifications) older than
// that many days. It returns the rows removed.
func (s *Service) ApplyRetention(ctx context.Context) (int64, error) {
	var live []Tenant
	if err := s.store.Tx(platform(ctx, "retention job"), func(tx *gorm.DB) error {
		return tx.Select("id", "compliance").Where("status IN ?", []string{StatusTrial, StatusActive, StatusSuspended}).Find(&live).Error
	}); err != nil {
		return 0, err
	}
	var total int64
	for _, t := range live {
		days := t.Compliance.DataRetentionDays
		if days <= 0 {
			continue
		}
		removed, err := s.store.PruneTenant(ctx, t.ID, s.now().AddDate(0, 0, -days))
		if err != nil {
			return total, err
		}
		for _, n := range removed {
			total += n
		}
	}
	return total, nil
}

// Maintenance is the periodic work: purging deleted tenants, ending trials
// and applying data retention, plus the jobs other packages hand in.
type Maintenance struct {
	PaidPlan func(ctx context.Context, plan string) bool
	Jobs     []Job
}

// Job is one more periodic task: Run returns how many rows it changed.
type Job struct {
	Name string // for the log: "usage counter pruning"
	Run  func(ctx context.Context) (int64, error)
}

// RunPurger runs the periodic jobs every interval until ctx ends.
func (s *Service) RunPurger(ctx context.Context, every time.Duration, m Maintenance) {
	t := time.NewTicker(every)
	defer t.Stop()
	for {
		if ids, err := s.PurgeDue(ctx); err != nil {
			s.log.Error("the purge job failed; it will try again", "err", err)
		} else if len(ids) > 0 {
			s.log.Info("purge job finished", "tenants", len(ids))
		}
		if n, err := s.ApplyRetention(ctx); err != nil {
			s.log.Error("the retention job failed; it will try again", "err", err)
		} else if n > 0 {
			s.log.Info("retention removed old activity records", "rows", n)
		}
		if m.PaidPlan != nil {
			if n, err := s.ExpireTrials(ctx, m.PaidPlan); err != nil {
				s.log.Error("the trial expiry job failed; it will try again", "err", err)
			} else if n > 0 {
				s.log.Info("trials ended", "tenants", n)
			}
		}
		for _, j := range m.Jobs {
			if n, err := j.Run(ctx); err != nil {
				s.log.Error("a maintenance job failed; it will try again", "job", j.Name, "err", err)
			} else if n > 0 {
				s.log.Info("maintenance job finished", "job", j.Name, "rows", n)
			}
		}
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
	}
}

func emptyNil(s string) *string {
	s = strings.TrimSpace(s)
	if s == "" {
		return nil
	}
	return &s
}
