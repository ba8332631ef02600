package identity

import (
	"context"
	"crypto/rand"
	"encoding/base64"
	"fmt"
	"log/slog"
	"net/netip"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/google/uuid"
	"gorm.io/gorm"

	"github.com/tenantgate/tenantgate/internal/actor"
	"github.com/tenantgate/tenantgate/internal/audit"
	"github.com/tenantgate/tenantgate/internal/errs"
	"github.com/tenantgate/tenantgate/internal/money"
	"github.com/tenantgate/tenantgate/internal/rbac"
	"github.com/tenantgate/tenantgate/internal/secret"
	"github.com/tenantgate/tenantgate/internal/store"
)

// APIKey is a tenant user's long-lived credential, narrowed to scopes. The
// secret is shown once at creation; only its SHA-256 is stored.
type APIKey struct {
	TenantID      string     `gorm:"primaryKey" json:"tenantId"`
	ID            string     `gorm:"primaryKey" json:"id"`
	UserID        string     `json:"userId"`
	Name          string     `json:"name"`
	Prefix        string     `json:"prefix"`
	SecretHash    string     `json:"-"`
	Scopes        []string   `gorm:"serializer:json" json:"scopes"`
	IPAllowlist   []string   `gorm:"serializer:json" json:"ipAllowlist"`
	AllowedModels []string   `gorm:"serializer:json" json:"allowedModels"`
	BudgetMicros  *int64     `json:"-"`
	RateLimit     *int       `gorm:"column:rate_limit_per_minute" json:"rateLimitPerMinute"`
	TokenRate     *int       `gorm:"column:tokens_per_minute" json:"tokensPerMinute"`
	Budget        *string    `gorm:"-" json:"budget"`
	ExpiresAt     *time.Time `json:"expiresAt"`
	LastUsedAt    *time.Time `json:"lastUsedAt"`
	RevokedAt     *time.Time `json:"revokedAt,omitempty"`
	CreatedAt     time.Time  `json:"createdAt"`
	prefixes      []netip.Prefix
}

// TableName maps APIKey to api_keys.
func (APIKey) TableName() string { return "api_keys" }

// TenantOwned marks API keys as tenant data.
func (APIKey) TenantOwned() {}

func (k *APIKey) fill() *APIKey {
	if k.BudgetMicros != nil {
		b := money.Micros(*k.BudgetMicros).String()
		k.Budget = &b
	}
	for _, l := range []*[]string{&k.Scopes, &k.IPAllowlist, &k.AllowedModels} {
		if *l == nil {
			*l = []string{}
		}
	}
	return k
}

// NewAPIKey is what creating a key takes.
type NewAPIKey struct {
	Name          string     `json:"name"`
	Scopes        []string   `json:"scopes"`    // default: every permission the creator holds
	ExpiresAt     *time.Time `json:"expiresAt"` // default: never
	IPAllowlist   []string   `json:"ipAllowlist"`
	AllowedModels []string   `json:"allowedModels"`      // for the AI gateway; empty: all the tenant may use
	Budget        *string    `json:"budget"`             // for the AI gateway, e.g. "25.00"; null: no per-key budget
	RateLimit     *int       `json:"rateLimitPerMinute"` // this key's own request rate; null: the tenant's
	TokenRate     *int       `json:"tokensPerMinute"`    // for the AI gateway: this key's own token rate; null: the tenant's
}

// API keys read "tg_" + base64url(32 random bytes ‖ the 16-byte tenant id):
// the tenant lets authentication open that tenant's scope (and RLS) before
// the lookup, and the random part leads so prefixes tell keys apart.
const keyPrefix = "tg_"

// IsAPIKey reports whether a bearer credential looks like an API key.
func IsAPIKey(tok string) bool { return strings.HasPrefix(tok, keyPrefix) }

func newKeySecret(tenantID string) (string, error) {
	tid, err := uuid.Parse(tenantID)
	if err != nil {
		return "", err
	}
	raw := make([]byte, 48)
	if _, err := rand.Read(raw[:32]); err != nil {
		return "", err
	}
	copy(raw[32:], tid[:])
	return keyPrefix + base64.RawURLEncoding.EncodeToString(raw), nil
}

// KeyTenant returns the tenant an API key belongs to.
func KeyTenant(tok string) (string, bool) {
	rest, ok := strings.CutPrefix(tok, keyPrefix)
	if !ok || len(rest) != 64 {
		return "", false
	}
	raw, err := base64.RawURLEncoding.DecodeString(rest)
	if err != nil || len(raw) != 48 {
		return "", false
	}
	id, err := uuid.FromBytes(raw[32:])
	if err != nil || id == uuid.Nil {
		return "", false
	}
	return id.String(), true
}

func parseCIDRs(f errs.Fields, field string, in []string) ([]string, []netip.Prefix) {
	var out []string
	var pfx []netip.Prefix
	for _, c := range in {
		c = strings.TrimSpace(c)
		var p netip.Prefix
		var err error
		if strings.Contains(c, "/") {
			p, err = netip.ParsePrefix(c)
			p = p.Masked()
		} else {
			var a netip.Addr
			a, err = netip.ParseAddr(c)
			p = netip.PrefixFrom(a, a.BitLen())
		}
		if err != nil {
			f.Add(field, c+" is not an IP address or CIDR range")
			continue
		}
		out, pfx = append(out, p.String()), append(pfx, p)
	}
	if len(out) > 100 {
		f.Add(field, "must have at most 100 entries")
	}
	if out == nil {
		out = []string{}
	}
	return out, pfx
}

// CreateAPIKey creates a key for the calling user. Its scopes must be a
// subset of the user's permissions; the secret is returned once.
func (s *Service) CreateAPIKey(ctx context.Context, in NewAPIKey) (*APIKey, string, error) {
	a := actor.From(ctx)
	if a == nil || a.Type != actor.TypeUser {
		return nil, "", errs.Forbidden(errs.CodeForbidden, "only a tenant user can hold API keys")
	}
	if a.KeyID != "" {
		return nil, "", errs.Forbidden(errs.CodeForbidden, "an API key cannot create API keys; use a login session")
	}
	if a.ImpersonatedBy != "" {
		return nil, "", errs.Forbidden(errs.CodeForbidden, "an impersonation cannot create API keys: they would outlive it")
	}
	f := errs.Fields{}
	in.Name = f.Text("name", in.Name, 1, 100)
	mine := rbac.PermissionsOf(a.Roles)
	scopes := in.Scopes
	if len(scopes) == 0 {
		scopes = mine
	}
	var clean []string
	for _, sc := range scopes {
		if !slices.Contains(mine, sc) {
			f.Add("scopes", "you do not hold "+sc+"; a key can only have permissions you have ("+strings.Join(mine, ", ")+")")
			continue
		}
		if !slices.Contains(clean, sc) {
			clean = append(clean, sc)
		}
	}
	slices.Sort(clean)
	now := s.now()
	if in.ExpiresAt != nil && !in.ExpiresAt.After(now) {
		f.Add("expiresAt", "must be in the future")
	}
	cidrs, _ := parseCIDRs(f, "ipAllowlist", in.IPAllowlist)
	models := []string{}
	for _, m := range in.AllowedModels {
		m = strings.TrimSpace(m)
		if m == "" || len(m) > 200 {
			f.Add("allowedModels", "each model name must be 1 to 200 characters")
			continue
		}
		models = append(models, m)
	}
	var budget *int64
	if in.Budget != nil {
		m, err := money.Parse(*in.Budget)
		if err != nil {
			f.Add("budget", err.Error())
		} else if m > money.MaxBalance {
			f.Add("budget", fmt.Sprintf("must be at most %s", money.MaxBalance))
		}
		v := int64(m)
		budget = &v
	}
	if in.TokenRate != nil && (*in.TokenRate < 1 || *in.TokenRate > 1_000_000_000) {
		f.Add("tokensPerMinute", "must be from 1 to 1000000000, or null for the tenant's rate")
	}
	if in.RateLimit != nil && (*in.RateLimit < 1 || *in.RateLimit > 1_000_000) {
		f.Add("rateLimitPerMinute", "must be from 1 to 1000000, or null")
	}
	if err := f.Err(); err != nil {
		return nil, "", err
	}
	tenantID := store.TenantFrom(ctx)
	sec, err := newKeySecret(tenantID)
	if err != nil {
		return nil, "", errs.Internal(err, "make the key")
	}
	k := &APIKey{ID: uuid.Must(uuid.NewV7()).String(), UserID: a.ID, Name: in.Name, Prefix: sec[:11], SecretHash: secret.Hash(sec),
		Scopes: clean, IPAllowlist: cidrs, AllowedModels: models, BudgetMicros: budget, RateLimit: in.RateLimit, TokenRate: in.TokenRate, CreatedAt: now}
	if in.ExpiresAt != nil {
		e := in.ExpiresAt.UTC()
		k.ExpiresAt = &e
	}
	err = s.store.Tx(ctx, func(tx *gorm.DB) error {
		if err := s.quota.Reserve(ctx, tx, "apiKeys"); err != nil {
			return err
		}
		if err := tx.Create(k).Error; err != nil {
			return errs.Internal(err, "store the key")
		}
		return audit.Record(ctx, tx, audit.Entry{EventType: "api_key.created", Resource: "api_key", ResourceID: k.ID, Action: "create", After: k.fill()})
	})
	if err != nil {
		return nil, "", err
	}
	return k, sec, nil
}

// ListAPIKeys lists keys: every key of the tenant when all is set (the
// api_key:manage permission), else the caller's own. Revoked keys are left
// out unless revoked is set.
func (s *Service) ListAPIKeys(ctx context.Context, all bool, userID string, revoked bool, p store.Page) ([]APIKey, *string, error) {
	a := actor.From(ctx)
	var out []APIKey
	err := s.store.Tx(ctx, func(tx *gorm.DB) error {
		q := tx.Model(&APIKey{})
		switch {
		case !all:
			q = q.Where("user_id = ?", a.ID)
		case userID != "":
			q = q.Where("user_id = ?", userID)
		}
		if !revoked {
			q = q.Where("revoked_at IS NULL")
		}
		return p.Apply(q, "id").Find(&out).Error
	})
	if err != nil {
		return nil, nil, errs.Internal(err, "list API keys")
	}
	for i := range out {
		out[i].fill()
	}
	items, next := store.Trim(out, p, func(k APIKey) string { return k.ID })
	return items, next, nil
}

// RevokeAPIKey revokes a key: the caller's own, or with all set any key of
// a user the caller may manage (the rank rules).
func (s *Service) RevokeAPIKey(ctx context.Context, id string, all bool) error {
	a := actor.From(ctx)
	notFound := errs.NotFound(errs.CodeNotFound, "no API key with id %q", id)
	if !store.ValidID(id) {
		return notFound
	}
	err := s.store.Tx(ctx, func(tx *gorm.DB) error {
		var k APIKey
		if err := tx.Where("id = ? AND revoked_at IS NULL", id).Take(&k).Error; err != nil {
			if store.IsNotFound(err) {
				return notFound
			}
			return err
		}
		if !all && k.UserID != a.ID {
			return notFound
		}
		if a == nil || a.Type != actor.TypeUser || k.UserID != a.ID {
			// Another user's key: the rank rules apply as to any change to them.
			if err := s.ranksOrFail().MayManageTx(ctx, tx, k.UserID); err != nil {
				return err
			}
		}
		now := s.now()
		if err := tx.Model(&k).Update("revoked_at", now).Error; err != nil {
			return err
		}
		return audit.Record(ctx, tx, audit.Entry{EventType: "api_key.revoked", Resource: "api_key", ResourceID: k.ID, Action: "delete", Before: k.fill()})
	})
	if err != nil {
		return errs.Wrap(err, "revoke the key")
	}
	s.keys.evict(func(e *keyEntry) bool { return e.key.ID == id })
	return nil
}

// KeyPrincipal is who an API key authenticates as.
type KeyPrincipal struct {
	Key      *APIKey
	Roles    []string
	Username string
	Email    string
}

// keyCache keeps recently verified keys so authentication costs no database
// round trip; an entry lives KeyCacheTTL, which bounds how long another
// server process may still accept a key revoked elsewhere.
type keyCache struct {
	mu      sync.Mutex
	entries map[string]*keyEntry // by secret hash
}

type keyEntry struct {
	key   APIKey
	p     KeyPrincipal
	exp   time.Time
	fail  error        // a remembered refusal (unknown or revoked key)
	noted atomic.Int64 // when this key's use was last noted for FlushKeyUse (unix ns)
}

// KeyCacheTTL is how long a verified key is trusted without a database read.
const KeyCacheTTL = 30 * time.Second

// SetCacheTTL sets how long a verified API key is trusted without a database
// read (KeyCacheTTL); 0 reads it on every use (tests use it to prove that no
// path depends on a warm cache).
func (s *Service) SetCacheTTL(d time.Duration) { s.keyTTL.Store(int64(d)) }

func (c *keyCache) get(hash string, now time.Time) (*keyEntry, bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	e, ok := c.entries[hash]
	if !ok || now.After(e.exp) {
		return nil, false
	}
	return e, true
}

func (c *keyCache) put(hash string, e *keyEntry) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.entries == nil || len(c.entries) > 100000 {
		c.entries = map[string]*keyEntry{}
	}
	c.entries[hash] = e
}

func (c *keyCache) evict(match func(*keyEntry) bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	for h, e := range c.entries {
		if match(e) {
			delete(c.entries, h)
		}
	}
}

var errBadKey = errs.Unauthenticated(errs.CodeTokenInvalid, "the API key is not valid")

// AuthenticateKey checks an API key and returns its principal. It reads the
// database at most once per key per KeyCacheTTL and never writes: the key's
// last use is noted in memory and written in batches (FlushKeyUse).
func (s *Service) AuthenticateKey(ctx context.Context, tok, clientIP string) (*KeyPrincipal, error) {
	tenantID, ok := KeyTenant(tok)
	if !ok {
		return nil, errBadKey
	}
	hash := secret.Hash(tok)
	now := s.now()
	e, hit := s.keys.get(hash, now)
	if !hit {
		e = &keyEntry{exp: now.Add(time.Duration(s.keyTTL.Load()))}
		err := s.store.Tx(store.WithTenant(ctx, tenantID), func(tx *gorm.DB) error {
			var k APIKey
			if err := tx.Where("secret_hash = ?", hash).Take(&k).Error; err != nil {
				if store.IsNotFound(err) {
					e.fail = errBadKey
					return nil
				}
				return err
			}
			if k.RevokedAt != nil {
				e.fail = errs.Unauthenticated(errs.CodeTokenInvalid, "this API key was revoked")
				return nil
			}
			u, err := s.getTx(tx, k.UserID)
			if err != nil || u.Status != StatusActive {
				e.fail = errs.Unauthenticated(errs.CodeTokenInvalid, "this API key's user can no longer sign in")
				return nil
			}
			_, k.prefixes = parseCIDRs(errs.Fields{}, "", k.IPAllowlist)
			e.key = k
			e.p = KeyPrincipal{Key: &e.key, Roles: u.Roles, Username: u.Username, Email: u.Email}
			return nil
		})
		if err != nil {
			return nil, errs.Internal(err, "check the API key")
		}
		s.keys.put(hash, e)
	}
	if e.fail != nil {
		return nil, e.fail
	}
	if e.key.ExpiresAt != nil && !now.Before(*e.key.ExpiresAt) {
		return nil, errs.Unauthenticated(errs.CodeTokenExpired, "this API key has expired; create a new one")
	}
	if len(e.key.prefixes) > 0 {
		ip, err := netip.ParseAddr(clientIP)
		allowed := false
		for _, p := range e.key.prefixes {
			if err == nil && p.Contains(ip.Unmap()) {
				allowed = true
				break
			}
		}
		if !allowed {
			return nil, errs.Forbidden(errs.CodeForbidden, "this API key may not be used from %s", clientIP)
		}
	}
	s.keyUse.note(e, now)
	p := e.p
	return &p, nil
}

// keyUse gathers API keys' last use in memory; FlushKeyUse writes it in
// batches, so authenticating a key never writes to the database (a database
// that cannot take writes does not stop keys from reading).
type keyUse struct {
	mu      sync.Mutex
	pending map[string]map[string]time.Time // tenant → key id → last use
}

// keyUseEvery is how often one key's use is noted at most: last use is
// precise to this, and the hot path pays one atomic load otherwise.
const keyUseEvery = 10 * time.Second

func (u *keyUse) note(e *keyEntry, now time.Time) {
	last := e.noted.Load()
	if now.UnixNano()-last < int64(keyUseEvery) || !e.noted.CompareAndSwap(last, now.UnixNano()) {
		return
	}
	u.mu.Lock()
	defer u.mu.Unlock()
	u.addLocked(e.key.TenantID, e.key.ID, now)
}

// addLocked records a key's use at at, unless a later one is recorded.
func (u *keyUse) addLocked(tenantID, keyID string, at time.Time) {
	if u.pending == nil {
		u.pending = map[string]map[string]time.Time{}
	}
	byKey := u.pending[tenantID]
	if byKey == nil {
		byKey = map[string]time.Time{}
		u.pending[tenantID] = byKey
	}
	if at.After(byKey[keyID]) {
		byKey[keyID] = at
	}
}

// FlushKeyUse writes the noted last uses, one transaction per tenant; what
// cannot be written is kept for the next flush. It returns how many keys it
// updated.
func (s *Service) FlushKeyUse(ctx context.Context) (int, error) {
	s.keyUse.mu.Lock()
	pending := s.keyUse.pending
	s.keyUse.pending = nil
	s.keyUse.mu.Unlock()
	n := 0
	var firstErr error
	for tenantID, byKey := range pending {
		err := s.store.Tx(store.WithTenant(ctx, tenantID), func(tx *gorm.DB) error {
			for id, at := range byKey {
				if err := tx.Model(&APIKey{}).Where("id = ? AND (last_used_at IS NULL OR last_used_at < ?)", id, at).
					Update("last_used_at", at).Error; err != nil {
					return err
				}
			}
			return nil
		})
		if err == nil {
			n += len(byKey)
			continue
		}
		if firstErr == nil {
			firstErr = err
		}
		s.keyUse.mu.Lock() // put them back, unless newer uses came meanwhile
		for id, at := range byKey {
			s.keyUse.addLocked(tenantID, id, at)
		}
		s.keyUse.mu.Unlock()
	}
	return n, firstErr
}

// RunKeyUseFlusher writes API keys' last use every interval until ctx ends,
// and once more then.
func (s *Service) RunKeyUseFlusher(ctx context.Context, every time.Duration, log *slog.Logger) {
	t := time.NewTicker(every)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			if _, err := s.FlushKeyUse(context.WithoutCancel(ctx)); err != nil {
				log.Warn("could not record API keys' last use at shutdown", "err", err)
			}
			return
		case <-t.C:
			if _, err := s.FlushKeyUse(ctx); err != nil {
				log.Warn("could not record API keys' last use; will retry", "err", err)
			}
		}
	}
}

// revokeUserKeysTx revokes every key of a user who lost access.
func (s *Service) revokeUserKeysTx(tx *gorm.DB, userID string, now time.Time) error {
	if err := tx.Model(&APIKey{}).Where("user_id = ? AND revoked_at IS NULL", userID).Update("revoked_at", now).Error; err != nil {
		return err
	}
	s.keys.evict(func(e *keyEntry) bool { return e.key.UserID == userID })
	return nil
}
