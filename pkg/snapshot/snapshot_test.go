package snapshot

import (
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"encoding/base64"
	"encoding/json"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/lestrrat-go/jwx/v3/jwa"
	"github.com/lestrrat-go/jwx/v3/jwk"
	"github.com/lestrrat-go/jwx/v3/jws"
	"github.com/lestrrat-go/jwx/v3/jwt"
)

const issuer = "https://tenantgate.test"

type signer struct {
	key  jwk.Key
	jwks []byte
}

func newSigner(t *testing.T) *signer {
	t.Helper()
	_, priv, _ := ed25519.GenerateKey(rand.Reader)
	k, err := jwk.Import(priv)
	if err != nil {
		t.Fatal(err)
	}
	_ = k.Set(jwk.KeyIDKey, "k1")
	_ = k.Set(jwk.AlgorithmKey, jwa.EdDSA())
	pub, _ := jwk.PublicKeyOf(k)
	set := jwk.NewSet()
	_ = set.AddKey(pub)
	raw, _ := json.Marshal(set)
	return &signer{key: k, jwks: raw}
}

func (s *signer) sign(t *testing.T, typ, iss string, snap Snapshot) []byte {
	t.Helper()
	tok, _ := jwt.NewBuilder().Issuer(iss).Subject(snap.TenantID).Claim("snapshot", snap).Build()
	hdr := jws.NewHeaders()
	_ = hdr.Set(jws.TypeKey, typ)
	raw, err := jwt.Sign(tok, jwt.WithKey(jwa.EdDSA(), s.key, jws.WithProtectedHeaders(hdr)))
	if err != nil {
		t.Fatal(err)
	}
	return raw
}

func snap(issued time.Time, ttl time.Duration) Snapshot {
	return Snapshot{TenantID: "t1", Plan: "pro", Status: "active", ValidFrom: issued, ValidUntil: issued.Add(ttl), IssuedAt: issued,
		TTL: int(ttl.Seconds()), Features: map[string]bool{"sso": true}, Quotas: map[string]Quota{"users": {Limit: 100, Period: "none"}}}
}

func TestVerify(t *testing.T) {
	s := newSigner(t)
	v, err := NewVerifier(s.jwks, issuer)
	if err != nil {
		t.Fatal(err)
	}
	now := time.Now().UTC().Truncate(time.Second)
	good := s.sign(t, Type, issuer, snap(now, 10*time.Minute))
	got, err := v.Verify(good)
	if err != nil || got.Plan != "pro" || !got.Allows("sso") || got.Quotas["users"].Limit != 100 {
		t.Fatalf("Verify(good) = %+v, %v", got, err)
	}
	// Tampered: the plan changed in the payload, signature kept.
	parts := strings.Split(string(good), ".")
	payload, _ := base64.RawURLEncoding.DecodeString(parts[1])
	parts[1] = base64.RawURLEncoding.EncodeToString([]byte(strings.Replace(string(payload), `"pro"`, `"enterprise"`, 1)))
	for name, raw := range map[string][]byte{
		"tampered":       []byte(strings.Join(parts, ".")),
		"wrong typ":      s.sign(t, "JWT", issuer, snap(now, time.Minute)),
		"wrong issuer":   s.sign(t, Type, "https://evil.test", snap(now, time.Minute)),
		"other key":      newSigner(t).sign(t, Type, issuer, snap(now, time.Minute)),
		"garbage":        []byte("not.a.jws"),
		"empty snapshot": s.sign(t, Type, issuer, Snapshot{}),
	} {
		if _, err := v.Verify(raw); !errors.Is(err, ErrInvalid) {
			t.Errorf("%s: Verify err = %v, want ErrInvalid", name, err)
		}
	}
}

func TestClientGrace(t *testing.T) {
	s := newSigner(t)
	v, _ := NewVerifier(s.jwks, issuer)
	start := time.Date(2026, 1, 1, 12, 0, 0, 0, time.UTC)
	now := start
	var next []byte
	var fail error
	c := NewClient(v, func(context.Context) ([]byte, error) { return next, fail }, Options{Grace: 30 * time.Minute, Now: func() time.Time { return now }})
	if _, _, err := c.Current(); err == nil {
		t.Fatal("a client with no snapshot answered")
	}
	next = s.sign(t, Type, issuer, snap(start, 10*time.Minute))
	if err := c.Refresh(context.Background()); err != nil {
		t.Fatal(err)
	}
	if _, mode, err := c.Current(); err != nil || mode != Valid {
		t.Fatalf("fresh: %v %v", mode, err)
	}
	// Refresh starts failing; past expiry the client says so: grace.
	fail = errors.New("tenantgate unreachable")
	_ = c.Refresh(context.Background())
	now = start.Add(15 * time.Minute)
	if s, mode, err := c.Current(); err != nil || mode != Grace || s.Plan != "pro" {
		t.Fatalf("in grace: %v %v", mode, err)
	}
	// Beyond grace: refused.
	now = start.Add(41 * time.Minute)
	if _, _, err := c.Current(); !errors.Is(err, ErrExpired) {
		t.Fatalf("beyond grace: %v, want ErrExpired", err)
	}
	// Refresh works again: valid again.
	fail = nil
	next = s.sign(t, Type, issuer, snap(now, 10*time.Minute))
	if err := c.Refresh(context.Background()); err != nil {
		t.Fatal(err)
	}
	if _, mode, err := c.Current(); err != nil || mode != Valid {
		t.Fatalf("after recovery: %v %v", mode, err)
	}
	// A replayed older snapshot does not roll the state back.
	old := snap(start, time.Hour)
	old.Plan = "enterprise"
	next = s.sign(t, Type, issuer, old)
	_ = c.Refresh(context.Background())
	if got, _, _ := c.Current(); got.Plan != "pro" {
		t.Errorf("a replayed older snapshot replaced the current one: %s", got.Plan)
	}
	// A tampered one is refused and changes nothing.
	next = []byte("x.y.z")
	if err := c.Refresh(context.Background()); err == nil {
		t.Error("refreshing with garbage succeeded")
	}
}
