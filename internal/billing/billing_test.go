package billing

import (
	"context"
	"errors"
	"fmt"
	"math"
	"regexp"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/google/uuid"
	"gorm.io/gorm"

	"github.com/tenantgate/tenantgate/internal/actor"
	"github.com/tenantgate/tenantgate/internal/errs"
	"github.com/tenantgate/tenantgate/internal/money"
	"github.com/tenantgate/tenantgate/internal/store"
	"github.com/tenantgate/tenantgate/internal/store/storetest"
)

// clock is a settable time for tests.
type clock struct {
	mu sync.Mutex
	t  time.Time
}

func (c *clock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.t
}

func (c *clock) Add(d time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.t = c.t.Add(d)
}

type fixture struct {
	t     *testing.T
	store *store.Store
	svc   *Service
	clock *clock
	ctx   context.Context
}

const testSecret = "whsec-test-0123456789"

func newFixture(t *testing.T, d store.Dialect) *fixture {
	t.Helper()
	s := storetest.Open(t, d)
	c := &clock{t: time.Now().UTC().Truncate(time.Second)}
	return &fixture{t: t, store: s, clock: c, ctx: actor.With(context.Background(), actor.System("test")),
		svc: New(s, Options{Now: c.Now, WebhookSecret: testSecret})}
}

// tenant creates a tenant row and returns its id.
func (f *fixture) tenant() string {
	f.t.Helper()
	id := uuid.Must(uuid.NewV7()).String()
	now := time.Now().UTC()
	storetest.Must(f.t, f.store.Tx(store.WithPlatform(context.Background(), "test"), func(tx *gorm.DB) error {
		return tx.Exec("INSERT INTO tenants (id, slug, name, status, plan, created_at, updated_at) VALUES (?, ?, ?, 'active', 'free', ?, ?)",
			id, "t-"+id[len(id)-12:], "T", now, now).Error
	}))
	return id
}

func mustMoney(s string) money.Micros {
	m, err := money.Parse(s)
	if err != nil {
		panic(err)
	}
	return m
}

func (f *fixture) topUp(tenantID, amount string) {
	f.t.Helper()
	_, _, err := f.svc.TopUp(f.ctx, tenantID, mustMoney(amount), "", "")
	storetest.Must(f.t, err)
}

func (f *fixture) balance(tenantID string) string {
	f.t.Helper()
	a, err := f.svc.Balance(f.ctx, tenantID)
	storetest.Must(f.t, err)
	return a.Balance.String()
}

// settle settles charges in a transaction scoped to the tenant and runs after.
func (f *fixture) settle(tenantID, ref string, charges ...Charge) {
	f.t.Helper()
	var after func()
	storetest.Must(f.t, f.store.Tx(store.WithTenant(f.ctx, tenantID), func(tx *gorm.DB) error {
		var err error
		after, err = f.svc.SettleTx(f.ctx, tx, tenantID, charges, ref)
		return err
	}))
	after()
}

func (f *fixture) count(tenantID, query string, args ...any) int64 {
	f.t.Helper()
	var n int64
	storetest.Must(f.t, f.store.Tx(store.WithTenant(context.Background(), tenantID), func(tx *gorm.DB) error {
		return tx.Raw(query, append([]any{tenantID}, args...)...).Scan(&n).Error
	}))
	return n
}

func codeOf(err error) string {
	if e, ok := errs.As(err); ok {
		return e.Code
	}
	if err != nil {
		return "untyped: " + err.Error()
	}
	return ""
}

func TestCostArithmetic(t *testing.T) {
	half := mustMoney("1.25")
	tests := []struct {
		name                       string
		price                      Price
		prompt, cached, completion int64
		want                       money.Micros
		wantErr                    bool
	}{
		{"nothing used", Price{InputPerMTok: mustMoney("2.50"), OutputPerMTok: mustMoney("10")}, 0, 0, 0, 0, false},
		{"one million of each", Price{InputPerMTok: mustMoney("2.50"), OutputPerMTok: mustMoney("10")}, 1_000_000, 0, 1_000_000, mustMoney("12.50"), false},
		{"rounds up a fraction of a micro", Price{InputPerMTok: 1, OutputPerMTok: 1}, 1, 0, 0, 1, false},
		{"rounds up once for the sum", Price{InputPerMTok: mustMoney("2.50"), OutputPerMTok: mustMoney("10")}, 1, 0, 1, 13, false},
		{"exact micros stay exact", Price{InputPerMTok: mustMoney("3"), OutputPerMTok: 0}, 1000, 0, 0, 3000, false},
		{"cached defaults to the input price", Price{InputPerMTok: mustMoney("2.50"), OutputPerMTok: mustMoney("10")}, 1_000_000, 400_000, 0, mustMoney("2.50"), false},
		{"cached at its own price", Price{InputPerMTok: mustMoney("2.50"), CachedInputPerMTok: &half, OutputPerMTok: mustMoney("10")}, 1_000_000, 400_000, 100_000,
			mustMoney("1.50") + mustMoney("0.50") + mustMoney("1"), false},
		{"free cached input", Price{InputPerMTok: mustMoney("1"), CachedInputPerMTok: new(money.Micros), OutputPerMTok: 0}, 10, 10, 0, 0, false},
		{"largest price and a huge count fit", Price{InputPerMTok: MaxPricePerMTok, OutputPerMTok: MaxPricePerMTok}, 1_000_000_000, 0, 1_000_000_000,
			2 * 1_000_000_000 * (MaxPricePerMTok / 1_000_000), false},
		{"overflow is an error, not a wrap", Price{InputPerMTok: MaxPricePerMTok, OutputPerMTok: MaxPricePerMTok}, math.MaxInt64, 0, math.MaxInt64, 0, true},
		{"just past int64 is an error", Price{InputPerMTok: 2_000_000, OutputPerMTok: 0}, math.MaxInt64/2 + 1, 0, 0, 0, true},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			got, err := cost(tc.price, tc.prompt, tc.cached, tc.completion)
			if (err != nil) != tc.wantErr {
				t.Fatalf("cost error %v, want error %v", err, tc.wantErr)
			}
			if diff := cmp.Diff(got, tc.want); diff != "" {
				t.Errorf("cost (-got +want):\n%s", diff)
			}
		})
	}
}

func TestCostUsesOverrideThenPlatformPrice(t *testing.T) {
	storetest.Each(t, func(t *testing.T, d store.Dialect) {
		f := newFixture(t, d)
		a, b := f.tenant(), f.tenant()
		_, err := f.svc.SetPrice(f.ctx, "", "openai/gpt-4o", PriceInput{InputPerMTok: mustMoney("2.50"), OutputPerMTok: mustMoney("10")})
		storetest.Must(t, err)
		_, err = f.svc.SetPrice(f.ctx, a, "openai/gpt-4o", PriceInput{InputPerMTok: mustMoney("1"), OutputPerMTok: mustMoney("2")})
		storetest.Must(t, err)
		_, err = f.svc.SetPrice(f.ctx, a, "private@a:v1", PriceInput{InputPerMTok: mustMoney("5"), OutputPerMTok: mustMoney("5")})
		storetest.Must(t, err)
		type result struct {
			Cost string
			OK   bool
		}
		tests := []struct {
			tenant, model string
			want          result
		}{
			{a, "openai/gpt-4o", result{"3.00", true}},  // the override
			{b, "openai/gpt-4o", result{"12.50", true}}, // the platform price
			{a, "private@a:v1", result{"10.00", true}},  // a's own model
			{b, "private@a:v1", result{"0.00", false}},  // b never sees a's override
			{a, "unknown-model", result{"0.00", false}}, // no price at all
			{b, "OPENAI/GPT-4O", result{"0.00", false}}, // names are exact
			{a, "openai/gpt-4o-mini", result{"0.00", false}},
		}
		for _, tc := range tests {
			c, ok, err := f.svc.Cost(f.ctx, tc.tenant, tc.model, 1_000_000, 0, 1_000_000)
			storetest.Must(t, err)
			if diff := cmp.Diff(result{c.String(), ok}, tc.want); diff != "" {
				t.Errorf("Cost(%s, %s) (-got +want):\n%s", tc.tenant[len(tc.tenant)-4:], tc.model, diff)
			}
		}
		if _, _, err := f.svc.Cost(f.ctx, a, "openai/gpt-4o", 10, 11, 0); codeOf(err) != errs.CodeInvalidRequest {
			t.Errorf("cached > prompt: got %v, want INVALID_REQUEST", err)
		}
		// A deleted override falls back to the platform price at once.
		storetest.Must(t, f.svc.DeletePrice(f.ctx, a, "openai/gpt-4o"))
		if c, _, _ := f.svc.Cost(f.ctx, a, "openai/gpt-4o", 1_000_000, 0, 1_000_000); c.String() != "12.50" {
			t.Errorf("after deleting the override: %s, want 12.50", c)
		}
		if err := f.svc.DeletePrice(f.ctx, a, "openai/gpt-4o"); codeOf(err) != CodePriceNotFound {
			t.Errorf("deleting a missing override: %v, want PRICE_NOT_FOUND", err)
		}
	})
}

func TestPricesReloadEveryTenSeconds(t *testing.T) {
	f := newFixture(t, store.SQLite)
	a := f.tenant()
	_, err := f.svc.SetPrice(f.ctx, "", "m", PriceInput{InputPerMTok: mustMoney("1"), OutputPerMTok: mustMoney("1")})
	storetest.Must(t, err)
	// Another process changes the price in the database.
	storetest.Must(t, f.store.Tx(store.WithPlatform(f.ctx, "test"), func(tx *gorm.DB) error {
		return tx.Exec("UPDATE model_prices SET input_per_mtok_micros = 2000000 WHERE model = 'm'").Error
	}))
	got := func() string {
		c, _, err := f.svc.Cost(f.ctx, a, "m", 1_000_000, 0, 0)
		storetest.Must(t, err)
		return c.String()
	}
	if g := got(); g != "1.00" {
		t.Errorf("within 10 s: %s, want the cached 1.00", g)
	}
	f.clock.Add(PriceCacheTTL)
	if g := got(); g != "2.00" {
		t.Errorf("after 10 s: %s, want the new 2.00", g)
	}
}

func TestPriceValidation(t *testing.T) {
	f := newFixture(t, store.SQLite)
	a := f.tenant()
	tests := []struct {
		name, tenant, model string
		in                  PriceInput
		want                string // the field in error
	}{
		{"empty model", "", "", PriceInput{}, "model"},
		{"space in model", "", "gpt 4", PriceInput{}, "model"},
		{"model too long", "", strings.Repeat("m", 201), PriceInput{}, "model"},
		{"negative input", "", "m", PriceInput{InputPerMTok: -1}, "inputPerMTok"},
		{"over the maximum", a, "m", PriceInput{OutputPerMTok: MaxPricePerMTok + 1}, "outputPerMTok"},
		{"bad tenant", "nope", "m", PriceInput{}, "tenantId"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			_, err := f.svc.SetPrice(f.ctx, tc.tenant, tc.model, tc.in)
			e, ok := errs.As(err)
			if !ok || e.Code != errs.CodeInvalidRequest || e.Fields[tc.want] == "" {
				t.Errorf("got %v, want INVALID_REQUEST on %s", err, tc.want)
			}
		})
	}
	if _, err := f.svc.SetPrice(f.ctx, "", strings.Repeat("m", 200), PriceInput{InputPerMTok: MaxPricePerMTok}); err != nil {
		t.Errorf("a 200-character model at the maximum price: %v", err)
	}
}

// Fifty concurrent reservations on one tenant never hold more than its balance.
func TestReserveNeverExceedsBalance(t *testing.T) {
	storetest.Each(t, func(t *testing.T, d store.Dialect) {
		f := newFixture(t, d)
		a := f.tenant()
		f.topUp(a, "10.00")
		var wg sync.WaitGroup
		var mu sync.Mutex
		var holds []*Hold
		refused := map[string]int{}
		for range 50 {
			wg.Go(func() {
				h, err := f.svc.Reserve(f.ctx, a, "", nil, mustMoney("1.00"))
				mu.Lock()
				defer mu.Unlock()
				if err != nil {
					refused[codeOf(err)]++
					return
				}
				holds = append(holds, h)
			})
		}
		wg.Wait()
		if diff := cmp.Diff(map[string]int{"held": len(holds), errs.CodeInsufficientBalance: refused[errs.CodeInsufficientBalance]},
			map[string]int{"held": 10, errs.CodeInsufficientBalance: 40}); diff != "" {
			t.Errorf("reservations (-got +want):\n%s", diff)
		}
		// The refusal is a 402 that says the balance, the need and what to do.
		_, err := f.svc.Reserve(f.ctx, a, "", nil, mustMoney("0.50"))
		e, _ := errs.As(err)
		if e == nil || e.Kind != errs.KindPaymentRequired || !strings.Contains(e.Msg, "10.00 USD") || !strings.Contains(e.Msg, "0.50 USD") ||
			!strings.Contains(e.Msg, "top up") {
			t.Errorf("refusal: %v", err)
		}
		// Released holds (twice, and nil) give the balance back exactly once.
		for _, h := range holds {
			f.svc.Release(h)
			f.svc.Release(h)
		}
		f.svc.Release(nil)
		h, err := f.svc.Reserve(f.ctx, a, "", nil, mustMoney("10.00"))
		storetest.Must(t, err)
		if _, err := f.svc.Reserve(f.ctx, a, "", nil, 1); codeOf(err) != errs.CodeInsufficientBalance {
			t.Errorf("one micro over the balance: %v", err)
		}
		f.svc.Release(h)
		if _, err := f.svc.Reserve(f.ctx, a, "", nil, -1); codeOf(err) != errs.CodeInvalidRequest {
			t.Errorf("negative amount: %v", err)
		}
	})
}

// Reserve answers from memory within the TTL and reads the database after it.
func TestReserveRefreshesAfterTTL(t *testing.T) {
	f := newFixture(t, store.SQLite)
	a := f.tenant()
	f.topUp(a, "1.00")
	h, err := f.svc.Reserve(f.ctx, a, "", nil, mustMoney("1.00"))
	storetest.Must(t, err)
	f.svc.Release(h)
	// Another process tops up: not seen within the TTL ...
	other := New(f.store, Options{Now: f.clock.Now})
	_, _, err = other.TopUp(f.ctx, a, mustMoney("5.00"), "elsewhere", "")
	storetest.Must(t, err)
	if _, err := f.svc.Reserve(f.ctx, a, "", nil, mustMoney("3.00")); codeOf(err) != errs.CodeInsufficientBalance {
		t.Errorf("within the TTL: %v, want the cached balance to refuse", err)
	}
	// ... and seen after it.
	f.clock.Add(5 * time.Second)
	if _, err := f.svc.Reserve(f.ctx, a, "", nil, mustMoney("3.00")); err != nil {
		t.Errorf("after the TTL: %v", err)
	}
}

func TestKeyBudgets(t *testing.T) {
	storetest.Each(t, func(t *testing.T, d store.Dialect) {
		f := newFixture(t, d)
		a := f.tenant()
		f.topUp(a, "100")
		key, other := uuid.Must(uuid.NewV7()).String(), uuid.Must(uuid.NewV7()).String()
		budget := int64(mustMoney("3.00"))
		h1, err := f.svc.Reserve(f.ctx, a, key, &budget, mustMoney("2.00"))
		storetest.Must(t, err)
		_, err = f.svc.Reserve(f.ctx, a, key, &budget, mustMoney("1.50"))
		if e, _ := errs.As(err); codeOf(err) != errs.CodeKeyBudgetExceeded || e.Kind != errs.KindPaymentRequired {
			t.Fatalf("held 2 of 3, asking 1.50: %v, want KEY_BUDGET_EXCEEDED", err)
		}
		// Another key, and the same key without a budget, are not limited by it.
		if _, err := f.svc.Reserve(f.ctx, a, other, &budget, mustMoney("3.00")); err != nil {
			t.Errorf("another key: %v", err)
		}
		// Spend is settled: 2.00 on the key; the budget has 1.00 left.
		f.settle(a, "batch-1", Charge{Hold: h1, KeyID: key, Amount: mustMoney("2.00")})
		if _, err := f.svc.Reserve(f.ctx, a, key, &budget, mustMoney("1.000001")); codeOf(err) != errs.CodeKeyBudgetExceeded {
			t.Errorf("spent 2 of 3, asking 1.000001: %v", err)
		}
		h, err := f.svc.Reserve(f.ctx, a, key, &budget, mustMoney("1.00"))
		storetest.Must(t, err)
		f.svc.Release(h)
		// A fresh process reads the key's spend from the database.
		fresh := New(f.store, Options{Now: f.clock.Now})
		if _, err := fresh.Reserve(f.ctx, a, key, &budget, mustMoney("1.50")); codeOf(err) != errs.CodeKeyBudgetExceeded {
			t.Errorf("fresh process, spent 2 of 3, asking 1.50: %v", err)
		}
		if n := f.count(a, "SELECT spent_micros FROM key_spend WHERE tenant_id = ? AND key_id = ?", key); n != int64(mustMoney("2.00")) {
			t.Errorf("key_spend = %d", n)
		}
	})
}

func TestSettleTx(t *testing.T) {
	storetest.Each(t, func(t *testing.T, d store.Dialect) {
		f := newFixture(t, d)
		a := f.tenant()
		f.topUp(a, "10.00")
		five := mustMoney("5.00")
		_, err := f.svc.SetLowBalanceThreshold(f.ctx, a, &five)
		storetest.Must(t, err)
		reserve := func(amount string) *Hold {
			h, err := f.svc.Reserve(f.ctx, a, "", nil, mustMoney(amount))
			storetest.Must(t, err)
			return h
		}
		lows := func() (notes, events int64) {
			return f.count(a, "SELECT count(*) FROM notifications WHERE tenant_id = ?"),
				f.count(a, "SELECT count(*) FROM audit_events WHERE tenant_id = ? AND event_type = 'billing.low_balance'")
		}
		// Two calls cost 3.00 together, held at 4.00: one entry, 7.00 left, no notice.
		f.settle(a, "b1", Charge{Hold: reserve("2"), Amount: mustMoney("1.00")}, Charge{Hold: reserve("2"), Amount: mustMoney("2.00")})
		if got := f.balance(a); got != "7.00" {
			t.Errorf("after the first batch: %s, want 7.00", got)
		}
		if n, e := lows(); n != 0 || e != 0 {
			t.Errorf("above the threshold: %d notifications, %d events", n, e)
		}
		// The holds were released: exactly the 7.00 can be reserved from memory.
		h := reserve("7.00")
		f.svc.Release(h)
		// Crossing below 5.00 notifies once; staying below does not again.
		f.settle(a, "b2", Charge{Hold: reserve("3"), Amount: mustMoney("3.00")})
		f.settle(a, "b3", Charge{Hold: reserve("1"), Amount: mustMoney("1.00")})
		if n, e := lows(); n != 1 || e != 1 {
			t.Errorf("below the threshold twice: %d notifications, %d events; want 1 and 1", n, e)
		}
		// A top-up above the threshold re-arms it; the next crossing notifies again.
		f.topUp(a, "10.00")
		f.settle(a, "b4", Charge{Hold: reserve("9"), Amount: mustMoney("9.000001")})
		if n, e := lows(); n != 2 || e != 2 {
			t.Errorf("after re-arming: %d notifications, %d events; want 2 and 2", n, e)
		}
		// The same batch again is not charged twice; zero charges release their holds.
		f.settle(a, "b4", Charge{Hold: reserve("1"), Amount: mustMoney("1.00")})
		f.settle(a, "b5", Charge{Hold: reserve("2.999999"), Amount: 0})
		if got := f.balance(a); got != "3.999999" {
			t.Errorf("balance %s, want 3.999999", got)
		}
		h = reserve("3.999999")
		f.svc.Release(h)
		// Usage may take the balance below zero (the calls were made).
		f.settle(a, "b6", Charge{Amount: mustMoney("5")})
		if got := f.balance(a); got != "-1.000001" {
			t.Errorf("overdrawn balance %s, want -1.000001", got)
		}
		// The ledger adds up to the balance, and every usage entry says its calls.
		entries, _, err := f.svc.Ledger(f.ctx, a, "", store.Page{Limit: 100})
		storetest.Must(t, err)
		var sum money.Micros
		for _, e := range entries {
			sum += e.Amount
		}
		if sum.String() != "-1.000001" || entries[0].BalanceAfter.String() != "-1.000001" {
			t.Errorf("ledger sum %s, newest balanceAfter %s; want -1.000001", sum, entries[0].BalanceAfter)
		}
		usage, _, err := f.svc.Ledger(f.ctx, a, KindUsage, store.Page{Limit: 100})
		storetest.Must(t, err)
		var got []string
		for _, e := range usage {
			got = append(got, e.Reference+" "+e.Amount.String()+" "+e.Description)
		}
		want := []string{"b6 -5.00 usage of 1 call", "b4 -9.000001 usage of 1 call", "b3 -1.00 usage of 1 call", "b2 -3.00 usage of 1 call",
			"b1 -3.00 usage of 2 calls"}
		if diff := cmp.Diff(got, want); diff != "" {
			t.Errorf("usage entries (-got +want):\n%s", diff)
		}
		if n := f.count(a, "SELECT count(*) FROM audit_events WHERE tenant_id = ? AND event_type = 'billing.usage_charged'"); n != 0 {
			t.Errorf("%d audit events for usage batches, want none (the ledger records them)", n)
		}
	})
}

// A failed transaction debits nothing; the caller releases the holds.
func TestSettleTxRollback(t *testing.T) {
	storetest.Each(t, func(t *testing.T, d store.Dialect) {
		f := newFixture(t, d)
		a := f.tenant()
		f.topUp(a, "2.00")
		h, err := f.svc.Reserve(f.ctx, a, "", nil, mustMoney("2.00"))
		storetest.Must(t, err)
		boom := errors.New("the request log could not be written")
		err = f.store.Tx(store.WithTenant(f.ctx, a), func(tx *gorm.DB) error {
			if _, err := f.svc.SettleTx(f.ctx, tx, a, []Charge{{Hold: h, Amount: mustMoney("2.00")}}, "rolled-back"); err != nil {
				return err
			}
			return boom
		})
		if !errors.Is(err, boom) {
			t.Fatalf("got %v", err)
		}
		f.svc.Release(h)
		if got := f.balance(a); got != "2.00" {
			t.Errorf("balance after a rolled-back settlement: %s, want 2.00", got)
		}
		if _, err := f.svc.Reserve(f.ctx, a, "", nil, mustMoney("2.00")); err != nil {
			t.Errorf("the released hold is available again: %v", err)
		}
		// A settlement in another tenant's transaction is refused.
		b := f.tenant()
		err = f.store.Tx(store.WithTenant(f.ctx, b), func(tx *gorm.DB) error {
			_, err := f.svc.SettleTx(f.ctx, tx, a, []Charge{{Amount: 1}}, "cross")
			return err
		})
		if err == nil {
			t.Error("settling tenant a inside tenant b's transaction succeeded")
		}
	})
}

func TestTopUpIdempotency(t *testing.T) {
	storetest.Each(t, func(t *testing.T, d store.Dialect) {
		f := newFixture(t, d)
		a := f.tenant()
		e1, created, err := f.svc.TopUp(f.ctx, a, mustMoney("10.50"), "order-1", "first")
		storetest.Must(t, err)
		e2, again, err := f.svc.TopUp(f.ctx, a, mustMoney("10.50"), "order-1", "retry")
		storetest.Must(t, err)
		if !created || again || e1.ID != e2.ID || e2.BalanceAfter.String() != "10.50" {
			t.Errorf("created %v then %v, entries %s and %s (after %s)", created, again, e1.ID, e2.ID, e2.BalanceAfter)
		}
		_, _, err = f.svc.TopUp(f.ctx, a, mustMoney("11"), "order-1", "")
		if e, _ := errs.As(err); codeOf(err) != CodeIdempotencyConflict || e.Kind != errs.KindConflict {
			t.Errorf("same key, other amount: %v, want 409 IDEMPOTENCY_CONFLICT", err)
		}
		// Concurrent deliveries of one key credit once.
		var wg sync.WaitGroup
		var mu sync.Mutex
		createdN := 0
		for range 10 {
			wg.Go(func() {
				_, c, err := f.svc.TopUp(f.ctx, a, mustMoney("1"), "order-2", "")
				if err != nil {
					t.Error(err)
				}
				mu.Lock()
				defer mu.Unlock()
				if c {
					createdN++
				}
			})
		}
		wg.Wait()
		if got := f.balance(a); got != "11.50" || createdN != 1 {
			t.Errorf("balance %s with %d created, want 11.50 and 1", got, createdN)
		}
		if n := f.count(a, "SELECT count(*) FROM audit_events WHERE tenant_id = ? AND event_type = 'billing.topup'"); n != 2 {
			t.Errorf("%d billing.topup events, want 2", n)
		}
		for _, tc := range []struct {
			amount money.Micros
			key    string
			field  string
		}{{0, "k", "amount"}, {-5, "k", "amount"}, {MaxCredit + 1, "k", "amount"}, {1, "bad key", "idempotencyKey"}, {1, strings.Repeat("k", 201), "idempotencyKey"}} {
			_, _, err := f.svc.TopUp(f.ctx, a, tc.amount, tc.key, "")
			if e, ok := errs.As(err); !ok || e.Fields[tc.field] == "" {
				t.Errorf("TopUp(%d, %q): %v, want a problem with %s", tc.amount, tc.key, err, tc.field)
			}
		}
	})
}

var codeFormat = regexp.MustCompile(`^TGR-[0-9A-HJKMNP-TV-Z]{5}-[0-9A-HJKMNP-TV-Z]{5}-[0-9A-HJKMNP-TV-Z]{5}-[0-9A-HJKMNP-TV-Z]{5}$`)

// Twenty concurrent redemptions of one code, from two tenants: one wins.
func TestRedeemOnceUnderConcurrency(t *testing.T) {
	storetest.Each(t, func(t *testing.T, d store.Dialect) {
		f := newFixture(t, d)
		a, b := f.tenant(), f.tenant()
		batch, err := f.svc.GenerateCodes(f.ctx, 1, mustMoney("5.00"), nil, "launch")
		storetest.Must(t, err)
		code := batch.Codes[0]
		if !codeFormat.MatchString(code) {
			t.Fatalf("code %q is not TGR-XXXXX-XXXXX-XXXXX-XXXXX", code)
		}
		var wg sync.WaitGroup
		var mu sync.Mutex
		results := map[string]int{}
		for i := range 20 {
			wg.Go(func() {
				tenantID, typed := a, code
				if i%2 == 1 {
					tenantID, typed = b, strings.ToLower(strings.ReplaceAll(code, "-", ""))
				}
				_, err := f.svc.Redeem(f.ctx, tenantID, typed)
				mu.Lock()
				defer mu.Unlock()
				if err == nil {
					results["redeemed"]++
				} else {
					results[codeOf(err)]++
				}
			})
		}
		wg.Wait()
		if diff := cmp.Diff(results, map[string]int{"redeemed": 1, CodeCodeAlreadyRedeemed: 19}); diff != "" {
			t.Errorf("redemptions (-got +want):\n%s", diff)
		}
		total := mustMoney(f.balance(a)) + mustMoney(f.balance(b))
		if total.String() != "5.00" {
			t.Errorf("credited %s in all, want 5.00", total)
		}
		codes, _, err := f.svc.ListCodes(f.ctx, CodeFilter{BatchID: batch.ID}, store.Page{Limit: 10})
		storetest.Must(t, err)
		if len(codes) != 1 || codes[0].Status != CodeRedeemed || codes[0].RedeemedTenantID == nil {
			t.Errorf("codes after redemption: %+v", codes)
		}
	})
}

func TestRedeemRefusals(t *testing.T) {
	storetest.Each(t, func(t *testing.T, d store.Dialect) {
		f := newFixture(t, d)
		a := f.tenant()
		soon := f.clock.Now().Add(time.Hour)
		batch, err := f.svc.GenerateCodes(f.ctx, 4, mustMoney("1.00"), &soon, "")
		storetest.Must(t, err)
		disabled, expiring, plain, redeemed := batch.Codes[0], batch.Codes[1], batch.Codes[2], batch.Codes[3]
		list, _, err := f.svc.ListCodes(f.ctx, CodeFilter{BatchID: batch.ID}, store.Page{Limit: 10})
		storetest.Must(t, err)
		byLast4 := map[string]string{}
		for _, c := range list {
			byLast4[c.Last4] = c.ID
		}
		last4 := func(code string) string { return code[len(code)-4:] }
		_, err = f.svc.DisableCode(f.ctx, byLast4[last4(disabled)])
		storetest.Must(t, err)
		_, err = f.svc.Redeem(f.ctx, a, redeemed)
		storetest.Must(t, err)
		f.clock.Add(30 * time.Minute)
		// Codes are read as people type them.
		if _, err := f.svc.Redeem(f.ctx, a, "  "+strings.ToLower(plain)+" "); err != nil {
			t.Errorf("lower case with spaces: %v", err)
		}
		f.clock.Add(time.Hour) // the batch has expired
		var msgs []string
		for _, tc := range []struct {
			name, code, want string
		}{
			{"unknown", "TGR-00000-00000-00000-00000", CodeCodeNotFound},
			{"malformed", "hello", CodeCodeNotFound},
			{"disabled", disabled, CodeCodeNotFound},
			{"expired", expiring, CodeCodeNotFound},
			{"redeemed", redeemed, CodeCodeAlreadyRedeemed},
		} {
			_, err := f.svc.Redeem(f.ctx, a, tc.code)
			if codeOf(err) != tc.want {
				t.Errorf("%s: %v, want %s", tc.name, err, tc.want)
			}
			if e, _ := errs.As(err); e != nil && tc.want == CodeCodeNotFound {
				msgs = append(msgs, e.Msg)
			}
		}
		for _, m := range msgs {
			if m != msgs[0] {
				t.Errorf("refusals differ (%q vs %q): codes can be probed", m, msgs[0])
			}
		}
		if got := f.balance(a); got != "2.00" {
			t.Errorf("balance %s, want 2.00", got)
		}
		// Disabling a redeemed code is refused; an unknown id is 404.
		if _, err := f.svc.DisableCode(f.ctx, byLast4[last4(redeemed)]); codeOf(err) != CodeCodeAlreadyRedeemed {
			t.Errorf("disable a redeemed code: %v", err)
		}
		if _, err := f.svc.DisableCode(f.ctx, uuid.Must(uuid.NewV7()).String()); codeOf(err) != CodeCodeNotFound {
			t.Errorf("disable an unknown code: %v", err)
		}
		// Status filters.
		count := func(status string) int {
			l, _, err := f.svc.ListCodes(f.ctx, CodeFilter{Status: status}, store.Page{Limit: 10})
			storetest.Must(t, err)
			return len(l)
		}
		got := map[string]int{}
		for _, st := range []string{CodeActive, CodeRedeemed, CodeDisabled, CodeExpired} {
			got[st] = count(st)
		}
		if diff := cmp.Diff(got, map[string]int{CodeActive: 0, CodeRedeemed: 2, CodeDisabled: 1, CodeExpired: 1}); diff != "" {
			t.Errorf("codes by status (-got +want):\n%s", diff)
		}
		// Only hashes are stored: no plaintext code in the table or the audit log.
		leaked := 0
		storetest.Must(t, f.store.Tx(store.WithPlatform(f.ctx, "test"), func(tx *gorm.DB) error {
			for _, table := range []string{"redemption_codes", "audit_events", "ledger_entries"} {
				var rows []map[string]any
				if err := tx.Table(table).Find(&rows).Error; err != nil {
					return err
				}
				for _, r := range rows {
					for _, c := range batch.Codes {
						raw := strings.ReplaceAll(strings.TrimPrefix(c, "TGR-"), "-", "")
						if strings.Contains(fmt.Sprint(r), raw) || strings.Contains(fmt.Sprint(r), c) {
							leaked++
						}
					}
				}
			}
			return nil
		}))
		if leaked != 0 {
			t.Errorf("%d stored rows contain a plaintext code", leaked)
		}
	})
}

func TestGenerateCodesValidation(t *testing.T) {
	f := newFixture(t, store.SQLite)
	past := f.clock.Now().Add(-time.Second)
	for _, tc := range []struct {
		count  int
		amount money.Micros
		exp    *time.Time
		field  string
	}{{0, 1, nil, "count"}, {1001, 1, nil, "count"}, {1, 0, nil, "amount"}, {1, 1, &past, "expiresAt"}} {
		_, err := f.svc.GenerateCodes(f.ctx, tc.count, tc.amount, tc.exp, "")
		if e, ok := errs.As(err); !ok || e.Fields[tc.field] == "" {
			t.Errorf("GenerateCodes(%d, %d): %v, want a problem with %s", tc.count, tc.amount, err, tc.field)
		}
	}
	b, err := f.svc.GenerateCodes(f.ctx, 1000, 1, nil, "")
	storetest.Must(t, err)
	seen := map[string]bool{}
	for _, c := range b.Codes {
		if seen[c] || !codeFormat.MatchString(c) {
			t.Fatalf("code %q repeated or malformed", c)
		}
		seen[c] = true
	}
}

func TestNormalizeCode(t *testing.T) {
	for _, tc := range []struct {
		in, want string
		ok       bool
	}{
		{"TGR-ABCDE-FGHJK-MNPQR-STVWX", "ABCDEFGHJKMNPQRSTVWX", true},
		{"tgr-abcde-fghjk-mnpqr-stvwx", "ABCDEFGHJKMNPQRSTVWX", true},
		{"abcdefghjkmnpqrstvwx", "ABCDEFGHJKMNPQRSTVWX", true},
		{"TGRO0ILL-1234512345123451", "", false},
		{"TGR-OOOOO-IIIII-LLLLL-00000", "00000111111111100000", true},
		{"TGR-ABCDE-FGHJK-MNPQR-STVWU", "", false}, // U is not Crockford
		{"TGR-ABCDE", "", false},
		{"", "", false},
	} {
		got, ok := normalizeCode(tc.in)
		if diff := cmp.Diff([]any{got, ok}, []any{tc.want, tc.ok}); diff != "" {
			t.Errorf("normalizeCode(%q) (-got +want):\n%s", tc.in, diff)
		}
	}
}

func TestVerifyWebhook(t *testing.T) {
	f := newFixture(t, store.SQLite)
	now := f.clock.Now()
	body := []byte(`{"id":"pay_1","tenantId":"x","amount":"10.00","status":"succeeded"}`)
	tests := []struct {
		name   string
		header string
		body   []byte
		want   string
	}{
		{"valid", SignWebhook(testSecret, now, body), body, ""},
		{"valid a minute old", SignWebhook(testSecret, now.Add(-time.Minute), body), body, ""},
		{"one of two signatures valid (rotation)", SignWebhook(testSecret, now, body) + ",v1=" + strings.Repeat("ab", 32), body, ""},
		{"wrong secret", SignWebhook("another-secret", now, body), body, CodeInvalidSignature},
		{"stale timestamp", SignWebhook(testSecret, now.Add(-6*time.Minute), body), body, CodeInvalidSignature},
		{"timestamp in the future", SignWebhook(testSecret, now.Add(6*time.Minute), body), body, CodeInvalidSignature},
		{"tampered body", SignWebhook(testSecret, now, body), []byte(strings.Replace(string(body), "10.00", "99.00", 1)), CodeInvalidSignature},
		{"no header", "", body, CodeInvalidSignature},
		{"no signature", fmt.Sprintf("t=%d", now.Unix()), body, CodeInvalidSignature},
		{"not hex", fmt.Sprintf("t=%d,v1=zz", now.Unix()), body, CodeInvalidSignature},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			err := f.svc.VerifyWebhook(tc.header, tc.body)
			if got := codeOf(err); got != tc.want {
				t.Errorf("got %q (%v), want %q", got, err, tc.want)
			}
			if e, ok := errs.As(err); ok && e.Kind != errs.KindUnauthenticated {
				t.Errorf("kind %v, want unauthenticated", e.Kind)
			}
		})
	}
	off := New(f.store, Options{})
	err := off.VerifyWebhook(SignWebhook("", now, body), body)
	if e, ok := errs.As(err); !ok || e.Kind != errs.KindUnavailable || !strings.Contains(e.Msg, "TENANTGATE_PAYMENT_WEBHOOK_SECRET") {
		t.Errorf("without a secret: %v, want 503 naming TENANTGATE_PAYMENT_WEBHOOK_SECRET", err)
	}
}

// Neither tenant sees the other's balance, ledger or prices, through the
// service or (PostgreSQL) through row-level security alone.
func TestTenantsDoNotSeeEachOther(t *testing.T) {
	storetest.Each(t, func(t *testing.T, d store.Dialect) {
		f := newFixture(t, d)
		a, b := f.tenant(), f.tenant()
		f.topUp(a, "7.00")
		f.topUp(b, "3.00")
		_, err := f.svc.SetPrice(f.ctx, a, "a-model", PriceInput{InputPerMTok: 1, OutputPerMTok: 1})
		storetest.Must(t, err)
		_, err = f.svc.SetPrice(f.ctx, b, "b-model", PriceInput{InputPerMTok: 1, OutputPerMTok: 1})
		storetest.Must(t, err)
		_, err = f.svc.SetPrice(f.ctx, "", "shared", PriceInput{InputPerMTok: 1, OutputPerMTok: 1})
		storetest.Must(t, err)
		for _, tc := range []struct{ me, other, balance, model, otherModel string }{{a, b, "7.00", "a-model", "b-model"}, {b, a, "3.00", "b-model", "a-model"}} {
			if got := f.balance(tc.me); got != tc.balance {
				t.Errorf("balance %s, want %s", got, tc.balance)
			}
			entries, _, err := f.svc.Ledger(f.ctx, tc.me, "", store.Page{Limit: 100})
			storetest.Must(t, err)
			if len(entries) != 1 || entries[0].TenantID != tc.me {
				t.Errorf("ledger of one tenant holds %d entries: %+v", len(entries), entries)
			}
			prices, err := f.svc.TenantPrices(f.ctx, tc.me)
			storetest.Must(t, err)
			var models []string
			for _, p := range prices {
				models = append(models, p.Model+":"+p.Source())
			}
			if diff := cmp.Diff(models, []string{tc.model + ":tenant", "shared:platform"}); diff != "" {
				t.Errorf("price list (-got +want):\n%s", diff)
			}
			if _, ok, _ := f.svc.Cost(f.ctx, tc.me, tc.otherModel, 1, 0, 1); ok {
				t.Errorf("a tenant is priced by the other's override")
			}
			if d != store.Postgres {
				continue
			}
			// RLS alone: raw SQL without any tenant filter sees only this tenant's rows.
			var seen []string
			storetest.Must(t, f.store.Tx(store.WithTenant(f.ctx, tc.me), func(tx *gorm.DB) error {
				for _, table := range []string{"billing_accounts", "ledger_entries", "model_prices"} {
					var ids []string
					if err := tx.Raw("SELECT DISTINCT tenant_id::text FROM " + table).Scan(&ids).Error; err != nil {
						return err
					}
					seen = append(seen, ids...)
				}
				return nil
			}))
			if diff := cmp.Diff(seen, []string{tc.me, tc.me, tc.me}); diff != "" {
				t.Errorf("tenants seen through RLS alone in billing_accounts, ledger_entries, model_prices (-got +want):\n%s", diff)
			}
		}
	})
}

func TestPurgeRemovesBillingRows(t *testing.T) {
	storetest.Each(t, func(t *testing.T, d store.Dialect) {
		f := newFixture(t, d)
		a, b := f.tenant(), f.tenant()
		for _, id := range []string{a, b} {
			f.topUp(id, "5")
			f.settle(id, "batch", Charge{KeyID: uuid.Must(uuid.NewV7()).String(), Amount: 1})
			_, err := f.svc.SetPrice(f.ctx, id, "m", PriceInput{InputPerMTok: 1, OutputPerMTok: 1})
			storetest.Must(t, err)
		}
		_, err := f.store.PurgeTenant(context.Background(), a)
		storetest.Must(t, err)
		for _, table := range []string{"billing_accounts", "ledger_entries", "key_spend", "model_prices"} {
			if n := f.count(a, "SELECT count(*) FROM "+table+" WHERE tenant_id = ?"); n != 0 {
				t.Errorf("%s keeps %d rows of the purged tenant", table, n)
			}
			if n := f.count(b, "SELECT count(*) FROM "+table+" WHERE tenant_id = ?"); n == 0 {
				t.Errorf("%s lost the other tenant's rows", table)
			}
		}
	})
}

func TestLedgerPages(t *testing.T) {
	f := newFixture(t, store.SQLite)
	a := f.tenant()
	for i := range 5 {
		_, _, err := f.svc.TopUp(f.ctx, a, money.Micros(i+1), fmt.Sprintf("k%d", i), "")
		storetest.Must(t, err)
	}
	var got []string
	p := store.Page{Limit: 2}
	for {
		items, next, err := f.svc.Ledger(f.ctx, a, KindTopUp, p)
		storetest.Must(t, err)
		for _, e := range items {
			got = append(got, e.Reference)
		}
		if next == nil {
			break
		}
		p, err = store.ParsePage("2", *next)
		storetest.Must(t, err)
	}
	if diff := cmp.Diff(got, []string{"k4", "k3", "k2", "k1", "k0"}); diff != "" {
		t.Errorf("pages (-got +want):\n%s", diff)
	}
	if _, _, err := f.svc.Ledger(f.ctx, a, "bonus", store.Page{Limit: 1}); codeOf(err) != errs.CodeInvalidRequest {
		t.Errorf("unknown kind: %v", err)
	}
}
