package gateway

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"net/url"
	"regexp"
	"slices"
	"strings"
	"time"

	"github.com/google/uuid"
	"gorm.io/gorm"

	"github.com/tenantgate/tenantgate/internal/audit"
	"github.com/tenantgate/tenantgate/internal/billing"
	"github.com/tenantgate/tenantgate/internal/errs"
	"github.com/tenantgate/tenantgate/internal/store"
)

// Providers a channel can speak.
const (
	ProviderOpenAI     = "openai"
	ProviderAzure      = "azure"
	ProviderAnthropic  = "anthropic"
	ProviderGemini     = "gemini"
	ProviderCompatible = "openai_compatible"
)

// Channel statuses.
const (
	StatusEnabled      = "enabled"
	StatusDisabled     = "disabled"      // by a person
	StatusAutoDisabled = "auto_disabled" // by the health check; the probe re-enables it
)

// Error codes of the gateway's management API.
const (
	CodeChannelNotFound = "CHANNEL_NOT_FOUND"
	CodeChannelExists   = "CHANNEL_ALREADY_EXISTS"
)

// Channel is one upstream: a provider endpoint, its keys, the models it
// serves. Platform channels (operators) serve every tenant whose plan they
// allow; a tenant's own channels (BYOK) serve only that tenant. Keys and
// header values are sealed with the master key and never returned.
type Channel struct {
	TenantID       string            `gorm:"primaryKey" json:"-"`
	ID             string            `gorm:"primaryKey" json:"id"`
	Name           string            `json:"name"`
	Provider       string            `json:"provider"`
	BaseURL        string            `json:"baseUrl"`
	KeysSealed     string            `json:"-"`
	KeyCount       int               `json:"keyCount"`
	HeadersSealed  string            `json:"-"`
	Models         []string          `gorm:"serializer:json" json:"models"`
	ModelMapping   map[string]string `gorm:"serializer:json" json:"modelMapping"`
	Plans          []string          `gorm:"serializer:json" json:"plans"` // platform channels: the plans that may use it (empty: all)
	Priority       int               `json:"priority"`
	Weight         int               `json:"weight"`
	MaxConcurrency int               `json:"maxConcurrency"` // 0: unlimited
	TimeoutMs      int               `gorm:"column:timeout_ms" json:"timeoutMs"`
	IdleTimeoutMs  int               `gorm:"column:idle_timeout_ms" json:"idleTimeoutMs"` // 0: DefaultIdleTimeout
	MaxDurationMs  int               `gorm:"column:max_duration_ms" json:"maxDurationMs"` // 0: DefaultMaxDuration
	ProxyURL       string            `gorm:"column:proxy_url" json:"proxyUrl"`
	APIVersion     string            `gorm:"column:api_version" json:"apiVersion"`
	Status         string            `json:"status"`
	StatusReason   string            `json:"statusReason"`
	StatusAt       *time.Time        `json:"statusAt"`
	CreatedAt      time.Time         `json:"createdAt"`
	UpdatedAt      time.Time         `json:"updatedAt"`

	Scope       string   `gorm:"-" json:"scope"`   // tenant | platform
	HeaderNames []string `gorm:"-" json:"headers"` // the names of the extra headers (values are secret)
}

// TableName maps channels to ai_channels.
func (Channel) TableName() string { return "ai_channels" }

// TenantOwned marks channels as tenant data (platform ones live under the
// all-zero tenant id).
func (Channel) TenantOwned() {}

// Platform reports whether the channel is a platform channel.
func (c *Channel) Platform() bool { return c.TenantID == store.PlatformTenantID }

// Serves reports whether the channel serves model (listed, mapped, or "*").
func (c *Channel) Serves(model string) bool {
	if _, ok := c.ModelMapping[model]; ok {
		return true
	}
	return slices.Contains(c.Models, model) || slices.Contains(c.Models, "*")
}

// The defaults of a channel's deadlines once its answer's headers came.
const (
	// DefaultIdleTimeout: the longest an answer may send nothing (between
	// stream events, or while its body is read). Long enough for a
	// reasoning model that thinks before its first token.
	DefaultIdleTimeout = 5 * time.Minute
	// DefaultMaxDuration: the longest one call may last in all.
	DefaultMaxDuration = 30 * time.Minute
)

// deadlines are the channel's idle timeout and total deadline.
func (c *Channel) deadlines() (idle, total time.Duration) {
	idle, total = DefaultIdleTimeout, DefaultMaxDuration
	if c.IdleTimeoutMs > 0 {
		idle = time.Duration(c.IdleTimeoutMs) * time.Millisecond
	}
	if c.MaxDurationMs > 0 {
		total = time.Duration(c.MaxDurationMs) * time.Millisecond
	}
	return idle, total
}

// UpstreamModel is the name the upstream knows model by.
func (c *Channel) UpstreamModel(model string) string {
	if m, ok := c.ModelMapping[model]; ok {
		return m
	}
	return model
}

// ChannelInput is what creating or changing a channel takes; nil fields
// keep their value on a change.
type ChannelInput struct {
	Name           *string            `json:"name"`
	Provider       *string            `json:"provider"`
	BaseURL        *string            `json:"baseUrl"`
	Keys           []string           `json:"keys"` // replaces every key when given
	Models         []string           `json:"models"`
	ModelMapping   map[string]string  `json:"modelMapping"`
	Plans          []string           `json:"plans"`
	Priority       *int               `json:"priority"`
	Weight         *int               `json:"weight"`
	MaxConcurrency *int               `json:"maxConcurrency"`
	TimeoutMs      *int               `json:"timeoutMs"`
	IdleTimeoutMs  *int               `json:"idleTimeoutMs"`
	MaxDurationMs  *int               `json:"maxDurationMs"`
	ProxyURL       *string            `json:"proxyUrl"`
	APIVersion     *string            `json:"apiVersion"`
	Headers        map[string]*string `json:"headers"` // a null value removes the header
	Status         *string            `json:"status"`  // enabled | disabled
}

var (
	headerNameRe = regexp.MustCompile(`^[A-Za-z0-9-]{1,64}$`)
	providers    = []string{ProviderOpenAI, ProviderAzure, ProviderAnthropic, ProviderGemini, ProviderCompatible}
	// headers a channel may not set: the gateway sets them, or they are hop-by-hop.
	reservedHeaders = []string{"host", "content-length", "content-type", "connection", "transfer-encoding", "te", "trailer", "upgrade",
		"proxy-authorization", "keep-alive", "accept-encoding"}
)

// ValidModel reports whether s is an acceptable model name (the one rule
// prices follow too, so every model a channel serves can be priced).
func ValidModel(s string) bool { return billing.ValidModel(s) }

// apply validates in and applies it to c (keys and headers are returned
// separately, to be sealed).
func (in *ChannelInput) apply(c *Channel, creating bool, platform bool, planExists func(string) bool) (keys []string, headers map[string]string, err error) {
	f := errs.Fields{}
	if in.Name != nil {
		c.Name = strings.TrimSpace(*in.Name)
	}
	if in.Provider != nil {
		c.Provider = *in.Provider
	}
	if in.BaseURL != nil {
		c.BaseURL = strings.TrimRight(strings.TrimSpace(*in.BaseURL), "/")
	}
	for _, set := range []struct {
		p   *int
		dst *int
	}{{in.Priority, &c.Priority}, {in.Weight, &c.Weight}, {in.MaxConcurrency, &c.MaxConcurrency}, {in.TimeoutMs, &c.TimeoutMs},
		{in.IdleTimeoutMs, &c.IdleTimeoutMs}, {in.MaxDurationMs, &c.MaxDurationMs}} {
		if set.p != nil {
			*set.dst = *set.p
		}
	}
	if in.ProxyURL != nil {
		c.ProxyURL = strings.TrimSpace(*in.ProxyURL)
	}
	if in.APIVersion != nil {
		c.APIVersion = strings.TrimSpace(*in.APIVersion)
	}
	if in.Models != nil {
		c.Models = in.Models
	}
	if in.ModelMapping != nil {
		c.ModelMapping = in.ModelMapping
	}
	if in.Plans != nil {
		c.Plans = in.Plans
	}
	if in.Status != nil {
		if *in.Status != StatusEnabled && *in.Status != StatusDisabled {
			f.Add("status", "must be enabled or disabled")
		} else {
			c.Status = *in.Status
		}
	}
	if c.ModelMapping == nil {
		c.ModelMapping = map[string]string{}
	}
	for _, l := range []*[]string{&c.Models, &c.Plans} {
		if *l == nil {
			*l = []string{}
		}
	}
	if creating && c.Weight == 0 && in.Weight == nil {
		c.Weight = 1
	}
	c.Name = f.Text("name", c.Name, 1, 100)
	if !slices.Contains(providers, c.Provider) {
		f.Add("provider", "must be one of "+strings.Join(providers, ", "))
	}
	if c.BaseURL == "" && (c.Provider == ProviderAzure || c.Provider == ProviderCompatible) {
		f.Add("baseUrl", "is required for "+c.Provider+" (e.g. https://my-resource.openai.azure.com or http://vllm.internal:8000/v1)")
	} else if c.BaseURL != "" {
		if u, err := url.Parse(c.BaseURL); err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" || u.User != nil {
			f.Add("baseUrl", "must be an http(s) URL without credentials")
		}
	}
	if c.ProxyURL != "" {
		if u, err := url.Parse(c.ProxyURL); err != nil || (u.Scheme != "http" && u.Scheme != "https" && u.Scheme != "socks5") || u.Host == "" {
			f.Add("proxyUrl", "must be an http, https or socks5 URL")
		} else if u.User != nil {
			f.Add("proxyUrl", "must not carry credentials (they would be stored and shown in the clear); use a proxy that trusts the server's address")
		}
	}
	if in.Keys != nil || creating {
		keys = make([]string, 0, len(in.Keys))
		for _, k := range in.Keys {
			if k = strings.TrimSpace(k); k != "" {
				keys = append(keys, k)
			}
		}
		switch {
		case len(keys) > 100:
			f.Add("keys", "at most 100 keys")
		case len(keys) == 0 && c.Provider != ProviderCompatible:
			f.Add("keys", "give at least one API key of the provider")
		}
		for _, k := range keys {
			if len(k) > 4096 || strings.ContainsAny(k, "\r\n") {
				f.Add("keys", "each key must be one line of at most 4096 characters")
				break
			}
		}
	}
	if len(c.Models) == 0 && len(c.ModelMapping) == 0 {
		f.Add("models", `list the models this channel serves (or ["*"] for every model)`)
	}
	if len(c.Models) > 500 {
		f.Add("models", "at most 500 models")
	}
	for _, m := range c.Models {
		if m != "*" && !ValidModel(m) {
			f.Add("models", fmt.Sprintf("%q is not a model name (1-200 characters of A-Z a-z 0-9 . _ : / @ -)", m))
			break
		}
	}
	for alias, up := range c.ModelMapping {
		if !ValidModel(alias) || !ValidModel(up) {
			f.Add("modelMapping", fmt.Sprintf("%q → %q: both must be model names", alias, up))
			break
		}
	}
	if len(c.ModelMapping) > 500 {
		f.Add("modelMapping", "at most 500 entries")
	}
	if len(c.Plans) > 0 && !platform {
		f.Add("plans", "only platform channels are limited to plans")
	}
	for _, p := range c.Plans {
		if planExists != nil && !planExists(p) {
			f.Add("plans", fmt.Sprintf("no plan named %q", p))
			break
		}
	}
	if c.Priority < -1000 || c.Priority > 1000 {
		f.Add("priority", "must be from -1000 to 1000 (higher is tried first)")
	}
	if c.Weight < 1 || c.Weight > 1000 {
		f.Add("weight", "must be from 1 to 1000")
	}
	if c.MaxConcurrency < 0 || c.MaxConcurrency > 100000 {
		f.Add("maxConcurrency", "must be from 0 (unlimited) to 100000")
	}
	if c.TimeoutMs < 0 || c.TimeoutMs > 600000 {
		f.Add("timeoutMs", "must be from 0 (the default, 60000) to 600000")
	}
	if c.IdleTimeoutMs != 0 && (c.IdleTimeoutMs < 100 || c.IdleTimeoutMs > 3600000) {
		f.Add("idleTimeoutMs", fmt.Sprintf("must be 0 (the default, %d) or from 100 to 3600000", DefaultIdleTimeout.Milliseconds()))
	}
	if c.MaxDurationMs != 0 && (c.MaxDurationMs < 1000 || c.MaxDurationMs > 86400000) {
		f.Add("maxDurationMs", fmt.Sprintf("must be 0 (the default, %d) or from 1000 to 86400000", DefaultMaxDuration.Milliseconds()))
	}
	if len(c.APIVersion) > 64 {
		f.Add("apiVersion", "at most 64 characters")
	}
	if in.Headers != nil {
		headers = map[string]string{}
		for k, v := range in.Headers {
			if !headerNameRe.MatchString(k) || slices.Contains(reservedHeaders, strings.ToLower(k)) {
				f.Add("headers", fmt.Sprintf("%q cannot be set on a channel", k))
				continue
			}
			if v != nil {
				if len(*v) > 4096 || strings.ContainsAny(*v, "\r\n") {
					f.Add("headers", fmt.Sprintf("%q: the value must be one line of at most 4096 characters", k))
					continue
				}
				headers[http.CanonicalHeaderKey(k)] = *v
			}
		}
		if len(headers) > 20 {
			f.Add("headers", "at most 20 headers")
		}
	}
	return keys, headers, f.Err()
}

func (s *Service) planExists(ctx context.Context) func(string) bool {
	if s.opts.PlanExists == nil {
		return nil
	}
	return func(p string) bool { return s.opts.PlanExists(ctx, p) }
}

func sealAD(c *Channel, what string) []byte {
	return []byte("ai_channel:" + what + ":" + c.TenantID + ":" + c.ID)
}

func (s *Service) sealKeys(c *Channel, keys []string) {
	raw, _ := json.Marshal(keys)
	c.KeysSealed, c.KeyCount = s.box.Seal(raw, sealAD(c, "keys")), len(keys)
}

func (s *Service) openKeys(c *Channel) ([]string, error) {
	raw, err := s.box.Open(c.KeysSealed, sealAD(c, "keys"))
	if err != nil {
		return nil, err
	}
	var keys []string
	return keys, json.Unmarshal(raw, &keys)
}

func (s *Service) sealHeaders(c *Channel, h map[string]string) {
	if len(h) == 0 {
		c.HeadersSealed = ""
		return
	}
	raw, _ := json.Marshal(h)
	c.HeadersSealed = s.box.Seal(raw, sealAD(c, "headers"))
}

func (s *Service) openHeaders(c *Channel) (map[string]string, error) {
	if c.HeadersSealed == "" {
		return nil, nil
	}
	raw, err := s.box.Open(c.HeadersSealed, sealAD(c, "headers"))
	if err != nil {
		return nil, err
	}
	var h map[string]string
	return h, json.Unmarshal(raw, &h)
}

// present fills the fields computed for the API.
func (s *Service) present(c *Channel) *Channel {
	c.Scope = "tenant"
	if c.Platform() {
		c.Scope = "platform"
	}
	c.HeaderNames = []string{}
	if h, err := s.openHeaders(c); err == nil {
		for k := range h {
			c.HeaderNames = append(c.HeaderNames, k)
		}
		slices.Sort(c.HeaderNames)
	}
	for _, l := range []*[]string{&c.Models, &c.Plans} {
		if *l == nil {
			*l = []string{}
		}
	}
	if c.ModelMapping == nil {
		c.ModelMapping = map[string]string{}
	}
	return c
}

// ownerCtx is the database scope of a channel owner: the tenant, or the
// platform rows (which live under the all-zero tenant id).
func ownerCtx(ctx context.Context, owner string) context.Context {
	return store.WithTenant(ctx, owner)
}

// CreateChannel adds a channel for owner (a tenant id, or
// store.PlatformTenantID for a platform channel).
func (s *Service) CreateChannel(ctx context.Context, owner string, in ChannelInput) (*Channel, error) {
	now := s.now()
	c := &Channel{TenantID: owner, ID: uuid.Must(uuid.NewV7()).String(), Status: StatusEnabled, CreatedAt: now, UpdatedAt: now}
	keys, headers, err := in.apply(c, true, owner == store.PlatformTenantID, s.planExists(ctx))
	if err != nil {
		return nil, err
	}
	s.sealKeys(c, keys)
	s.sealHeaders(c, headers)
	err = s.store.Tx(ownerCtx(ctx, owner), func(tx *gorm.DB) error {
		if err := tx.Create(c).Error; err != nil {
			if store.IsUniqueViolation(err) {
				return errs.Conflict(CodeChannelExists, "a channel named %q exists; choose another name", c.Name)
			}
			return err
		}
		return audit.Record(ctx, tx, audit.Entry{TenantID: owner, EventType: "ai_channel.created", Resource: "ai_channel", ResourceID: c.ID,
			Action: "create", After: s.auditView(c)})
	})
	if err != nil {
		return nil, errs.Wrap(err, "create the channel")
	}
	s.Reload(ctx)
	return s.present(c), nil
}

// auditView is what the audit log keeps of a channel: never keys or header values.
func (s *Service) auditView(c *Channel) map[string]any {
	return map[string]any{"name": c.Name, "provider": c.Provider, "baseUrl": c.BaseURL, "models": c.Models, "modelMapping": c.ModelMapping,
		"priority": c.Priority, "weight": c.Weight, "status": c.Status, "keyCount": c.KeyCount, "plans": c.Plans}
}

// Channels lists owner's channels.
func (s *Service) Channels(ctx context.Context, owner string, p store.Page) ([]*Channel, *string, error) {
	var out []*Channel
	err := s.store.Tx(ownerCtx(ctx, owner), func(tx *gorm.DB) error {
		return p.Apply(tx, "id").Find(&out).Error
	})
	if err != nil {
		return nil, nil, errs.Internal(err, "list channels")
	}
	for _, c := range out {
		s.present(c)
	}
	items, next := store.Trim(out, p, func(c *Channel) string { return c.ID })
	return items, next, nil
}

func (s *Service) getTx(tx *gorm.DB, id string) (*Channel, error) {
	if !store.ValidID(id) {
		return nil, errs.NotFound(CodeChannelNotFound, "no channel with id %q", id)
	}
	var c Channel
	if err := tx.Where("id = ?", id).Take(&c).Error; err != nil {
		if store.IsNotFound(err) {
			return nil, errs.NotFound(CodeChannelNotFound, "no channel with id %q", id)
		}
		return nil, err
	}
	return &c, nil
}

// Channel reads one of owner's channels.
func (s *Service) Channel(ctx context.Context, owner, id string) (*Channel, error) {
	c, err := store.Read(ownerCtx(ctx, owner), s.store, func(tx *gorm.DB) (*Channel, error) { return s.getTx(tx, id) })
	if err != nil {
		return nil, errs.Wrap(err, "read the channel")
	}
	return s.present(c), nil
}

// UpdateChannel changes one of owner's channels. Enabling a channel clears
// an automatic disablement.
func (s *Service) UpdateChannel(ctx context.Context, owner, id string, in ChannelInput) (*Channel, error) {
	// The plan catalogue is read before the transaction, never inside it (a
	// second transaction there waits on this one): the plans the input names
	// are checked now; the ones the channel already has were checked when set.
	checked := map[string]bool{}
	if exists := s.planExists(ctx); exists != nil {
		for _, p := range in.Plans {
			checked[p] = exists(p)
		}
	}
	known := func(p string) bool {
		ok, seen := checked[p]
		return ok || !seen
	}
	var c *Channel
	err := s.store.Tx(ownerCtx(ctx, owner), func(tx *gorm.DB) error {
		var err error
		if c, err = s.getTx(tx, id); err != nil {
			return err
		}
		before := s.auditView(c)
		oldHeaders, err := s.openHeaders(c)
		if err != nil {
			return err
		}
		keys, headers, err := in.apply(c, false, c.Platform(), known)
		if err != nil {
			return err
		}
		if in.Keys != nil {
			s.sealKeys(c, keys)
		}
		if in.Headers != nil {
			merged := map[string]string{}
			for k, v := range oldHeaders {
				merged[k] = v
			}
			for k, v := range in.Headers {
				if v == nil {
					delete(merged, http.CanonicalHeaderKey(k))
				}
			}
			for k, v := range headers {
				merged[k] = v
			}
			s.sealHeaders(c, merged)
		}
		now := s.now()
		if in.Status != nil {
			c.StatusReason, c.StatusAt = "", &now
			if *in.Status == StatusDisabled {
				c.StatusReason = "disabled by " + actorName(ctx)
			}
		}
		c.UpdatedAt = now
		if err := tx.Select("*").Omit("tenant_id", "id", "created_at").Where("id = ?", c.ID).Updates(c).Error; err != nil {
			if store.IsUniqueViolation(err) {
				return errs.Conflict(CodeChannelExists, "a channel named %q exists; choose another name", c.Name)
			}
			return err
		}
		meta := map[string]any{}
		if in.Keys != nil {
			meta["keysReplaced"] = len(keys)
		}
		return audit.Record(ctx, tx, audit.Entry{TenantID: owner, EventType: "ai_channel.updated", Resource: "ai_channel", ResourceID: c.ID,
			Action: "update", Before: before, After: s.auditView(c), Metadata: meta})
	})
	if err != nil {
		return nil, errs.Wrap(err, "change the channel")
	}
	s.Reload(ctx)
	return s.present(c), nil
}

// DeleteChannel removes one of owner's channels.
func (s *Service) DeleteChannel(ctx context.Context, owner, id string) error {
	err := s.store.Tx(ownerCtx(ctx, owner), func(tx *gorm.DB) error {
		c, err := s.getTx(tx, id)
		if err != nil {
			return err
		}
		if err := tx.Where("id = ?", id).Delete(&Channel{}).Error; err != nil {
			return err
		}
		return audit.Record(ctx, tx, audit.Entry{TenantID: owner, EventType: "ai_channel.deleted", Resource: "ai_channel", ResourceID: id,
			Action: "delete", Before: s.auditView(c)})
	})
	if err != nil {
		return errs.Wrap(err, "delete the channel")
	}
	s.Reload(ctx)
	return nil
}
