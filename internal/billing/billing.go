// Package billing keeps each tenant's prepaid balance: the account and the
// ledger every change of it is written to (top-ups, redeemed codes, usage),
// per-key spend for key budgets, model prices (platform prices and tenant
// overrides), redemption codes, and the payment webhook's signature check.
//
// Amounts are exact integers of micro-units (money.Micros); the API shows
// them as decimal strings. The AI gateway calls Cost, Reserve, Release and
// SettleTx on its hot path: prices and balances are served from memory there,
// and the database is written once per settled batch.
package billing

import (
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"regexp"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/google/uuid"
	"gorm.io/gorm"

	"github.com/tenantgate/tenantgate/internal/actor"
	"github.com/tenantgate/tenantgate/internal/audit"
	"github.com/tenantgate/tenantgate/internal/errs"
	"github.com/tenantgate/tenantgate/internal/money"
	"github.com/tenantgate/tenantgate/internal/store"
)

// Error codes.
const (
	CodeIdempotencyConflict = "IDEMPOTENCY_CONFLICT"
	CodeCodeNotFound        = "CODE_NOT_FOUND"
	CodeCodeAlreadyRedeemed = "CODE_ALREADY_REDEEMED"
	CodePriceNotFound       = "PRICE_NOT_FOUND"
	CodeInvalidSignature    = "INVALID_SIGNATURE"
)

// Ledger entry kinds.
const (
	KindTopUp      = "topup"
	KindRedemption = "redemption"
	KindUsage      = "usage"
	KindAdjustment = "adjustment"
)

// Kinds lists the ledger entry kinds.
var Kinds = []string{KindTopUp, KindRedemption, KindUsage, KindAdjustment}

// Limits.
const (
	// MaxCredit is the most one top-up or one redemption code may credit.
	MaxCredit money.Micros = 1_000_000 * 1_000_000
	// MaxBalance is the most a balance may hold; a credit that would take it
	// higher is refused.
	MaxBalance = money.MaxBalance
	// MaxPricePerMTok is the highest price per million tokens.
	MaxPricePerMTok money.Micros = 1_000_000 * 1_000_000
	// MaxCodes is the most codes one GenerateCodes call makes.
	MaxCodes = 1000
	// PriceCacheTTL is how long the in-memory price table is served before
	// it is read again; changes made through the Service reload it at once.
	PriceCacheTTL = 10 * time.Second
	maxNote       = 500
	maxAccounts   = 100_000
)

// Options configure the service.
type Options struct {
	Now           func() time.Time
	Log           *slog.Logger
	Currency      string        // of new accounts; default "USD"
	BalanceTTL    time.Duration // how long an in-memory balance is trusted; default 5s
	WebhookSecret string        // HMAC key of the payment webhook; empty: the webhook is off
}

// Service is the billing service.
type Service struct {
	store         *store.Store
	now           func() time.Time
	log           *slog.Logger
	currency      string
	ttl           atomic.Int64 // of an in-memory balance (BalanceTTL), in nanoseconds
	priceTTL      atomic.Int64 // of the price table (PriceCacheTTL), in nanoseconds
	webhookSecret string

	amu      sync.Mutex
	accounts map[string]*account // tenant id → in-memory account

	prices   atomic.Pointer[priceTable]
	pricesMu sync.Mutex // one reload at a time
}

// New builds the service.
func New(s *store.Store, o Options) *Service {
	if o.Now == nil {
		o.Now = func() time.Time { return time.Now().UTC() }
	}
	if o.Log == nil {
		o.Log = slog.New(slog.DiscardHandler)
	}
	if o.Currency == "" {
		o.Currency = "USD"
	}
	if o.BalanceTTL <= 0 {
		o.BalanceTTL = 5 * time.Second
	}
	svc := &Service{store: s, now: func() time.Time { return o.Now().UTC() }, log: o.Log, currency: o.Currency,
		webhookSecret: o.WebhookSecret, accounts: map[string]*account{}}
	svc.ttl.Store(int64(o.BalanceTTL))
	svc.priceTTL.Store(int64(PriceCacheTTL))
	return svc
}

// SetCacheTTL sets how long the price table and in-memory balances are
// trusted; 0 reads them on every use (tests use it to prove that no path
// depends on a warm cache).
func (s *Service) SetCacheTTL(d time.Duration) {
	s.ttl.Store(int64(d))
	s.priceTTL.Store(int64(d))
}

// Currency is the currency of new accounts.
func (s *Service) Currency() string { return s.currency }

type accountRow struct {
	TenantID                  string `gorm:"primaryKey"`
	BalanceMicros             int64
	LowBalanceThresholdMicros *int64
	LowBalanceNotified        bool
	Currency                  string
	Revision                  int64
	UpdatedAt                 time.Time
}

func (accountRow) TableName() string { return "billing_accounts" }
func (accountRow) TenantOwned()      {}

type keySpendRow struct {
	TenantID    string `gorm:"primaryKey"`
	KeyID       string `gorm:"primaryKey"`
	SpentMicros int64
	Revision    int64
	UpdatedAt   time.Time
}

func (keySpendRow) TableName() string { return "key_spend" }
func (keySpendRow) TenantOwned()      {}

// Account is a tenant's balance and settings.
type Account struct {
	TenantID            string
	Currency            string
	Balance             money.Micros
	LowBalanceThreshold *money.Micros
	UpdatedAt           *time.Time // nil: nothing was ever credited or charged
}

// MarshalJSON shows amounts as decimal strings.
func (a Account) MarshalJSON() ([]byte, error) {
	return json.Marshal(struct {
		TenantID            string     `json:"tenantId"`
		Currency            string     `json:"currency"`
		Balance             string     `json:"balance"`
		LowBalanceThreshold *string    `json:"lowBalanceThreshold"`
		UpdatedAt           *time.Time `json:"updatedAt"`
	}{a.TenantID, a.Currency, a.Balance.String(), amountPtr(a.LowBalanceThreshold), a.UpdatedAt})
}

func amountPtr(m *money.Micros) *string {
	if m == nil {
		return nil
	}
	s := m.String()
	return &s
}

func (s *Service) accountOf(tenantID string, r *accountRow) *Account {
	a := &Account{TenantID: tenantID, Currency: s.currency}
	if r == nil {
		return a
	}
	a.Currency, a.Balance, a.UpdatedAt = r.Currency, money.Micros(r.BalanceMicros), &r.UpdatedAt
	if r.LowBalanceThresholdMicros != nil {
		t := money.Micros(*r.LowBalanceThresholdMicros)
		a.LowBalanceThreshold = &t
	}
	return a
}

// Entry is one ledger entry: a signed change of the balance.
type Entry struct {
	TenantID     string       `gorm:"primaryKey"`
	ID           string       `gorm:"primaryKey"`
	Kind         string       // topup | redemption | usage | adjustment
	Amount       money.Micros `gorm:"column:amount_micros"` // positive credits, negative debits
	BalanceAfter money.Micros `gorm:"column:balance_after_micros"`
	Reference    string       // the idempotency key, the code's id, or the usage batch
	Description  string
	Actor        string
	CreatedAt    time.Time
}

// TableName maps entries to ledger_entries.
func (Entry) TableName() string { return "ledger_entries" }

// TenantOwned marks entries as tenant data.
func (Entry) TenantOwned() {}

// MarshalJSON shows amounts as decimal strings.
func (e Entry) MarshalJSON() ([]byte, error) {
	return json.Marshal(struct {
		ID           string    `json:"id"`
		TenantID     string    `json:"tenantId"`
		Kind         string    `json:"kind"`
		Amount       string    `json:"amount"`
		BalanceAfter string    `json:"balanceAfter"`
		Reference    string    `json:"reference"`
		Description  string    `json:"description"`
		Actor        string    `json:"actor"`
		CreatedAt    time.Time `json:"createdAt"`
	}{e.ID, e.TenantID, e.Kind, e.Amount.String(), e.BalanceAfter.String(), e.Reference, e.Description, e.Actor, e.CreatedAt})
}

func tenantErr(f errs.Fields, tenantID string) {
	if !store.ValidID(tenantID) || tenantID == store.PlatformTenantID {
		f.Add("tenantId", "must be a tenant id")
	}
}

// Balance reads a tenant's account; a tenant that was never credited has a
// zero balance.
func (s *Service) Balance(ctx context.Context, tenantID string) (*Account, error) {
	f := errs.Fields{}
	tenantErr(f, tenantID)
	if err := f.Err(); err != nil {
		return nil, err
	}
	var row *accountRow
	err := s.store.Tx(store.WithTenant(ctx, tenantID), func(tx *gorm.DB) error {
		var r accountRow
		err := tx.Take(&r).Error
		if store.IsNotFound(err) {
			return nil
		}
		row = &r
		return err
	})
	if err != nil {
		return nil, errs.Internal(err, "read the balance")
	}
	if row != nil {
		s.observe(tenantID, row.BalanceMicros, row.Revision, nil)
	}
	return s.accountOf(tenantID, row), nil
}

// Ledger lists a tenant's ledger entries newest first, optionally of one kind.
func (s *Service) Ledger(ctx context.Context, tenantID, kind string, p store.Page) ([]Entry, *string, error) {
	f := errs.Fields{}
	tenantErr(f, tenantID)
	if kind != "" && !slices.Contains(Kinds, kind) {
		f.Add("kind", "must be topup, redemption, usage or adjustment")
	}
	if err := f.Err(); err != nil {
		return nil, nil, err
	}
	var out []Entry
	err := s.store.Tx(store.WithTenant(ctx, tenantID), func(tx *gorm.DB) error {
		q := tx.Model(&Entry{})
		if kind != "" {
			q = q.Where("kind = ?", kind)
		}
		return p.Apply(q, "id").Find(&out).Error
	})
	if err != nil {
		return nil, nil, errs.Internal(err, "read the ledger")
	}
	items, next := store.Trim(out, p, func(e Entry) string { return e.ID })
	return items, next, nil
}

// accountState is the account row after a change.
type accountState struct {
	BalanceMicros             int64
	Revision                  int64
	LowBalanceThresholdMicros *int64
	LowBalanceNotified        bool
}

// applyDelta adds delta to the tenant's balance inside tx (creating the
// account), taking the row's lock until tx ends, and returns the new state.
func (s *Service) applyDelta(tx *gorm.DB, tenantID string, delta int64, now time.Time) (accountState, error) {
	var st accountState
	err := tx.Raw(`INSERT INTO billing_accounts (tenant_id, balance_micros, low_balance_notified, currency, revision, updated_at)
		VALUES (?, ?, false, ?, 1, ?)
		ON CONFLICT (tenant_id) DO UPDATE SET balance_micros = billing_accounts.balance_micros + excluded.balance_micros,
			revision = billing_accounts.revision + 1, updated_at = excluded.updated_at
		RETURNING balance_micros, revision, low_balance_threshold_micros, low_balance_notified`,
		tenantID, delta, s.currency, now).Scan(&st).Error
	if err == nil && st.Revision == 0 {
		err = fmt.Errorf("billing: the account of %s was not written", tenantID)
	}
	return st, err
}

var refRe = regexp.MustCompile(`^[A-Za-z0-9._:-]{1,200}$`)

// credit writes a positive ledger entry of kind and reference and adds it to
// the balance, inside tx. When (kind, reference) was written before it
// changes nothing and returns that entry with created false.
func (s *Service) credit(ctx context.Context, tx *gorm.DB, tenantID, kind, reference, description string, amount money.Micros) (*Entry, accountState, bool, error) {
	now := s.now()
	e := &Entry{TenantID: tenantID, ID: uuid.Must(uuid.NewV7()).String(), Kind: kind, Amount: amount, Reference: reference,
		Description: description, Actor: actorName(ctx), CreatedAt: now}
	var st accountState
	var ids []string
	if err := tx.Raw(`INSERT INTO ledger_entries (tenant_id, id, kind, amount_micros, balance_after_micros, reference, description, actor, created_at)
		VALUES (?, ?, ?, ?, 0, ?, ?, ?, ?) ON CONFLICT (tenant_id, kind, reference) DO NOTHING RETURNING id`,
		tenantID, e.ID, kind, int64(amount), reference, description, e.Actor, now).Scan(&ids).Error; err != nil {
		return nil, st, false, err
	}
	if len(ids) == 0 {
		var old Entry
		if err := tx.Where("tenant_id = ? AND kind = ? AND reference = ?", tenantID, kind, reference).Take(&old).Error; err != nil {
			return nil, st, false, err
		}
		return &old, st, false, nil
	}
	st, err := s.applyDelta(tx, tenantID, int64(amount), now)
	if err != nil {
		return nil, st, false, err
	}
	if money.Micros(st.BalanceMicros) > MaxBalance { // the transaction is rolled back
		return nil, st, false, invalid("amount", fmt.Sprintf("would take the balance to %s; a balance holds at most %s",
			money.Micros(st.BalanceMicros), MaxBalance))
	}
	e.BalanceAfter = money.Micros(st.BalanceMicros)
	if err := tx.Exec("UPDATE ledger_entries SET balance_after_micros = ? WHERE tenant_id = ? AND id = ?", st.BalanceMicros, tenantID, e.ID).Error; err != nil {
		return nil, st, false, err
	}
	// A credit that lifts the balance to the threshold or above re-arms the
	// low-balance notice.
	if st.LowBalanceNotified && st.LowBalanceThresholdMicros != nil && st.BalanceMicros >= *st.LowBalanceThresholdMicros {
		if err := tx.Exec("UPDATE billing_accounts SET low_balance_notified = false WHERE tenant_id = ?", tenantID).Error; err != nil {
			return nil, st, false, err
		}
		st.LowBalanceNotified = false
	}
	return e, st, true, nil
}

// TopUp credits amount to a tenant's balance once per idempotency key: the
// same key again returns the original entry with created false, and the same
// key with another amount is 409 IDEMPOTENCY_CONFLICT. An empty key makes a
// fresh one (no idempotency).
func (s *Service) TopUp(ctx context.Context, tenantID string, amount money.Micros, idempotencyKey, note string) (*Entry, bool, error) {
	f := errs.Fields{}
	tenantErr(f, tenantID)
	if amount <= 0 || amount > MaxCredit {
		f.Add("amount", fmt.Sprintf("must be more than 0 and at most %s", MaxCredit))
	}
	key := idempotencyKey
	if key == "" {
		key = uuid.Must(uuid.NewV7()).String()
	} else if !refRe.MatchString(key) {
		f.Add("idempotencyKey", "must be 1-200 characters of A-Z a-z 0-9 . _ : -")
	}
	if len(note) > maxNote {
		f.Add("note", fmt.Sprintf("must be at most %d characters", maxNote))
	}
	if err := f.Err(); err != nil {
		return nil, false, err
	}
	desc := note
	if desc == "" {
		desc = "top-up"
	}
	var out *Entry
	var st accountState
	var created bool
	err := s.store.Tx(store.WithTenant(ctx, tenantID), func(tx *gorm.DB) error {
		e, state, ok, err := s.credit(ctx, tx, tenantID, KindTopUp, key, desc, amount)
		if err != nil {
			return err
		}
		out, st, created = e, state, ok
		if !ok {
			if e.Amount != amount {
				return &errs.Error{Kind: errs.KindConflict, Code: CodeIdempotencyConflict,
					Msg:    fmt.Sprintf("the idempotency key %q was used for a top-up of %s; a retry must send the same amount", key, e.Amount),
					Fields: map[string]string{"amount": "differs from the first request with this idempotency key"}}
			}
			return nil
		}
		return audit.Record(ctx, tx, audit.Entry{TenantID: tenantID, EventType: "billing.topup", Resource: "billing_account", ResourceID: tenantID,
			Action: "credit", Metadata: map[string]any{"amount": amount.String(), "balanceAfter": e.BalanceAfter.String(), "currency": s.currency,
				"reference": key, "entryId": e.ID, "note": note}})
	})
	if err != nil {
		return nil, false, errs.Wrap(err, "top up the balance")
	}
	if created {
		s.observe(tenantID, st.BalanceMicros, st.Revision, nil)
	}
	return out, created, nil
}

// SetLowBalanceThreshold sets (nil: clears) the balance below which the
// tenant is notified once; setting it re-arms the notice.
func (s *Service) SetLowBalanceThreshold(ctx context.Context, tenantID string, threshold *money.Micros) (*Account, error) {
	f := errs.Fields{}
	tenantErr(f, tenantID)
	if threshold != nil && (*threshold < 0 || *threshold > MaxCredit) {
		f.Add("lowBalanceThreshold", fmt.Sprintf("must be from 0 to %s, or null for none", MaxCredit))
	}
	if err := f.Err(); err != nil {
		return nil, err
	}
	var v *int64
	if threshold != nil {
		n := int64(*threshold)
		v = &n
	}
	now := s.now()
	row := accountRow{TenantID: tenantID, UpdatedAt: now}
	err := s.store.Tx(store.WithTenant(ctx, tenantID), func(tx *gorm.DB) error {
		var before *string
		var old accountRow
		if err := tx.Take(&old).Error; err == nil && old.LowBalanceThresholdMicros != nil {
			b := money.Micros(*old.LowBalanceThresholdMicros)
			before = amountPtr(&b)
		} else if err != nil && !store.IsNotFound(err) {
			return err
		}
		if err := tx.Raw(`INSERT INTO billing_accounts (tenant_id, balance_micros, low_balance_threshold_micros, low_balance_notified, currency, revision, updated_at)
			VALUES (?, 0, ?, false, ?, 1, ?)
			ON CONFLICT (tenant_id) DO UPDATE SET low_balance_threshold_micros = excluded.low_balance_threshold_micros,
				low_balance_notified = false, revision = billing_accounts.revision + 1, updated_at = excluded.updated_at
			RETURNING balance_micros, low_balance_threshold_micros, currency, revision, updated_at`,
			tenantID, v, s.currency, now).Scan(&row).Error; err != nil {
			return err
		}
		return audit.Record(ctx, tx, audit.Entry{TenantID: tenantID, EventType: "billing.settings_updated", Resource: "billing_account",
			ResourceID: tenantID, Action: "update", Before: map[string]any{"lowBalanceThreshold": before},
			After: map[string]any{"lowBalanceThreshold": amountPtr(threshold)}})
	})
	if err != nil {
		return nil, errs.Wrap(err, "save the billing settings")
	}
	s.observe(tenantID, row.BalanceMicros, row.Revision, nil)
	return s.accountOf(tenantID, &row), nil
}

// actorName says who made a ledger entry.
func actorName(ctx context.Context) string {
	a := actor.From(ctx)
	if a == nil {
		return "system"
	}
	n := string(a.Type) + ":" + a.ID
	if a.KeyID != "" {
		n += " key:" + a.KeyID
	}
	return n
}
