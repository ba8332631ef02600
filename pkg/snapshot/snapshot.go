// Package snapshot verifies tenantgate's signed entitlement snapshots
// offline. A dedicated instance (or any service) that must enforce a
// tenant's plan without calling tenantgate on every request fetches a
// snapshot, verifies it against tenantgate's public JWKS, refreshes it
// before it expires, and, when refreshing fails, keeps working on the last
// good snapshot in an explicit grace mode for a bounded time.
//
//	v, _ := snapshot.NewVerifier(jwksJSON, "https://tenantgate.example.com")
//	c := snapshot.NewClient(v, fetch, snapshot.Options{Grace: time.Hour})
//	go c.Run(ctx)
//	snap, mode, err := c.Current() // mode is Valid or Grace; err once grace is over
package snapshot

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"time"

	"github.com/lestrrat-go/jwx/v3/jwk"
	"github.com/lestrrat-go/jwx/v3/jws"
	"github.com/lestrrat-go/jwx/v3/jwt"
)

// Type is the JWS "typ" of a snapshot.
const Type = "tg-entitlements+jwt"

// Quota is one limit with its use (Used is nil when not metered).
type Quota struct {
	Limit  int64  `json:"limit"`
	Used   *int64 `json:"used"`
	Period string `json:"period"` // none | hour | month
}

// Snapshot is seed 001's EntitlementSnapshot.
type Snapshot struct {
	TenantID   string           `json:"tenantId"`
	Plan       string           `json:"plan"`
	Status     string           `json:"status"`
	Isolation  string           `json:"isolation"`
	ValidFrom  time.Time        `json:"validFrom"`
	ValidUntil time.Time        `json:"validUntil"`
	Features   map[string]bool  `json:"features"`
	Quotas     map[string]Quota `json:"quotas"`
	IssuedAt   time.Time        `json:"issuedAt"`
	TTL        int              `json:"ttl"` // seconds
}

// Allows reports whether the snapshot grants a feature.
func (s *Snapshot) Allows(feature string) bool { return s.Features[feature] }

// Verifier checks signatures against tenantgate's published keys.
type Verifier struct {
	keys   jwk.Set
	issuer string
}

// NewVerifier takes the JSON of tenantgate's /.well-known/jwks.json and its issuer URL.
func NewVerifier(jwksJSON []byte, issuer string) (*Verifier, error) {
	set, err := jwk.Parse(jwksJSON)
	if err != nil {
		return nil, fmt.Errorf("snapshot: the JWKS is not valid: %w", err)
	}
	return &Verifier{keys: set, issuer: issuer}, nil
}

// Errors of verification.
var (
	ErrInvalid = errors.New("snapshot: not a valid signed entitlement snapshot")
	ErrExpired = errors.New("snapshot: expired")
)

// Verify checks a snapshot's signature, type and issuer. It does not judge
// expiry: Client does, with the grace period.
func (v *Verifier) Verify(raw []byte) (*Snapshot, error) {
	msg, err := jws.Parse(raw)
	if err != nil || len(msg.Signatures()) != 1 {
		return nil, ErrInvalid
	}
	if typ, ok := msg.Signatures()[0].ProtectedHeaders().Type(); !ok || typ != Type {
		return nil, fmt.Errorf("%w: wrong typ", ErrInvalid)
	}
	tok, err := jwt.Parse(raw, jwt.WithKeySet(v.keys), jwt.WithValidate(false))
	if err != nil {
		return nil, fmt.Errorf("%w: %v", ErrInvalid, err)
	}
	if iss, _ := tok.Issuer(); iss != v.issuer {
		return nil, fmt.Errorf("%w: issued by %q", ErrInvalid, iss)
	}
	var s Snapshot
	if err := tok.Get("snapshot", &s); err != nil {
		var m map[string]any
		if err2 := tok.Get("snapshot", &m); err2 != nil {
			return nil, fmt.Errorf("%w: no snapshot claim", ErrInvalid)
		}
		if err := remarshal(m, &s); err != nil {
			return nil, fmt.Errorf("%w: %v", ErrInvalid, err)
		}
	}
	if s.TenantID == "" || s.ValidUntil.IsZero() {
		return nil, fmt.Errorf("%w: incomplete snapshot", ErrInvalid)
	}
	return &s, nil
}

// Mode says how far a snapshot can be trusted.
type Mode int

// Modes.
const (
	Valid Mode = iota // within its validity
	Grace             // expired, refresh failing, within the grace period
)

func (m Mode) String() string { return map[Mode]string{Valid: "valid", Grace: "grace"}[m] }

// Options tune the client.
type Options struct {
	Grace         time.Duration // how long an expired snapshot is still used while refresh fails (default 1h)
	RefreshBefore time.Duration // refresh this long before expiry (default: a fifth of the ttl)
	Now           func() time.Time
}

// Client keeps a current snapshot.
type Client struct {
	v     *Verifier
	fetch func(ctx context.Context) ([]byte, error)
	opt   Options

	mu      sync.Mutex
	current *Snapshot
	lastErr error
}

// NewClient builds a client; fetch returns the raw snapshot from tenantgate
// (GET /api/v1/tenants/{id}/entitlement-snapshot).
func NewClient(v *Verifier, fetch func(ctx context.Context) ([]byte, error), o Options) *Client {
	if o.Grace == 0 {
		o.Grace = time.Hour
	}
	if o.Now == nil {
		o.Now = time.Now
	}
	return &Client{v: v, fetch: fetch, opt: o}
}

// Refresh fetches and verifies a new snapshot. A snapshot older than the one
// held is ignored, so a replayed old snapshot cannot roll entitlements back.
func (c *Client) Refresh(ctx context.Context) error {
	raw, err := c.fetch(ctx)
	if err == nil {
		var s *Snapshot
		if s, err = c.v.Verify(raw); err == nil {
			c.mu.Lock()
			if c.current == nil || !s.IssuedAt.Before(c.current.IssuedAt) {
				c.current = s
			}
			c.lastErr = nil
			c.mu.Unlock()
			return nil
		}
	}
	c.mu.Lock()
	c.lastErr = err
	c.mu.Unlock()
	return err
}

// Current returns the snapshot to enforce and its mode, or an error when
// there is none or it expired beyond the grace period.
func (c *Client) Current() (*Snapshot, Mode, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	now := c.opt.Now()
	switch {
	case c.current == nil:
		if c.lastErr != nil {
			return nil, 0, fmt.Errorf("snapshot: none yet: %w", c.lastErr)
		}
		return nil, 0, ErrInvalid
	case now.Before(c.current.ValidUntil):
		return c.current, Valid, nil
	case now.Before(c.current.ValidUntil.Add(c.opt.Grace)):
		return c.current, Grace, nil
	}
	return nil, 0, fmt.Errorf("%w beyond the grace period at %s", ErrExpired, c.current.ValidUntil.Add(c.opt.Grace).Format(time.RFC3339))
}

// Run refreshes before expiry until ctx ends, retrying failures every
// few seconds (the grace period covers the gap).
func (c *Client) Run(ctx context.Context) {
	for {
		wait := 5 * time.Second
		if err := c.Refresh(ctx); err == nil {
			c.mu.Lock()
			ttl := time.Duration(c.current.TTL) * time.Second
			before := c.opt.RefreshBefore
			if before == 0 {
				before = ttl / 5
			}
			wait = max(time.Until(c.current.ValidUntil)-before, time.Second)
			c.mu.Unlock()
		}
		select {
		case <-ctx.Done():
			return
		case <-time.After(wait):
		}
	}
}
