package gateway

import (
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"regexp"
	"time"

	"gorm.io/gorm"
	"gorm.io/gorm/clause"

	"github.com/tenantgate/tenantgate/internal/actor"
	"github.com/tenantgate/tenantgate/internal/audit"
	"github.com/tenantgate/tenantgate/internal/errs"
	"github.com/tenantgate/tenantgate/internal/store"
)

// RedactRule masks what Pattern (RE2 syntax) matches in prompts before
// they leave the gateway.
type RedactRule struct {
	Name        string `json:"name"`
	Pattern     string `json:"pattern"`
	Replacement string `json:"replacement"` // default "[REDACTED]"
}

// Settings are a tenant's gateway settings.
type Settings struct {
	TenantID         string       `gorm:"primaryKey" json:"-"`
	StoreContent     bool         `json:"storeContent"`  // keep prompts and completions in the request log
	AllowUnpriced    bool         `json:"allowUnpriced"` // serve platform models that have no price (free of charge)
	BYOKOnly         bool         `json:"byokOnly"`      // route only to the tenant's own channels
	RedactPatterns   []RedactRule `gorm:"serializer:json" json:"redactPatterns"`
	LogRetentionDays int          `json:"logRetentionDays"` // request-log rows older than this are deleted (0: keep)
	UpdatedAt        time.Time    `json:"updatedAt"`

	compiled []*regexp.Regexp
}

// MarshalJSON shows updatedAt as null for settings never saved.
func (s Settings) MarshalJSON() ([]byte, error) {
	type plain Settings
	return json.Marshal(struct {
		plain
		UpdatedAt *time.Time `json:"updatedAt"`
	}{plain(s), store.TimeOrNull(s.UpdatedAt)})
}

// TableName maps settings to ai_settings.
func (Settings) TableName() string { return "ai_settings" }

// TenantOwned marks settings as tenant data.
func (Settings) TenantOwned() {}

// DefaultLogRetentionDays applies to tenants that never changed it.
const DefaultLogRetentionDays = 90

func defaultSettings(tenantID string) *Settings {
	return &Settings{TenantID: tenantID, LogRetentionDays: DefaultLogRetentionDays, RedactPatterns: []RedactRule{}}
}

func (s *Settings) compile(log *slog.Logger) *Settings {
	s.compiled = s.compiled[:0]
	for _, r := range s.RedactPatterns {
		re, err := regexp.Compile(r.Pattern)
		if err != nil { // validated on save; a bad stored one masks nothing, loudly
			if log != nil {
				log.Error("a stored redaction pattern does not compile; it is skipped", "tenant", s.TenantID, "rule", r.Name, "err", err)
			}
			re = nil
		}
		s.compiled = append(s.compiled, re) // index i stays rule i, for its replacement
	}
	if s.RedactPatterns == nil {
		s.RedactPatterns = []RedactRule{}
	}
	return s
}

// redact applies the rules to text.
func (s *Settings) redact(text string) string {
	if s == nil {
		return text
	}
	for i, re := range s.compiled {
		if re == nil {
			continue
		}
		rep := s.RedactPatterns[i].Replacement
		if rep == "" {
			rep = "[REDACTED]"
		}
		text = re.ReplaceAllLiteralString(text, rep)
	}
	return text
}

// settingsFor returns the tenant's settings from the routing table (no
// database round trip).
func (g *Service) settingsFor(tenantID string) *Settings {
	g.mu.RLock()
	s := g.settings[tenantID]
	g.mu.RUnlock()
	if s == nil {
		return defaultSettings(tenantID)
	}
	return s
}

// Settings reads the tenant's settings.
func (g *Service) Settings(ctx context.Context, tenantID string) (*Settings, error) {
	s, err := store.Read(store.WithTenant(ctx, tenantID), g.store, func(tx *gorm.DB) (*Settings, error) {
		var s Settings
		err := tx.Take(&s).Error
		if store.IsNotFound(err) {
			return defaultSettings(tenantID), nil
		}
		return &s, err
	})
	if err != nil {
		return nil, errs.Internal(err, "read gateway settings")
	}
	return s.compile(g.log), nil
}

// SettingsInput changes settings; nil fields keep their value.
type SettingsInput struct {
	StoreContent     *bool         `json:"storeContent"`
	AllowUnpriced    *bool         `json:"allowUnpriced"`
	BYOKOnly         *bool         `json:"byokOnly"`
	RedactPatterns   *[]RedactRule `json:"redactPatterns"`
	LogRetentionDays *int          `json:"logRetentionDays"`
}

// UpdateSettings changes the tenant's settings.
func (g *Service) UpdateSettings(ctx context.Context, tenantID string, in SettingsInput) (*Settings, error) {
	cur, err := g.Settings(ctx, tenantID)
	if err != nil {
		return nil, err
	}
	before := *cur
	f := errs.Fields{}
	if in.StoreContent != nil {
		cur.StoreContent = *in.StoreContent
	}
	if in.AllowUnpriced != nil && *in.AllowUnpriced != cur.AllowUnpriced {
		// The platform pays its upstreams: only an operator may let a tenant use unpriced models.
		if !actor.From(ctx).IsOperator() {
			return nil, errs.Forbidden(errs.CodePermissionDenied, "only a platform operator can allow unpriced models (the platform pays for them)")
		}
		cur.AllowUnpriced = *in.AllowUnpriced
	}
	if in.BYOKOnly != nil {
		cur.BYOKOnly = *in.BYOKOnly
	}
	if in.LogRetentionDays != nil {
		if *in.LogRetentionDays < 0 || *in.LogRetentionDays > 3650 {
			f.Add("logRetentionDays", "must be from 0 (keep forever) to 3650")
		}
		cur.LogRetentionDays = *in.LogRetentionDays
	}
	if in.RedactPatterns != nil {
		rules := *in.RedactPatterns
		if len(rules) > 50 {
			f.Add("redactPatterns", "at most 50 rules")
		}
		for i, r := range rules {
			p := fmt.Sprintf("redactPatterns[%d].", i)
			rules[i].Name = f.Text(p+"name", r.Name, 1, 64)
			if len(r.Pattern) == 0 || len(r.Pattern) > 1000 {
				f.Add(p+"pattern", "is required: a regular expression (RE2 syntax) of at most 1000 characters")
			} else if _, err := regexp.Compile(r.Pattern); err != nil {
				f.Add(p+"pattern", "does not compile: "+err.Error())
			} else if regexp.MustCompile(r.Pattern).MatchString("") {
				f.Add(p+"pattern", "matches the empty string, which would mask between every character")
			}
			if len(r.Replacement) > 100 {
				f.Add(p+"replacement", "at most 100 characters")
			}
		}
		cur.RedactPatterns = rules
	}
	if err := f.Err(); err != nil {
		return nil, err
	}
	cur.TenantID, cur.UpdatedAt = tenantID, g.now()
	err = g.store.Tx(store.WithTenant(ctx, tenantID), func(tx *gorm.DB) error {
		if err := tx.Clauses(clause.OnConflict{Columns: []clause.Column{{Name: "tenant_id"}}, UpdateAll: true}).Create(cur).Error; err != nil {
			return err
		}
		return audit.Record(ctx, tx, audit.Entry{EventType: "ai_settings.updated", Resource: "ai_settings", ResourceID: tenantID, Action: "update",
			Before: settingsView(&before), After: settingsView(cur)})
	})
	if err != nil {
		return nil, errs.Wrap(err, "save gateway settings")
	}
	g.Reload(ctx)
	return cur.compile(g.log), nil
}

func settingsView(s *Settings) map[string]any {
	names := []string{}
	for _, r := range s.RedactPatterns {
		names = append(names, r.Name)
	}
	return map[string]any{"storeContent": s.StoreContent, "allowUnpriced": s.AllowUnpriced, "byokOnly": s.BYOKOnly,
		"redactRules": names, "logRetentionDays": s.LogRetentionDays}
}
