package store_test

import (
	"context"
	"errors"
	"sync"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"gorm.io/gorm"

	"github.com/tenantgate/tenantgate/internal/store"
	"github.com/tenantgate/tenantgate/internal/store/storetest"
)

// A transaction opened inside another of the same line of work is refused
// at once with ErrNestedTx (and counted), whichever way the inner call got
// its context: the outer ctx passed down, a scope derived from it, or
// store.Read. On SQLite it used to wait for its own caller's write lock
// until the 10 s busy timeout.
func TestTxRefusesATransactionInsideATransaction(t *testing.T) {
	storetest.Each(t, func(t *testing.T, d store.Dialect) {
		db := storetest.New(t, d)
		// Not storetest.Open: its clean-up fails any test that leaves a refusal counted.
		s, err := store.Open(context.Background(), store.Config{URL: db.URL, PlatformURL: db.PlatformURL})
		storetest.Must(t, err)
		t.Cleanup(func() { s.Close() })
		tenant, other := newID(), newID()
		read := func(ctx context.Context) error {
			_, err := store.Read(ctx, s, func(tx *gorm.DB) (int64, error) {
				var n int64
				return n, tx.Raw("SELECT 1").Scan(&n).Error
			})
			return err
		}
		cases := []struct {
			name  string
			outer context.Context
			inner func(ctx context.Context) error
		}{
			{"the same context", store.WithTenant(context.Background(), tenant), read},
			{"another tenant's scope derived from it", store.WithTenant(context.Background(), tenant),
				func(ctx context.Context) error { return read(store.WithTenant(ctx, other)) }},
			{"platform scope derived from it", store.WithTenant(context.Background(), tenant),
				func(ctx context.Context) error { return read(store.WithPlatform(ctx, "test")) }},
			{"inside a platform transaction", store.WithPlatform(context.Background(), "test"),
				func(ctx context.Context) error { return read(store.WithTenant(ctx, tenant)) }},
			{"a request marked before any scope", store.Track(context.Background()),
				func(ctx context.Context) error { return read(store.WithTenant(ctx, tenant)) }},
		}
		for _, c := range cases {
			t.Run(c.name, func(t *testing.T) {
				before := s.NestedTx()
				start := time.Now()
				var innerErr error
				err := s.Tx(c.outer, func(tx *gorm.DB) error {
					innerErr = c.inner(c.outer)
					return nil
				})
				if err != nil {
					t.Fatalf("the outer transaction: %v", err)
				}
				if !errors.Is(innerErr, store.ErrNestedTx) {
					t.Errorf("got %v, want ErrNestedTx", innerErr)
				}
				if got := s.NestedTx() - before; got != 1 {
					t.Errorf("counted %d refusals, want 1", got)
				}
				if took := time.Since(start); took > 5*time.Second {
					t.Errorf("the refusal took %s; it must not wait for the lock", took)
				}
				// Once the outer transaction ended, the same context opens one again.
				if err := read(c.outer); err != nil {
					t.Errorf("a transaction after the first ended: %v", err)
				}
			})
		}
		// Transactions one after another, and concurrent ones on forked lines of work, are fine.
		before := s.NestedTx()
		ctx := store.WithTenant(context.Background(), tenant)
		for range 3 {
			storetest.Must(t, read(ctx))
		}
		var wg sync.WaitGroup
		errc := make(chan error, 4)
		for range 4 {
			wg.Add(1)
			go func() { defer wg.Done(); errc <- read(store.Fork(ctx)) }()
		}
		wg.Wait()
		close(errc)
		for err := range errc {
			if err != nil {
				t.Errorf("a forked line of work: %v", err)
			}
		}
		if diff := cmp.Diff(before, s.NestedTx()); diff != "" {
			t.Errorf("refusals counted for sequential or forked transactions (-before +after):\n%s", diff)
		}
	})
}
