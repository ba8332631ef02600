package identity

import (
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"encoding/json"
	"errors"
	"fmt"
	"sync"
	"time"

	"github.com/google/uuid"
	"github.com/lestrrat-go/jwx/v3/jwa"
	"github.com/lestrrat-go/jwx/v3/jwk"
	"github.com/lestrrat-go/jwx/v3/jws"
	"github.com/lestrrat-go/jwx/v3/jwt"
	"gorm.io/gorm"

	"github.com/tenantgate/tenantgate/internal/secret"
	"github.com/tenantgate/tenantgate/internal/store"
)

// signingKey is a row of signing_keys; the private key is sealed.
type signingKey struct {
	Kid        string `gorm:"primaryKey"`
	Alg        string
	PrivateKey string
	PublicJWK  string `gorm:"column:public_jwk"`
	Status     string
	CreatedAt  time.Time
	RetiredAt  *time.Time
}

func (signingKey) TableName() string { return "signing_keys" }

// Keys holds the signing key and the public key set (JWKS).
type Keys struct {
	mu     sync.RWMutex
	signer jwk.Key // private, with kid and alg
	public jwk.Set
}

// LoadKeys reads the active signing key from the database, creating an
// Ed25519 key on first start. Private keys are stored sealed under the box.
func LoadKeys(ctx context.Context, s *store.Store, box *secret.Box) (*Keys, error) {
	ctx = store.WithPlatform(ctx, "signing keys") // the server's own role has no access to signing_keys
	var rows []signingKey
	load := func() error {
		return s.Tx(ctx, func(tx *gorm.DB) error {
			return tx.Where("status = ?", "active").Order("created_at, kid").Find(&rows).Error
		})
	}
	if err := load(); err != nil {
		return nil, fmt.Errorf("read signing keys: %w", err)
	}
	if len(rows) == 0 {
		if err := createKey(ctx, s, box); err != nil {
			return nil, err
		}
		if err := load(); err != nil {
			return nil, err
		}
	}
	k := &Keys{public: jwk.NewSet()}
	for i, row := range rows {
		pub, err := jwk.ParseKey([]byte(row.PublicJWK))
		if err != nil {
			return nil, fmt.Errorf("signing key %s: %w", row.Kid, err)
		}
		if err := k.public.AddKey(pub); err != nil {
			return nil, err
		}
		if i > 0 {
			continue
		}
		raw, err := box.Open(row.PrivateKey, []byte("signing-key:"+row.Kid))
		if err != nil {
			return nil, fmt.Errorf("signing key %s: %w", row.Kid, err)
		}
		if len(raw) != ed25519.SeedSize {
			return nil, errors.New("signing key: bad seed length")
		}
		priv, err := jwk.Import(ed25519.NewKeyFromSeed(raw))
		if err != nil {
			return nil, err
		}
		if err := setKeyMeta(priv, row.Kid); err != nil {
			return nil, err
		}
		k.signer = priv
	}
	return k, nil
}

func setKeyMeta(key jwk.Key, kid string) error {
	if err := key.Set(jwk.KeyIDKey, kid); err != nil {
		return err
	}
	if err := key.Set(jwk.AlgorithmKey, jwa.EdDSA()); err != nil {
		return err
	}
	return key.Set(jwk.KeyUsageKey, "sig")
}

func createKey(ctx context.Context, s *store.Store, box *secret.Box) error {
	pub, priv, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		return err
	}
	kid := uuid.Must(uuid.NewV7()).String()
	pk, err := jwk.Import(pub)
	if err != nil {
		return err
	}
	if err := setKeyMeta(pk, kid); err != nil {
		return err
	}
	pubJSON, err := json.Marshal(pk)
	if err != nil {
		return err
	}
	row := signingKey{Kid: kid, Alg: "EdDSA", PrivateKey: box.Seal(priv.Seed(), []byte("signing-key:"+kid)),
		PublicJWK: string(pubJSON), Status: "active", CreatedAt: time.Now().UTC()}
	return s.Tx(ctx, func(tx *gorm.DB) error { return tx.Create(&row).Error })
}

// JWKS returns the public key set as JSON.
func (k *Keys) JWKS() ([]byte, error) {
	k.mu.RLock()
	defer k.mu.RUnlock()
	return json.Marshal(k.public)
}

func (k *Keys) current() (jwk.Key, jwk.Set) {
	k.mu.RLock()
	defer k.mu.RUnlock()
	return k.signer, k.public
}

// SignJWT signs claims as a JWT with the current key and the given "typ"
// header, for documents other than access tokens (entitlement snapshots).
// Verifiers tell the kinds apart by typ and by their required claims.
func (k *Keys) SignJWT(typ string, claims map[string]any) (string, error) {
	b := jwt.NewBuilder()
	for name, v := range claims {
		b = b.Claim(name, v)
	}
	tok, err := b.Build()
	if err != nil {
		return "", err
	}
	hdr := jws.NewHeaders()
	if err := hdr.Set(jws.TypeKey, typ); err != nil {
		return "", err
	}
	signer, _ := k.current()
	raw, err := jwt.Sign(tok, jwt.WithKey(jwa.EdDSA(), signer, jws.WithProtectedHeaders(hdr)))
	if err != nil {
		return "", err
	}
	return string(raw), nil
}

// HasSigningKeys reports whether the database holds signing keys, that is,
// secrets sealed under some master key. A database not migrated yet holds none.
func HasSigningKeys(ctx context.Context, s *store.Store) (bool, error) {
	var n int64
	// The platform role: the server's own has no access to signing_keys (and
	// PostgreSQL hides a table from a role without privileges on it).
	err := s.Tx(store.WithPlatform(ctx, "look for sealed secrets"), func(tx *gorm.DB) error {
		if !tx.Migrator().HasTable("signing_keys") {
			return nil
		}
		return tx.Model(&signingKey{}).Count(&n).Error
	})
	if err != nil {
		return false, fmt.Errorf("look for sealed secrets: %w", err)
	}
	return n > 0, nil
}
