package quota

import (
	"context"
	"testing"
	"time"

	"github.com/google/uuid"
	"gorm.io/gorm"

	"github.com/tenantgate/tenantgate/internal/store"
	"github.com/tenantgate/tenantgate/internal/store/storetest"
)

// Metering inside a transaction must never open a second one, even when
// the tenant's cached entitlements have expired: on SQLite the second
// waits for the first's write lock until the busy timeout (a 10 s stall per
// flush, and under load a pool that never drains).
func TestMeteringAfterTheCacheExpiredOpensNoSecondTransaction(t *testing.T) {
	storetest.Each(t, func(t *testing.T, d store.Dialect) {
		s := storetest.Open(t, d)
		ctx := context.Background()
		id := uuid.Must(uuid.NewV7()).String()
		now := time.Now().UTC()
		storetest.Must(t, s.Tx(store.WithPlatform(ctx, "test"), func(tx *gorm.DB) error {
			return tx.Exec("INSERT INTO tenants (id, slug, name, status, plan, created_at, updated_at) VALUES (?, 'meter', 'Meter', 'active', 'pro', ?, ?)",
				id, now, now).Error
		}))
		q := New(s)
		clock := now
		q.now = func() time.Time { return clock }
		q.CountAPICall(id)
		storetest.Must(t, q.Warm(ctx, id))
		clock = clock.Add(PlanCacheTTL + time.Second) // the cached entitlements are stale now
		start := time.Now()
		done := make(chan error, 1)
		go func() { _, err := q.FlushAPICalls(ctx); done <- err }()
		select {
		case err := <-done:
			if err != nil {
				t.Fatalf("flush after the cache expired: %v", err)
			}
		case <-time.After(5 * time.Second):
			t.Fatal("the flush is stuck waiting on its own transaction")
		}
		if waited := time.Since(start); waited > 3*time.Second {
			t.Errorf("the flush waited %s", waited)
		}
		ctx = store.WithTenant(ctx, id)
		storetest.Must(t, s.Tx(ctx, func(tx *gorm.DB) error {
			return q.AddMeteredTx(ctx, tx, id, map[string]int64{"tokens": 5})
		}))
	})
}
