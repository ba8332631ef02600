package billing

import (
	"context"
	"fmt"
	"github.com/tenantgate/tenantgate/internal/notify"
	"math"
	"slices"
	"sync"
	"time"

	"github.com/google/uuid"
	"gorm.io/gorm"

	"github.com/tenantgate/tenantgate/internal/audit"
	"github.com/tenantgate/tenantgate/internal/errs"
	"github.com/tenantgate/tenantgate/internal/money"
	"github.com/tenantgate/tenantgate/internal/store"
)

// account is this process's copy of a tenant's balance and key spends, and
// the holds of the calls in flight here. Every database change of an account
// raises its revision, and a copy takes only newer revisions, so a late
// write-back never replaces a fresher state.
//
// Holds live in memory: several server processes each hold against the
// whole balance, so a tenant can overdraw by at most the calls in flight on
// the other processes; the settlement debits what was used either way.
type account struct {
	tenantID string
	load     sync.Mutex // one database read at a time

	mu       sync.Mutex
	loaded   bool
	evicted  bool
	loadedAt time.Time
	balance  int64
	rev      int64
	held     int64
	keys     map[string]*keyState
}

type keyState struct{ spent, rev, held int64 }

func (a *account) key(id string) *keyState {
	k := a.keys[id]
	if k == nil {
		k = &keyState{}
		a.keys[id] = k
	}
	return k
}

// Hold is an amount reserved for one call until it is settled or released.
type Hold struct {
	acct   *account
	keyID  string
	amount int64
	done   bool // guarded by acct.mu
}

// Amount is what the hold reserves.
func (h *Hold) Amount() money.Micros {
	if h == nil {
		return 0
	}
	return money.Micros(h.amount)
}

// acct returns the in-memory account, creating it (not loaded).
func (s *Service) acct(tenantID string) *account {
	s.amu.Lock()
	defer s.amu.Unlock()
	if a, ok := s.accounts[tenantID]; ok {
		return a
	}
	if len(s.accounts) >= maxAccounts {
		now := s.now()
		for id, a := range s.accounts {
			if !a.mu.TryLock() {
				continue
			}
			if a.held == 0 && now.Sub(a.loadedAt) >= time.Duration(s.ttl.Load()) {
				a.evicted = true
				delete(s.accounts, id)
			}
			a.mu.Unlock()
		}
	}
	a := &account{tenantID: tenantID, keys: map[string]*keyState{}}
	s.accounts[tenantID] = a
	return a
}

// warm makes sure the account was read from the database within the TTL.
// When a copy exists and another caller is already refreshing it, it is used
// as it is rather than waited for.
func (s *Service) warm(ctx context.Context, a *account) error {
	fresh := func() (bool, bool) {
		a.mu.Lock()
		defer a.mu.Unlock()
		return a.loaded && s.now().Sub(a.loadedAt) < time.Duration(s.ttl.Load()), a.loaded
	}
	ok, loaded := fresh()
	if ok {
		return nil
	}
	if loaded {
		if !a.load.TryLock() {
			return nil
		}
	} else {
		a.load.Lock()
	}
	defer a.load.Unlock()
	if ok, _ := fresh(); ok {
		return nil
	}
	at := s.now()
	var row accountRow
	var keys []keySpendRow
	err := s.store.Tx(store.WithTenant(ctx, a.tenantID), func(tx *gorm.DB) error {
		// The account first: key spends read after it are as new or newer.
		if err := tx.Take(&row).Error; err != nil && !store.IsNotFound(err) {
			return err
		}
		return tx.Find(&keys).Error
	})
	if err != nil {
		if loaded {
			s.log.Warn("billing: refresh a balance; using the cached one", "tenant", a.tenantID, "err", err)
			return nil
		}
		return errs.Internal(err, "read the balance")
	}
	a.mu.Lock()
	defer a.mu.Unlock()
	if row.Revision >= a.rev {
		a.balance, a.rev = row.BalanceMicros, row.Revision
	}
	for _, k := range keys {
		if ks := a.key(k.KeyID); k.Revision >= ks.rev {
			ks.spent, ks.rev = k.SpentMicros, k.Revision
		}
	}
	a.loaded, a.loadedAt = true, at
	return nil
}

// observe applies a committed state of the account to the in-memory copy,
// if it is newer than the copy.
func (s *Service) observe(tenantID string, balance, rev int64, spends map[string]int64) {
	s.amu.Lock()
	a := s.accounts[tenantID]
	s.amu.Unlock()
	if a == nil {
		return
	}
	a.mu.Lock()
	defer a.mu.Unlock()
	if rev > a.rev {
		a.balance, a.rev = balance, rev
	}
	for id, v := range spends {
		if ks := a.key(id); rev > ks.rev {
			ks.spent, ks.rev = v, rev
		}
	}
}

func invalid(field, problem string) error {
	return errs.Invalid("the request has invalid fields; see details", map[string]string{field: problem})
}

// Reserve holds amount against the tenant's balance and, when keyBudget is
// not nil, against the key's budget (its spend, its holds and amount must not
// exceed *keyBudget micros). It answers from memory: the account is read on
// first use and again when older than the BalanceTTL. Not enough balance is
// 402 INSUFFICIENT_BALANCE; over the key's budget 402 KEY_BUDGET_EXCEEDED.
func (s *Service) Reserve(ctx context.Context, tenantID, keyID string, keyBudget *int64, amount money.Micros) (*Hold, error) {
	switch {
	case !store.ValidID(tenantID) || tenantID == store.PlatformTenantID:
		return nil, invalid("tenantId", "must be a tenant id")
	case keyID != "" && !store.ValidID(keyID):
		return nil, invalid("keyId", "must be an API key id")
	case amount < 0:
		return nil, invalid("amount", "must be 0 or more")
	}
	for {
		a := s.acct(tenantID)
		if err := s.warm(ctx, a); err != nil {
			return nil, err
		}
		a.mu.Lock()
		if a.evicted {
			a.mu.Unlock()
			continue
		}
		h, err := s.reserveLocked(a, keyID, keyBudget, int64(amount))
		a.mu.Unlock()
		return h, err
	}
}

func (s *Service) reserveLocked(a *account, keyID string, keyBudget *int64, amount int64) (*Hold, error) {
	available, ok := money.Sub(a.balance, a.held)
	if !ok {
		available = math.MinInt64
	}
	if amount > available {
		return nil, &errs.Error{Kind: errs.KindPaymentRequired, Code: errs.CodeInsufficientBalance,
			Msg: fmt.Sprintf("the balance is %s %s (%s available after calls in progress) and this call needs up to %s %s; "+
				"top up the balance, or redeem a code with POST /api/v1/billing/redeem",
				money.Micros(a.balance), s.currency, money.Micros(max(available, 0)), money.Micros(amount), s.currency),
			Fields: map[string]string{"balance": money.Micros(a.balance).String(), "available": money.Micros(max(available, 0)).String(),
				"required": money.Micros(amount).String(), "currency": s.currency}}
	}
	var ks *keyState
	if keyID != "" {
		ks = a.key(keyID)
		var left int64
		if keyBudget != nil {
			var ok bool
			if left, ok = money.Sub(*keyBudget, money.SatAdd(ks.spent, ks.held)); !ok {
				left = math.MinInt64
			}
		}
		if keyBudget != nil && amount > left {
			left = max(left, 0)
			return nil, &errs.Error{Kind: errs.KindPaymentRequired, Code: errs.CodeKeyBudgetExceeded,
				Msg: fmt.Sprintf("this API key's budget is %s %s, %s of it is spent or held, and this call needs up to %s %s; "+
					"raise the key's budget or use another key", money.Micros(*keyBudget), s.currency, money.Micros(money.SatAdd(ks.spent, ks.held)),
					money.Micros(amount), s.currency),
				Fields: map[string]string{"budget": money.Micros(*keyBudget).String(), "spent": money.Micros(ks.spent).String(),
					"remaining": money.Micros(left).String(), "required": money.Micros(amount).String(), "currency": s.currency}}
		}
	}
	held, ok := money.Add(a.held, amount)
	if !ok {
		return nil, invalid("amount", "is too large to hold")
	}
	if ks != nil {
		kh, ok := money.Add(ks.held, amount)
		if !ok {
			return nil, invalid("amount", "is too large to hold")
		}
		ks.held = kh
	}
	a.held = held
	return &Hold{acct: a, keyID: keyID, amount: amount}, nil
}

// Release gives a hold back. It is idempotent and accepts nil.
func (s *Service) Release(h *Hold) {
	if h == nil || h.acct == nil {
		return
	}
	a := h.acct
	a.mu.Lock()
	defer a.mu.Unlock()
	if h.done {
		return
	}
	h.done = true
	a.held -= h.amount
	if h.keyID != "" {
		a.key(h.keyID).held -= h.amount
	}
}

// Charge is what one call used, and the hold it ran under (may be nil).
type Charge struct {
	Hold   *Hold
	KeyID  string
	Amount money.Micros
}

// SettleTx debits one tenant's charges inside tx, the caller's transaction
// scoped to that tenant: one usage ledger entry for their sum with reference
// ref (a batch already settled under ref is not charged again), the account
// balance (it may go below zero: the calls were made), and each key's spend.
// The first settlement that leaves the balance below the tenant's low-balance
// threshold writes a notification and a billing.low_balance audit event; a
// top-up to the threshold or above re-arms it.
//
// Call after once the transaction committed: it releases the holds and
// brings the in-memory balance and spends up to date. If the transaction
// fails, call Release on every hold instead.
func (s *Service) SettleTx(ctx context.Context, tx *gorm.DB, tenantID string, charges []Charge, ref string) (after func(), err error) {
	var once sync.Once
	var apply func()
	after = func() {
		once.Do(func() {
			// The new balance first, then the holds: the other order leaves a
			// moment where available counts the call's cost twice over.
			if apply != nil {
				apply()
			}
			for _, c := range charges {
				s.Release(c.Hold)
			}
		})
	}
	switch {
	case !store.ValidID(tenantID) || tenantID == store.PlatformTenantID:
		return nil, invalid("tenantId", "must be a tenant id")
	case !refRe.MatchString(ref):
		return nil, invalid("ref", "must be 1-200 characters of A-Z a-z 0-9 . _ : -")
	}
	var sum int64
	perKey := map[string]int64{}
	for i, c := range charges {
		if c.Amount < 0 {
			return nil, invalid(fmt.Sprintf("charges[%d].amount", i), "must be 0 or more")
		}
		if c.Hold != nil && c.Hold.acct != nil && c.Hold.acct.tenantID != tenantID {
			return nil, errs.Internal(fmt.Errorf("billing: charge %d holds against another tenant", i), "settle usage")
		}
		if c.KeyID != "" && !store.ValidID(c.KeyID) {
			return nil, invalid(fmt.Sprintf("charges[%d].keyId", i), "must be an API key id")
		}
		var ok bool
		if sum, ok = money.Add(sum, int64(c.Amount)); !ok {
			return nil, invalid("charges", "the sum is too large")
		}
		if c.KeyID != "" && c.Amount > 0 {
			perKey[c.KeyID] += int64(c.Amount) // at most sum
		}
	}
	if sum == 0 {
		return after, nil
	}
	if sc := store.ScopeFrom(tx.Statement.Context); !sc.Platform && sc.TenantID != tenantID {
		return nil, errs.Internal(fmt.Errorf("billing: settle for %s in a transaction scoped to %q: %w", tenantID, sc.TenantID, store.ErrNoTenantScope), "settle usage")
	}
	now := s.now()
	id := uuid.Must(uuid.NewV7()).String()
	calls := fmt.Sprintf("usage of %d calls", len(charges))
	if len(charges) == 1 {
		calls = "usage of 1 call"
	}
	// The balance first, so the ledger entry is written once with the
	// balance after it; a batch settled before (its reference exists) is
	// undone again and not charged twice.
	st, err := s.applyDelta(tx, tenantID, -sum, now)
	if err != nil {
		return nil, err
	}
	var ids []string
	if err := tx.Raw(`INSERT INTO ledger_entries (tenant_id, id, kind, amount_micros, balance_after_micros, reference, description, actor, created_at)
		VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?) ON CONFLICT (tenant_id, kind, reference) DO NOTHING RETURNING id`,
		tenantID, id, KindUsage, -sum, st.BalanceMicros, ref, calls, actorName(ctx), now).Scan(&ids).Error; err != nil {
		return nil, err
	}
	if len(ids) == 0 {
		if _, err := s.applyDelta(tx, tenantID, sum, now); err != nil {
			return nil, err
		}
		s.log.Warn("billing: a usage batch was settled before; not charged again", "tenant", tenantID, "ref", ref)
		return after, nil
	}
	keys := make([]string, 0, len(perKey))
	for k := range perKey {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	spends := make(map[string]int64, len(keys))
	for _, k := range keys {
		var spent []int64
		if err := tx.Raw(`INSERT INTO key_spend (tenant_id, key_id, spent_micros, revision, updated_at) VALUES (?, ?, ?, ?, ?)
			ON CONFLICT (tenant_id, key_id) DO UPDATE SET spent_micros = CASE WHEN key_spend.spent_micros > 9223372036854775807 - excluded.spent_micros
				THEN 9223372036854775807 ELSE key_spend.spent_micros + excluded.spent_micros END,
				revision = excluded.revision, updated_at = excluded.updated_at
			RETURNING spent_micros`, tenantID, k, perKey[k], st.Revision, now).Scan(&spent).Error; err != nil {
			return nil, err
		}
		if len(spent) != 1 {
			return nil, fmt.Errorf("billing: the spend of key %s was not written", k)
		}
		spends[k] = spent[0]
	}
	// No audit event per batch: the ledger entry is the record of a debit
	// (the calls themselves are in the request log).
	if st.LowBalanceThresholdMicros != nil && !st.LowBalanceNotified && st.BalanceMicros < *st.LowBalanceThresholdMicros {
		if err := s.lowBalance(ctx, tx, tenantID, st, now); err != nil {
			return nil, err
		}
	}
	apply = func() { s.observe(tenantID, st.BalanceMicros, st.Revision, spends) }
	return after, nil
}

// lowBalance records that the balance fell below the threshold, once until
// a top-up re-arms it.
func (s *Service) lowBalance(ctx context.Context, tx *gorm.DB, tenantID string, st accountState, now time.Time) error {
	if err := tx.Exec("UPDATE billing_accounts SET low_balance_notified = true WHERE tenant_id = ?", tenantID).Error; err != nil {
		return err
	}
	balance, threshold := money.Micros(st.BalanceMicros), money.Micros(*st.LowBalanceThresholdMicros)
	meta := map[string]any{"balance": balance.String(), "threshold": threshold.String(), "currency": s.currency}
	if err := audit.Record(ctx, tx, audit.Entry{TenantID: tenantID, EventType: "billing.low_balance", Resource: "billing_account",
		ResourceID: tenantID, Action: "threshold", Metadata: meta}); err != nil {
		return err
	}
	return notify.RecordTx(tx, notify.Message{TenantID: tenantID, Priority: "high", Metadata: meta,
		Subject: fmt.Sprintf("Your balance is below %s %s", threshold, s.currency),
		Content: fmt.Sprintf("Your organisation's balance is %s %s, below its low-balance threshold of %s %s. "+
			"Top up the balance or redeem a code so that calls keep working.", balance, s.currency, threshold, s.currency)}, now)
}
