package identity

import (
	"crypto/ed25519"
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"crypto/sha512"
	"encoding/base64"
	"encoding/json"
	"hash"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/google/go-cmp/cmp/cmpopts"
	"github.com/lestrrat-go/jwx/v3/jwk"

	"github.com/tenantgate/tenantgate/internal/errs"
	"github.com/tenantgate/tenantgate/internal/store"
)

const (
	testIssuer   = "https://issuer.test"
	testAudience = "tenantgate"
)

// testKey is an Ed25519 signing key as the package holds it.
type testKey struct {
	kid    string
	priv   ed25519.PrivateKey
	pub    ed25519.PublicKey
	pubJWK jwk.Key
	keys   *Keys
}

func newTestKey(t testing.TB, kid string) *testKey {
	t.Helper()
	pub, priv, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	sk, err := jwk.Import(priv)
	if err != nil {
		t.Fatal(err)
	}
	if err := setKeyMeta(sk, kid); err != nil {
		t.Fatal(err)
	}
	pk, err := jwk.PublicKeyOf(sk)
	if err != nil {
		t.Fatal(err)
	}
	set := jwk.NewSet()
	if err := set.AddKey(pk); err != nil {
		t.Fatal(err)
	}
	return &testKey{kid: kid, priv: priv, pub: pub, pubJWK: pk, keys: &Keys{signer: sk, public: set}}
}

func testConfig() TokenConfig {
	return TokenConfig{Issuer: testIssuer, Audience: testAudience, AccessTTL: 15 * time.Minute, RefreshTTL: time.Hour}
}

// at returns a copy of s whose clock is fixed at t.
func at(s *Signer, t time.Time) *Signer {
	c := *s
	c.now = func() time.Time { return t }
	return &c
}

func testClaims() Claims {
	return Claims{
		Subject:     "0190a5c2-7d7b-7c3e-8f00-000000000001",
		Tenant:      "0190a5c2-7d7b-7c3e-8f00-0000000000aa",
		Username:    "ann",
		Email:       "ann@acme.test",
		Roles:       []string{"admin", "member"},
		Permissions: []string{"users:read", "users:write"},
		SessionID:   "0190a5c2-7d7b-7c3e-8f00-0000000000bb",
	}
}

func mustSign(t testing.TB, s *Signer, c Claims) string {
	t.Helper()
	tok, _, err := s.Sign(c)
	if err != nil {
		t.Fatalf("Sign: %v", err)
	}
	return tok
}

var b64 = base64.RawURLEncoding

func segment(t testing.TB, v any) string {
	t.Helper()
	b, err := json.Marshal(v)
	if err != nil {
		t.Fatal(err)
	}
	return b64.EncodeToString(b)
}

// payload is a valid claim set for testConfig at now.
func payload(now time.Time) map[string]any {
	return map[string]any{
		"iss": testIssuer, "aud": []string{testAudience}, "sub": "0190a5c2-7d7b-7c3e-8f00-000000000001",
		"tenant": "0190a5c2-7d7b-7c3e-8f00-0000000000aa", "iat": now.Unix(), "nbf": now.Unix(),
		"exp": now.Add(15 * time.Minute).Unix(), "jti": "0190a5c2-7d7b-7c3e-8f00-0000000000cc",
		"roles": []string{"owner"}, "permissions": []string{"*"},
	}
}

// handBuilt assembles a JWS compact token; sign gets the signing input.
func handBuilt(t testing.TB, header, claims map[string]any, sign func(input []byte) []byte) string {
	t.Helper()
	input := segment(t, header) + "." + segment(t, claims)
	return input + "." + b64.EncodeToString(sign([]byte(input)))
}

func hs256(secret []byte) func([]byte) []byte { return hmacSig(sha256.New, secret) }

func hmacSig(h func() hash.Hash, secret []byte) func([]byte) []byte {
	return func(in []byte) []byte {
		m := hmac.New(h, secret)
		m.Write(in)
		return m.Sum(nil)
	}
}

// wantRefused checks that Verify refused tok with an unauthenticated error of code.
func wantRefused(t *testing.T, s *Signer, tok, code string) {
	t.Helper()
	c, err := s.Verify(tok)
	if err == nil {
		t.Fatalf("Verify(%.80q) = %v, nil; want refusal %s", tok, c, code)
	}
	if c != nil {
		t.Errorf("Verify(%.80q) returned claims %v with error %v", tok, c, err)
	}
	e, ok := errs.As(err)
	if !ok {
		t.Fatalf("Verify(%.80q) error = %v (%T), want an *errs.Error", tok, err, err)
	}
	if e.Kind != errs.KindUnauthenticated || e.Code != code {
		t.Errorf("Verify(%.80q) kind, code = %d, %s; want %d, %s (%v)", tok, e.Kind, e.Code, errs.KindUnauthenticated, code, err)
	}
}

func TestSignVerifyRoundTrip(t *testing.T) {
	k := newTestKey(t, "kid-1")
	s := NewSigner(k.keys, testConfig())
	operator := testClaims()
	operator.Tenant, operator.SessionID, operator.Roles, operator.Permissions = "", "", nil, nil
	for name, in := range map[string]Claims{"tenant user": testClaims(), "operator": operator} {
		t.Run(name, func(t *testing.T) {
			tok, signed, err := s.Sign(in)
			if err != nil {
				t.Fatalf("Sign: %v", err)
			}
			if signed.ID == "" || signed.IssuedAt.IsZero() || !signed.Expiry.Equal(signed.IssuedAt.Add(15*time.Minute)) {
				t.Errorf("Sign filled id %q, iat %v, exp %v; want a jti and exp = iat+15m", signed.ID, signed.IssuedAt, signed.Expiry)
			}
			got, err := s.Verify(tok)
			if err != nil {
				t.Fatalf("Verify(own token) = %v", err)
			}
			if diff := cmp.Diff(*got, signed, cmpopts.EquateEmpty()); diff != "" {
				t.Errorf("Verify claims mismatch (-got +want):\n%s", diff)
			}
			want := in
			want.ID, want.IssuedAt, want.Expiry = got.ID, got.IssuedAt, got.Expiry
			if diff := cmp.Diff(*got, want, cmpopts.EquateEmpty()); diff != "" {
				t.Errorf("Verify claims differ from the input (-got +want):\n%s", diff)
			}
		})
	}
}

// TestHandBuiltControl proves the hand-built tokens below are refused for
// their signature alone: the same header and payload, signed properly, pass.
func TestHandBuiltControl(t *testing.T) {
	k := newTestKey(t, "kid-1")
	s := NewSigner(k.keys, testConfig())
	tok := handBuilt(t, map[string]any{"alg": "EdDSA", "typ": "JWT", "kid": k.kid}, payload(time.Now()),
		func(in []byte) []byte { return ed25519.Sign(k.priv, in) })
	c, err := s.Verify(tok)
	if err != nil {
		t.Fatalf("Verify(hand-built EdDSA token) = %v, want success", err)
	}
	if c.Tenant != "0190a5c2-7d7b-7c3e-8f00-0000000000aa" {
		t.Errorf("hand-built token tenant = %q", c.Tenant)
	}
}

func TestVerifyRefuses(t *testing.T) {
	k := newTestKey(t, "kid-1")
	s := NewSigner(k.keys, testConfig())
	now := time.Now()
	good := mustSign(t, s, testClaims())
	hdr := func(alg string) map[string]any { return map[string]any{"alg": alg, "typ": "JWT", "kid": k.kid} }

	jwkJSON, err := json.Marshal(k.pubJWK)
	if err != nil {
		t.Fatal(err)
	}
	jwksJSON, err := k.keys.JWKS()
	if err != nil {
		t.Fatal(err)
	}

	other := newTestKey(t, "kid-2")
	sameKid := newTestKey(t, k.kid) // an attacker's key that claims our kid

	otherIssuer := testConfig()
	otherIssuer.Issuer = "https://evil.test"
	otherAudience := testConfig()
	otherAudience.Audience = "another-service"

	parts := strings.Split(good, ".")
	tampered := func(t *testing.T) string {
		raw, err := b64.DecodeString(parts[1])
		if err != nil {
			t.Fatal(err)
		}
		var m map[string]any
		if err := json.Unmarshal(raw, &m); err != nil {
			t.Fatal(err)
		}
		if m["tenant"] != testClaims().Tenant {
			t.Fatalf("payload tenant = %v, want %s", m["tenant"], testClaims().Tenant)
		}
		m["tenant"] = "0190a5c2-7d7b-7c3e-8f00-0000000000ff"
		return parts[0] + "." + segment(t, m) + "." + parts[2]
	}

	embeddedJWK := func(t *testing.T) string {
		h := hdr("EdDSA")
		h["kid"] = k.kid
		h["jwk"] = sameKid.pubJWK
		return handBuilt(t, h, payload(now), func(in []byte) []byte { return ed25519.Sign(sameKid.priv, in) })
	}

	tests := []struct {
		name string
		tok  func(t *testing.T) string
		code string
	}{
		{"alg none", func(t *testing.T) string {
			return handBuilt(t, hdr("none"), payload(now), func([]byte) []byte { return nil })
		}, errs.CodeTokenInvalid},
		{"alg none with a real signature", func(t *testing.T) string {
			p := strings.Split(handBuilt(t, hdr("none"), payload(now), func([]byte) []byte { return nil }), ".")
			return p[0] + "." + p[1] + "." + parts[2]
		}, errs.CodeTokenInvalid},
		{"alg NONE", func(t *testing.T) string {
			return handBuilt(t, hdr("NONE"), payload(now), func([]byte) []byte { return nil })
		}, errs.CodeTokenInvalid},
		{"HS256 keyed with raw public key", func(t *testing.T) string {
			return handBuilt(t, hdr("HS256"), payload(now), hs256(k.pub))
		}, errs.CodeTokenInvalid},
		{"HS256 keyed with public JWK JSON", func(t *testing.T) string {
			return handBuilt(t, hdr("HS256"), payload(now), hs256(jwkJSON))
		}, errs.CodeTokenInvalid},
		{"HS256 keyed with JWKS JSON", func(t *testing.T) string {
			return handBuilt(t, hdr("HS256"), payload(now), hs256(jwksJSON))
		}, errs.CodeTokenInvalid},
		{"HS512 keyed with raw public key", func(t *testing.T) string {
			return handBuilt(t, hdr("HS512"), payload(now), hmacSig(sha512.New, k.pub))
		}, errs.CodeTokenInvalid},
		{"expired", func(t *testing.T) string {
			return mustSign(t, at(s, now.Add(-time.Hour)), testClaims())
		}, errs.CodeTokenExpired},
		{"expired beyond skew", func(t *testing.T) string {
			return mustSign(t, at(s, now.Add(-15*time.Minute-45*time.Second)), testClaims())
		}, errs.CodeTokenExpired},
		{"not yet valid", func(t *testing.T) string {
			return mustSign(t, at(s, now.Add(10*time.Minute)), testClaims())
		}, errs.CodeTokenInvalid},
		{"not yet valid beyond skew", func(t *testing.T) string {
			return mustSign(t, at(s, now.Add(45*time.Second)), testClaims())
		}, errs.CodeTokenInvalid},
		{"wrong issuer", func(t *testing.T) string {
			return mustSign(t, NewSigner(k.keys, otherIssuer), testClaims())
		}, errs.CodeTokenInvalid},
		{"wrong audience", func(t *testing.T) string {
			return mustSign(t, NewSigner(k.keys, otherAudience), testClaims())
		}, errs.CodeTokenInvalid},
		{"unknown kid", func(t *testing.T) string {
			return mustSign(t, NewSigner(other.keys, testConfig()), testClaims())
		}, errs.CodeTokenInvalid},
		{"foreign key with our kid", func(t *testing.T) string {
			return mustSign(t, NewSigner(sameKid.keys, testConfig()), testClaims())
		}, errs.CodeTokenInvalid},
		{"foreign key embedded in header", embeddedJWK, errs.CodeTokenInvalid},
		{"no kid", func(t *testing.T) string {
			return handBuilt(t, map[string]any{"alg": "EdDSA", "typ": "JWT"}, payload(now),
				func(in []byte) []byte { return ed25519.Sign(k.priv, in) })
		}, errs.CodeTokenInvalid},
		{"no subject", func(t *testing.T) string {
			p := payload(now)
			delete(p, "sub")
			return handBuilt(t, hdr("EdDSA"), p, func(in []byte) []byte { return ed25519.Sign(k.priv, in) })
		}, errs.CodeTokenInvalid},
		{"no jti", func(t *testing.T) string {
			p := payload(now)
			delete(p, "jti")
			return handBuilt(t, hdr("EdDSA"), p, func(in []byte) []byte { return ed25519.Sign(k.priv, in) })
		}, errs.CodeTokenInvalid},
		{"no exp", func(t *testing.T) string {
			p := payload(now)
			delete(p, "exp")
			return handBuilt(t, hdr("EdDSA"), p, func(in []byte) []byte { return ed25519.Sign(k.priv, in) })
		}, errs.CodeTokenInvalid},
		{"tampered tenant", tampered, errs.CodeTokenInvalid},
		{"signature from another token", func(t *testing.T) string {
			p := strings.Split(mustSign(t, s, Claims{Subject: "someone-else"}), ".")
			return parts[0] + "." + parts[1] + "." + p[2]
		}, errs.CodeTokenInvalid},
		{"flipped signature bit", func(t *testing.T) string {
			sig, err := b64.DecodeString(parts[2])
			if err != nil {
				t.Fatal(err)
			}
			sig[0] ^= 1
			return parts[0] + "." + parts[1] + "." + b64.EncodeToString(sig)
		}, errs.CodeTokenInvalid},
		{"truncated signature", func(*testing.T) string { return good[:len(good)-10] }, errs.CodeTokenInvalid},
		{"empty signature", func(*testing.T) string { return parts[0] + "." + parts[1] + "." }, errs.CodeTokenInvalid},
		{"two segments", func(*testing.T) string { return parts[0] + "." + parts[1] }, errs.CodeTokenInvalid},
		{"four segments", func(*testing.T) string { return good + ".x" }, errs.CodeTokenInvalid},
		{"half a token", func(*testing.T) string { return good[:len(good)/2] }, errs.CodeTokenInvalid},
		{"bearer prefix", func(*testing.T) string { return "Bearer " + good }, errs.CodeTokenInvalid},
		{"empty", func(*testing.T) string { return "" }, errs.CodeTokenInvalid},
		{"dots only", func(*testing.T) string { return ".." }, errs.CodeTokenInvalid},
		{"garbage", func(*testing.T) string { return "not-a-jwt" }, errs.CodeTokenInvalid},
		{"garbage segments", func(*testing.T) string { return "a.b.c" }, errs.CodeTokenInvalid},
		{"binary", func(*testing.T) string { return "\x00\xff.\x01.\x02" }, errs.CodeTokenInvalid},
		{"json header only", func(*testing.T) string { return `{"alg":"none"}..` }, errs.CodeTokenInvalid},
		{"oversized", func(*testing.T) string { return parts[0] + "." + strings.Repeat("A", 9000) + "." + parts[2] }, errs.CodeTokenInvalid},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			wantRefused(t, s, tt.tok(t), tt.code)
		})
	}

	// The good token and tokens within the 30s skew are still accepted, so the
	// refusals above are not a broken signer.
	for name, tok := range map[string]string{
		"good":                     good,
		"issued 20s in the future": mustSign(t, at(s, now.Add(20*time.Second)), testClaims()),
		"expired 20s ago":          mustSign(t, at(s, now.Add(-15*time.Minute-20*time.Second)), testClaims()),
	} {
		if _, err := s.Verify(tok); err != nil {
			t.Errorf("Verify(%s) = %v, want success", name, err)
		}
	}
}

func FuzzVerify(f *testing.F) {
	k := newTestKey(f, "kid-1")
	s := NewSigner(k.keys, testConfig())
	now := time.Now()
	good := mustSign(f, s, testClaims())
	parts := strings.Split(good, ".")
	hdr := func(alg string) map[string]any { return map[string]any{"alg": alg, "typ": "JWT", "kid": k.kid} }
	seeds := []string{
		good,
		good[:len(good)-1],
		good + "A",
		parts[0] + "." + parts[1] + ".",
		handBuilt(f, hdr("none"), payload(now), func([]byte) []byte { return nil }),
		handBuilt(f, hdr("HS256"), payload(now), hs256(k.pub)),
		handBuilt(f, hdr("EdDSA"), payload(now), func(in []byte) []byte { return ed25519.Sign(k.priv, in) }),
		mustSign(f, at(s, now.Add(-time.Hour)), testClaims()),
		"", "..", "a.b.c", "not-a-jwt", `eyJhbGciOiJub25lIn0.e30.`,
	}
	for _, seed := range seeds {
		f.Add(seed)
	}
	f.Fuzz(func(t *testing.T, tok string) {
		c, err := s.Verify(tok)
		if err != nil {
			if c != nil {
				t.Errorf("Verify(%q) returned claims with error %v", tok, err)
			}
			e, ok := errs.As(err)
			if !ok {
				t.Fatalf("Verify(%q) error = %v (%T), want an *errs.Error", tok, err, err)
			}
			if e.Kind != errs.KindUnauthenticated || (e.Code != errs.CodeTokenInvalid && e.Code != errs.CodeTokenExpired) {
				t.Errorf("Verify(%q) kind, code = %d, %s; want %d and TOKEN_INVALID or TOKEN_EXPIRED", tok, e.Kind, e.Code, errs.KindUnauthenticated)
			}
			return
		}
		if c == nil || c.Subject == "" {
			t.Fatalf("Verify(%q) accepted a token without a subject: %v", tok, c)
		}
		if c.Expiry.Before(time.Now().Add(-31 * time.Second)) {
			t.Errorf("Verify(%q) accepted a token that expired at %v", tok, c.Expiry)
		}
	})
}

func TestRefreshTokenTenant(t *testing.T) {
	const id = "0190a5c2-7d7b-7c3e-8f00-123456789abc"
	hexID := strings.ReplaceAll(id, "-", "")
	secret := strings.Repeat("s", 43)
	tests := []struct {
		name, tok, want string
		wantOK          bool
	}{
		{"tenant", "tgr_" + hexID + "_" + secret, id, true},
		{"platform", "tgr_" + strings.Repeat("0", 32) + "_" + secret, "00000000-0000-0000-0000-000000000000", true},
		{"secret with url-safe base64", "tgr_" + hexID + "_" + "AZaz09-_" + strings.Repeat("x", 35), id, true},
		{"empty", "", "", false},
		{"prefix only", "tgr_", "", false},
		{"no prefix", hexID + "_" + secret, "", false},
		{"wrong prefix", "tgx_" + hexID + "_" + secret, "", false},
		{"upper-case prefix", "TGR_" + hexID + "_" + secret, "", false},
		{"access token prefix", "tga_" + hexID + "_" + secret, "", false},
		{"31 hex", "tgr_" + hexID[:31] + "_" + secret + "s", "", false},
		{"33 hex", "tgr_" + hexID + "a_" + secret[:42], "", false},
		{"secret 42", "tgr_" + hexID + "_" + secret[:42], "", false},
		{"secret 44", "tgr_" + hexID + "_" + secret + "s", "", false},
		{"missing underscore", "tgr_" + hexID + "x" + secret, "", false},
		{"underscore dropped", "tgr_" + hexID + secret + "s", "", false},
		{"dashed uuid", "tgr_" + id + "_" + secret[:39], "", false},
		{"non-hex", "tgr_" + "g" + hexID[1:] + "_" + secret, "", false},
		{"upper-case hex", "tgr_" + strings.ToUpper(hexID) + "_" + secret, "", false},
		{"space in hex", "tgr_" + " " + hexID[1:] + "_" + secret, "", false},
		{"unicode", "tgr_" + "é" + hexID[2:] + "_" + secret, "", false},
	}
	for _, tt := range tests {
		got, ok := RefreshTokenTenant(tt.tok)
		if got != tt.want || ok != tt.wantOK {
			t.Errorf("%s: RefreshTokenTenant(%q) = %q, %v; want %q, %v", tt.name, tt.tok, got, ok, tt.want, tt.wantOK)
		}
	}
}

func FuzzRefreshTokenTenant(f *testing.F) {
	hexID := "0190a5c27d7b7c3e8f00123456789abc"
	secret := strings.Repeat("s", 43)
	for _, s := range []string{
		"tgr_" + hexID + "_" + secret, "tgr_" + strings.Repeat("0", 32) + "_" + secret, "tgr_" + strings.ToUpper(hexID) + "_" + secret,
		"tgx_" + hexID + "_" + secret, "tgr_" + hexID + "x" + secret, "tgr_" + hexID + "_" + secret[:42], "", "tgr_",
		"tgr_" + "0190a5c2-7d7b-7c3e-8f00-123456789abc" + "_" + secret[:39],
	} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, tok string) {
		id, ok := RefreshTokenTenant(tok)
		if !ok {
			if id != "" {
				t.Errorf("RefreshTokenTenant(%q) = %q, false; want an empty id", tok, id)
			}
			return
		}
		if !store.ValidID(id) {
			t.Errorf("RefreshTokenTenant(%q) = %q, not a canonical UUID", tok, id)
		}
		if len(tok) != 4+32+1+43 || !strings.HasPrefix(tok, "tgr_") || tok[36] != '_' {
			t.Errorf("RefreshTokenTenant(%q) accepted a token of the wrong shape", tok)
		}
		if got := strings.ReplaceAll(id, "-", ""); got != tok[4:36] {
			t.Errorf("RefreshTokenTenant(%q) = %q, which is not the token's tenant part %q", tok, id, tok[4:36])
		}
	})
}

// BenchmarkVerify measures verifying an access token seen before (the cache hit).
func BenchmarkVerify(b *testing.B) {
	s := NewSigner(newTestKey(b, "bench").keys, testConfig())
	tok := mustSign(b, s, testClaims())
	b.ReportAllocs()
	for b.Loop() {
		if _, err := s.Verify(tok); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkVerifyCold measures a first verification (no cache): Ed25519 and claims.
func BenchmarkVerifyCold(b *testing.B) {
	s := NewSigner(newTestKey(b, "bench").keys, testConfig())
	s.verified = nil
	tok := mustSign(b, s, testClaims())
	b.ReportAllocs()
	for b.Loop() {
		if _, err := s.Verify(tok); err != nil {
			b.Fatal(err)
		}
	}
}
