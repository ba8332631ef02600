package identity

import (
	"crypto/sha256"
	"errors"
	"fmt"
	"strings"
	"sync"
	"time"

	"github.com/google/uuid"
	"github.com/lestrrat-go/jwx/v3/jwa"
	"github.com/lestrrat-go/jwx/v3/jwt"

	"github.com/tenantgate/tenantgate/internal/errs"
)

// Claims are the access token's claims (seed 004 JWTPayload, plus sid).
type Claims struct {
	Subject     string
	Tenant      string // tenant id; empty for operators
	Username    string
	Email       string
	Roles       []string
	Permissions []string
	SessionID   string
	AMR         []string // how the user authenticated: "pwd", "otp"
	Actor       string   // RFC 8693 "act": the operator impersonating the subject
	ReadOnly    bool     // an impersonation that may only read
	ID          string   // jti
	IssuedAt    time.Time
	Expiry      time.Time
}

// TokenConfig sets the issuer, audience and lifetimes.
type TokenConfig struct {
	Issuer     string
	Audience   string
	AccessTTL  time.Duration
	RefreshTTL time.Duration
}

// Tokens is the token answer of login, signup and refresh.
type Tokens struct {
	AccessToken  string `json:"accessToken"`
	RefreshToken string `json:"refreshToken"`
	TokenType    string `json:"tokenType"`
	ExpiresIn    int    `json:"expiresIn"`
}

// Signer issues and verifies access tokens.
type Signer struct {
	keys     *Keys
	cfg      TokenConfig
	now      func() time.Time
	verified *verifiedCache
}

// verifiedCache remembers tokens whose signature and claims were checked,
// by the SHA-256 of the exact token, until the token expires: a client
// reuses its access token for many requests, and Ed25519 verification is
// the costliest step of authentication. Revocation is checked per request
// elsewhere; expiry is checked again on every hit.
type verifiedCache struct {
	mu sync.Mutex
	m  map[[32]byte]*Claims
}

func (c *verifiedCache) get(k [32]byte) *Claims {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.m[k]
}

func (c *verifiedCache) put(k [32]byte, cl *Claims) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if len(c.m) >= 50000 {
		clear(c.m)
	}
	c.m[k] = cl
}

// NewSigner builds a Signer.
func NewSigner(keys *Keys, cfg TokenConfig) *Signer {
	return &Signer{keys: keys, cfg: cfg, now: time.Now, verified: &verifiedCache{m: map[[32]byte]*Claims{}}}
}

// Config returns the token configuration.
func (s *Signer) Config() TokenConfig { return s.cfg }

// Keys returns the key set.
func (s *Signer) Keys() *Keys { return s.keys }

// Sign issues an access token for c, filling iat, exp and jti.
func (s *Signer) Sign(c Claims) (string, Claims, error) {
	now := s.now().UTC().Truncate(time.Second)
	c.IssuedAt, c.Expiry, c.ID = now, now.Add(s.cfg.AccessTTL), uuid.Must(uuid.NewV7()).String()
	b := jwt.NewBuilder().Subject(c.Subject).Issuer(s.cfg.Issuer).Audience([]string{s.cfg.Audience}).
		IssuedAt(now).NotBefore(now).Expiration(c.Expiry).JwtID(c.ID).
		Claim("username", c.Username).Claim("email", c.Email).
		Claim("roles", nonNil(c.Roles)).Claim("permissions", nonNil(c.Permissions))
	if c.Tenant != "" {
		b = b.Claim("tenant", c.Tenant)
	}
	if c.SessionID != "" {
		b = b.Claim("sid", c.SessionID)
	}
	if len(c.AMR) > 0 {
		b = b.Claim("amr", c.AMR)
	}
	if c.Actor != "" {
		b = b.Claim("act", map[string]any{"sub": c.Actor, "typ": "operator"})
		if c.ReadOnly {
			b = b.Claim("read_only", true)
		}
	}
	tok, err := b.Build()
	if err != nil {
		return "", c, err
	}
	signer, _ := s.keys.current()
	raw, err := jwt.Sign(tok, jwt.WithKey(jwa.EdDSA(), signer))
	if err != nil {
		return "", c, err
	}
	return string(raw), c, nil
}

// Verify checks an access token's signature (by kid, against our key set),
// issuer, audience, expiry and not-before, and returns its claims.
func (s *Signer) Verify(raw string) (*Claims, error) {
	if strings.Count(raw, ".") != 2 || len(raw) > 8192 {
		return nil, errs.Unauthenticated(errs.CodeTokenInvalid, "the bearer token is not a JWT")
	}
	key := sha256.Sum256([]byte(raw))
	if s.verified != nil {
		if c := s.verified.get(key); c != nil {
			if !s.now().Before(c.Expiry.Add(30 * time.Second)) {
				return nil, errs.Unauthenticated(errs.CodeTokenExpired, "the access token has expired; refresh it or log in again")
			}
			cp := *c
			return &cp, nil
		}
	}
	_, set := s.keys.current()
	tok, err := jwt.ParseString(raw,
		jwt.WithKeySet(set),
		jwt.WithValidate(true),
		jwt.WithIssuer(s.cfg.Issuer),
		jwt.WithAudience(s.cfg.Audience),
		jwt.WithAcceptableSkew(30*time.Second),
		jwt.WithClock(jwt.ClockFunc(s.now)),
		jwt.WithRequiredClaim("jti"),
		jwt.WithRequiredClaim("exp"),
	)
	if err != nil {
		if errors.Is(err, jwt.TokenExpiredError()) {
			return nil, errs.Unauthenticated(errs.CodeTokenExpired, "the access token has expired; refresh it or log in again")
		}
		return nil, &errs.Error{Kind: errs.KindUnauthenticated, Code: errs.CodeTokenInvalid,
			Msg: "the access token is not valid", Err: err}
	}
	c := &Claims{}
	c.Subject, _ = tok.Subject()
	c.ID, _ = tok.JwtID()
	c.IssuedAt, _ = tok.IssuedAt()
	c.Expiry, _ = tok.Expiration()
	c.Tenant = stringClaim(tok, "tenant")
	c.Username = stringClaim(tok, "username")
	c.Email = stringClaim(tok, "email")
	c.SessionID = stringClaim(tok, "sid")
	c.Roles = listClaim(tok, "roles")
	c.Permissions = listClaim(tok, "permissions")
	c.AMR = listClaim(tok, "amr")
	var act any
	if err := tok.Get("act", &act); err == nil {
		if m, ok := act.(map[string]any); ok {
			c.Actor, _ = m["sub"].(string)
		}
		if c.Actor == "" {
			return nil, errs.Unauthenticated(errs.CodeTokenInvalid, "the access token's act claim is malformed")
		}
		var ro any
		if err := tok.Get("read_only", &ro); err == nil {
			c.ReadOnly, _ = ro.(bool)
		}
	}
	if c.Subject == "" {
		return nil, errs.Unauthenticated(errs.CodeTokenInvalid, "the access token has no subject")
	}
	if s.verified != nil {
		cp := *c
		s.verified.put(key, &cp)
	}
	return c, nil
}

func stringClaim(t jwt.Token, name string) string {
	var v any
	if err := t.Get(name, &v); err != nil {
		return ""
	}
	s, _ := v.(string)
	return s
}

func listClaim(t jwt.Token, name string) []string {
	var v any
	if err := t.Get(name, &v); err != nil {
		return nil
	}
	switch x := v.(type) {
	case []string:
		return x
	case []any:
		out := make([]string, 0, len(x))
		for _, e := range x {
			if s, ok := e.(string); ok {
				out = append(out, s)
			}
		}
		return out
	}
	return nil
}

func nonNil(s []string) []string {
	if s == nil {
		return []string{}
	}
	return s
}

// String describes claims for logs (no token material).
func (c *Claims) String() string {
	return fmt.Sprintf("sub=%s tenant=%s jti=%s", c.Subject, c.Tenant, c.ID)
}
