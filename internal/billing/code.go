package billing

import (
	"context"
	"crypto/rand"
	"encoding/json"
	"fmt"
	"strings"
	"time"

	"github.com/google/uuid"
	"gorm.io/gorm"

	"github.com/tenantgate/tenantgate/internal/audit"
	"github.com/tenantgate/tenantgate/internal/errs"
	"github.com/tenantgate/tenantgate/internal/money"
	"github.com/tenantgate/tenantgate/internal/secret"
	"github.com/tenantgate/tenantgate/internal/store"
)

// Code statuses.
const (
	CodeActive   = "active"
	CodeRedeemed = "redeemed"
	CodeDisabled = "disabled"
	CodeExpired  = "expired"
)

// Code is a redemption code as stored: only its SHA-256 and last four
// characters, never the code.
type Code struct {
	ID               string `gorm:"primaryKey"`
	BatchID          string
	CodeHash         string
	Last4            string
	Amount           money.Micros `gorm:"column:amount_micros"`
	ExpiresAt        *time.Time
	Note             string
	CreatedBy        string
	CreatedAt        time.Time
	DisabledAt       *time.Time
	RedeemedTenantID *string
	RedeemedAt       *time.Time
	Status           string `gorm:"-"` // filled when read
}

// TableName maps codes to redemption_codes (a platform table).
func (Code) TableName() string { return "redemption_codes" }

func (c *Code) status(now time.Time) string {
	switch {
	case c.RedeemedAt != nil:
		return CodeRedeemed
	case c.DisabledAt != nil:
		return CodeDisabled
	case c.ExpiresAt != nil && !now.Before(*c.ExpiresAt):
		return CodeExpired
	}
	return CodeActive
}

// MarshalJSON shows a code without its hash.
func (c Code) MarshalJSON() ([]byte, error) {
	return json.Marshal(struct {
		ID               string     `json:"id"`
		BatchID          string     `json:"batchId"`
		Last4            string     `json:"last4"`
		Amount           string     `json:"amount"`
		Status           string     `json:"status"`
		ExpiresAt        *time.Time `json:"expiresAt"`
		Note             string     `json:"note"`
		CreatedBy        string     `json:"createdBy"`
		CreatedAt        time.Time  `json:"createdAt"`
		DisabledAt       *time.Time `json:"disabledAt"`
		RedeemedTenantID *string    `json:"redeemedTenantId"`
		RedeemedAt       *time.Time `json:"redeemedAt"`
	}{c.ID, c.BatchID, c.Last4, c.Amount.String(), c.Status, c.ExpiresAt, c.Note, c.CreatedBy, c.CreatedAt, c.DisabledAt,
		c.RedeemedTenantID, c.RedeemedAt})
}

// Batch is the answer of GenerateCodes: the only time the codes are shown.
type Batch struct {
	ID        string
	Amount    money.Micros
	ExpiresAt *time.Time
	Note      string
	CreatedAt time.Time
	Codes     []string
}

// MarshalJSON shows the amount as a decimal string.
func (b Batch) MarshalJSON() ([]byte, error) {
	return json.Marshal(struct {
		BatchID   string     `json:"batchId"`
		Count     int        `json:"count"`
		Amount    string     `json:"amount"`
		ExpiresAt *time.Time `json:"expiresAt"`
		Note      string     `json:"note"`
		CreatedAt time.Time  `json:"createdAt"`
		Codes     []string   `json:"codes"`
	}{b.ID, len(b.Codes), b.Amount.String(), b.ExpiresAt, b.Note, b.CreatedAt, b.Codes})
}

// crockford is Crockford's base32 alphabet (no I, L, O, U).
const crockford = "0123456789ABCDEFGHJKMNPQRSTVWXYZ"

// codeChars is the number of random characters of a code: 100 bits.
const codeChars = 20

// newCode returns a code's canonical form (20 characters) and its display
// form TGR-XXXXX-XXXXX-XXXXX-XXXXX.
func newCode() (canonical, display string) {
	b := make([]byte, codeChars)
	if _, err := rand.Read(b); err != nil {
		panic(err) // crypto/rand never fails on supported platforms
	}
	for i := range b {
		b[i] = crockford[b[i]&31] // 256 is a multiple of 32: uniform
	}
	c := string(b)
	return c, "TGR-" + c[0:5] + "-" + c[5:10] + "-" + c[10:15] + "-" + c[15:20]
}

// normalizeCode reads a code as a person may type it: any case, with or
// without dashes, spaces and the TGR prefix, with I and L read as 1 and O as 0.
func normalizeCode(s string) (string, bool) {
	s = strings.Map(func(r rune) rune {
		switch r {
		case '-', ' ', '\t':
			return -1
		}
		return r
	}, strings.ToUpper(s))
	if len(s) == codeChars+3 && strings.HasPrefix(s, "TGR") {
		s = s[3:]
	}
	if len(s) != codeChars {
		return "", false
	}
	s = strings.NewReplacer("I", "1", "L", "1", "O", "0").Replace(s)
	for _, r := range s {
		if !strings.ContainsRune(crockford, r) {
			return "", false
		}
	}
	return s, true
}

func codeHash(canonical string) string { return secret.Hash("tgr:" + canonical) }

// GenerateCodes makes count codes worth amount each, optionally expiring,
// and returns them: the only time they can be read. Only their SHA-256 is kept.
func (s *Service) GenerateCodes(ctx context.Context, count int, amount money.Micros, expiresAt *time.Time, note string) (*Batch, error) {
	now := s.now()
	f := errs.Fields{}
	if count < 1 || count > MaxCodes {
		f.Add("count", fmt.Sprintf("must be from 1 to %d", MaxCodes))
	}
	if amount <= 0 || amount > MaxCredit {
		f.Add("amount", fmt.Sprintf("must be more than 0 and at most %s", MaxCredit))
	}
	if expiresAt != nil && !expiresAt.After(now) {
		f.Add("expiresAt", "must be in the future")
	}
	if len(note) > maxNote {
		f.Add("note", fmt.Sprintf("must be at most %d characters", maxNote))
	}
	if err := f.Err(); err != nil {
		return nil, err
	}
	if expiresAt != nil {
		e := expiresAt.UTC()
		expiresAt = &e
	}
	b := &Batch{ID: uuid.Must(uuid.NewV7()).String(), Amount: amount, ExpiresAt: expiresAt, Note: note, CreatedAt: now}
	rows := make([]Code, 0, count)
	by := actorName(ctx)
	for range count {
		c, display := newCode()
		b.Codes = append(b.Codes, display)
		rows = append(rows, Code{ID: uuid.Must(uuid.NewV7()).String(), BatchID: b.ID, CodeHash: codeHash(c), Last4: c[codeChars-4:],
			Amount: amount, ExpiresAt: expiresAt, Note: note, CreatedBy: by, CreatedAt: now})
	}
	err := s.store.Tx(store.WithPlatform(ctx, "billing: generate redemption codes"), func(tx *gorm.DB) error {
		if err := tx.CreateInBatches(rows, 200).Error; err != nil {
			return err
		}
		meta := map[string]any{"batchId": b.ID, "count": count, "amount": amount.String(), "currency": s.currency, "note": note}
		if expiresAt != nil {
			meta["expiresAt"] = expiresAt.Format(time.RFC3339)
		}
		return audit.Record(ctx, tx, audit.Entry{TenantID: store.PlatformTenantID, EventType: "billing.codes_generated", Resource: "redemption_code",
			ResourceID: b.ID, Action: "create", Metadata: meta})
	})
	if err != nil {
		return nil, errs.Wrap(err, "generate redemption codes")
	}
	return b, nil
}

// CodeFilter narrows a listing of codes.
type CodeFilter struct {
	BatchID string
	Status  string // active | redeemed | disabled | expired
}

// ListCodes lists codes newest first, without the codes.
func (s *Service) ListCodes(ctx context.Context, flt CodeFilter, p store.Page) ([]Code, *string, error) {
	f := errs.Fields{}
	if flt.BatchID != "" && !store.ValidID(flt.BatchID) {
		f.Add("batchId", "must be a batch id")
	}
	switch flt.Status {
	case "", CodeActive, CodeRedeemed, CodeDisabled, CodeExpired:
	default:
		f.Add("status", "must be active, redeemed, disabled or expired")
	}
	if err := f.Err(); err != nil {
		return nil, nil, err
	}
	now := s.now()
	var out []Code
	err := s.store.Tx(store.WithPlatform(ctx, "billing: list redemption codes"), func(tx *gorm.DB) error {
		q := tx.Model(&Code{})
		if flt.BatchID != "" {
			q = q.Where("batch_id = ?", flt.BatchID)
		}
		switch flt.Status {
		case CodeRedeemed:
			q = q.Where("redeemed_at IS NOT NULL")
		case CodeDisabled:
			q = q.Where("redeemed_at IS NULL AND disabled_at IS NOT NULL")
		case CodeExpired:
			q = q.Where("redeemed_at IS NULL AND disabled_at IS NULL AND expires_at IS NOT NULL AND expires_at <= ?", now)
		case CodeActive:
			q = q.Where("redeemed_at IS NULL AND disabled_at IS NULL AND (expires_at IS NULL OR expires_at > ?)", now)
		}
		return p.Apply(q, "id").Find(&out).Error
	})
	if err != nil {
		return nil, nil, errs.Internal(err, "list redemption codes")
	}
	for i := range out {
		out[i].Status = out[i].status(now)
	}
	items, next := store.Trim(out, p, func(c Code) string { return c.ID })
	return items, next, nil
}

func codeNotFound() error {
	return errs.NotFound(CodeCodeNotFound, "no redeemable code matches; check it for typos")
}

func codeRedeemed() error {
	return errs.Conflict(CodeCodeAlreadyRedeemed, "this code was already redeemed")
}

// DisableCode stops a code from being redeemed. Disabling a disabled code
// changes nothing; a redeemed code is 409 CODE_ALREADY_REDEEMED.
func (s *Service) DisableCode(ctx context.Context, id string) (*Code, error) {
	if !store.ValidID(id) {
		return nil, errs.NotFound(CodeCodeNotFound, "no redemption code with id %q", id)
	}
	now := s.now()
	var c Code
	err := s.store.Tx(store.WithPlatform(ctx, "billing: disable a redemption code"), func(tx *gorm.DB) error {
		if err := tx.Where("id = ?", id).Take(&c).Error; err != nil {
			if store.IsNotFound(err) {
				return errs.NotFound(CodeCodeNotFound, "no redemption code with id %q", id)
			}
			return err
		}
		switch {
		case c.RedeemedAt != nil:
			return codeRedeemed()
		case c.DisabledAt != nil:
			return nil
		}
		res := tx.Model(&Code{}).Where("id = ? AND redeemed_at IS NULL AND disabled_at IS NULL", id).Update("disabled_at", now)
		if res.Error != nil {
			return res.Error
		}
		if res.RowsAffected == 0 {
			return codeRedeemed()
		}
		c.DisabledAt = &now
		return audit.Record(ctx, tx, audit.Entry{TenantID: store.PlatformTenantID, EventType: "billing.code_disabled", Resource: "redemption_code",
			ResourceID: id, Action: "disable", Metadata: map[string]any{"batchId": c.BatchID, "amount": c.Amount.String()}})
	})
	if err != nil {
		return nil, errs.Wrap(err, "disable the redemption code")
	}
	c.Status = c.status(now)
	return &c, nil
}

// Redeem credits a code to the tenant, exactly once: the code is marked with
// a compare-and-swap and the balance credited in the same transaction. An
// unknown, disabled or expired code is 404 CODE_NOT_FOUND (one answer for
// all, so codes cannot be probed); a redeemed one 409 CODE_ALREADY_REDEEMED.
func (s *Service) Redeem(ctx context.Context, tenantID, code string) (*Entry, error) {
	f := errs.Fields{}
	tenantErr(f, tenantID)
	if err := f.Err(); err != nil {
		return nil, err
	}
	canon, ok := normalizeCode(code)
	if !ok {
		return nil, codeNotFound()
	}
	now := s.now()
	var out *Entry
	var st accountState
	err := s.store.Tx(store.WithPlatform(ctx, "billing: redeem a code"), func(tx *gorm.DB) error {
		var c Code
		if err := tx.Where("code_hash = ?", codeHash(canon)).Take(&c).Error; err != nil {
			if store.IsNotFound(err) {
				return codeNotFound()
			}
			return err
		}
		switch c.status(now) {
		case CodeRedeemed:
			return codeRedeemed()
		case CodeDisabled, CodeExpired:
			return codeNotFound()
		}
		res := tx.Exec("UPDATE redemption_codes SET redeemed_tenant_id = ?, redeemed_at = ? WHERE id = ? AND redeemed_at IS NULL AND disabled_at IS NULL",
			tenantID, now, c.ID)
		if res.Error != nil {
			return res.Error
		}
		if res.RowsAffected == 0 { // another redemption (or a disable) won the race
			var again Code
			if err := tx.Where("id = ?", c.ID).Take(&again).Error; err == nil && again.RedeemedAt == nil {
				return codeNotFound()
			}
			return codeRedeemed()
		}
		e, state, created, err := s.credit(ctx, tx, tenantID, KindRedemption, c.ID, "redemption code …"+c.Last4, c.Amount)
		if err != nil {
			return err
		}
		if !created {
			return codeRedeemed()
		}
		out, st = e, state
		return audit.Record(ctx, tx, audit.Entry{TenantID: tenantID, EventType: "billing.code_redeemed", Resource: "redemption_code",
			ResourceID: c.ID, Action: "redeem", Metadata: map[string]any{"amount": c.Amount.String(), "currency": s.currency,
				"batchId": c.BatchID, "entryId": e.ID, "balanceAfter": e.BalanceAfter.String()}})
	})
	if err != nil {
		return nil, errs.Wrap(err, "redeem the code")
	}
	s.observe(tenantID, st.BalanceMicros, st.Revision, nil)
	return out, nil
}
