package store_test

import (
	"context"
	"errors"
	"sort"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/google/uuid"
	"gorm.io/gorm"

	"github.com/tenantgate/tenantgate/internal/store"
	"github.com/tenantgate/tenantgate/internal/store/storetest"
)

type tenantRow struct {
	ID, Slug, Name, Status, Plan string
	CreatedAt, UpdatedAt         time.Time
}

func (tenantRow) TableName() string { return "tenants" }

type userRow struct {
	TenantID  string `gorm:"primaryKey"`
	ID        string `gorm:"primaryKey"`
	Email     string
	Username  string
	Status    string
	CreatedAt time.Time
	UpdatedAt time.Time
}

func (userRow) TableName() string { return "users" }
func (userRow) TenantOwned()      {}

func newID() string { return uuid.Must(uuid.NewV7()).String() }

// seed creates two tenants with two users each and returns their ids.
func seed(t *testing.T, s *store.Store) (a, b string) {
	t.Helper()
	ctx := context.Background()
	a, b = newID(), newID()
	now := time.Now().UTC()
	storetest.Must(t, s.Tx(store.WithPlatform(ctx, "test seed"), func(tx *gorm.DB) error {
		for i, id := range []string{a, b} {
			if err := tx.Create(&tenantRow{ID: id, Slug: []string{"alpha", "bravo"}[i], Name: id, Status: "active", Plan: "free", CreatedAt: now, UpdatedAt: now}).Error; err != nil {
				return err
			}
		}
		return nil
	}))
	for _, tid := range []string{a, b} {
		storetest.Must(t, s.Tx(store.WithTenant(ctx, tid), func(tx *gorm.DB) error {
			for _, name := range []string{"u1", "u2"} {
				if err := tx.Create(&userRow{ID: newID(), Email: name + "@x.test", Username: name, Status: "active"}).Error; err != nil {
					return err
				}
			}
			return nil
		}))
	}
	return a, b
}

func TestPluginFiltersByScope(t *testing.T) {
	storetest.Each(t, func(t *testing.T, d store.Dialect) {
		s := storetest.Open(t, d)
		a, b := seed(t, s)
		ctx := context.Background()
		for _, tc := range []struct{ tenant, other string }{{a, b}, {b, a}} {
			var got []userRow
			storetest.Must(t, s.Tx(store.WithTenant(ctx, tc.tenant), func(tx *gorm.DB) error { return tx.Find(&got).Error }))
			if len(got) != 2 {
				t.Fatalf("tenant %s sees %d users, want its own 2", tc.tenant, len(got))
			}
			for _, u := range got {
				if u.TenantID != tc.tenant {
					t.Errorf("tenant %s sees a user of %s", tc.tenant, u.TenantID)
				}
			}
			// An update or delete aimed at the other tenant's rows touches nothing.
			var n int64
			storetest.Must(t, s.Tx(store.WithTenant(ctx, tc.tenant), func(tx *gorm.DB) error {
				res := tx.Model(&userRow{}).Where("tenant_id = ?", tc.other).Update("status", "suspended")
				n += res.RowsAffected
				if res.Error != nil {
					return res.Error
				}
				res = tx.Where("tenant_id = ?", tc.other).Delete(&userRow{})
				n += res.RowsAffected
				return res.Error
			}))
			if n != 0 {
				t.Errorf("tenant %s changed %d rows of tenant %s", tc.tenant, n, tc.other)
			}
		}
		var all []userRow
		storetest.Must(t, s.Tx(store.WithPlatform(ctx, "test"), func(tx *gorm.DB) error { return tx.Find(&all).Error }))
		if len(all) != 4 {
			t.Errorf("platform scope sees %d users, want 4", len(all))
		}
	})
}

func TestPluginFailsClosedWithoutScope(t *testing.T) {
	storetest.Each(t, func(t *testing.T, d store.Dialect) {
		s := storetest.Open(t, d)
		a, b := seed(t, s)
		ctx := context.Background()
		ops := map[string]func(tx *gorm.DB) error{
			"find":   func(tx *gorm.DB) error { var u []userRow; return tx.Find(&u).Error },
			"count":  func(tx *gorm.DB) error { var n int64; return tx.Model(&userRow{}).Count(&n).Error },
			"update": func(tx *gorm.DB) error { return tx.Model(&userRow{}).Where("1 = 1").Update("status", "x").Error },
			"delete": func(tx *gorm.DB) error { return tx.Where("1 = 1").Delete(&userRow{}).Error },
			"create": func(tx *gorm.DB) error {
				return tx.Create(&userRow{ID: newID(), TenantID: a, Email: "z@x", Username: "z", Status: "active"}).Error
			},
		}
		for name, op := range ops {
			err := s.Tx(ctx, op)
			if !errors.Is(err, store.ErrNoTenantScope) {
				t.Errorf("%s without a scope: got %v, want ErrNoTenantScope", name, err)
			}
		}
		// A create that names another tenant than the scope's is refused.
		err := s.Tx(store.WithTenant(ctx, a), func(tx *gorm.DB) error {
			return tx.Create(&userRow{ID: newID(), TenantID: b, Email: "evil@x", Username: "evil", Status: "active"}).Error
		})
		if !errors.Is(err, store.ErrNoTenantScope) {
			t.Errorf("create for tenant b in tenant a's scope: got %v, want refusal", err)
		}
		// A create in scope stamps the tenant.
		u := userRow{ID: newID(), Email: "new@x", Username: "new", Status: "active"}
		storetest.Must(t, s.Tx(store.WithTenant(ctx, b), func(tx *gorm.DB) error { return tx.Create(&u).Error }))
		if u.TenantID != b {
			t.Errorf("created user has tenant %q, want %q", u.TenantID, b)
		}
	})
}

// TestRLSAloneIsolates switches the application filter off (raw SQL, which the
// plugin cannot rewrite) and proves PostgreSQL's row-level security alone
// still returns only the scope's rows and refuses writes into another tenant.
func TestRLSAloneIsolates(t *testing.T) {
	if !contains(storetest.Dialects(), store.Postgres) {
		t.Skipf("PostgreSQL only; set %s", storetest.EnvPostgres) // RLS does not exist on SQLite
	}
	s := storetest.Open(t, store.Postgres)
	a, b := seed(t, s)
	ctx := context.Background()
	for _, tc := range []struct{ tenant, other string }{{a, b}, {b, a}} {
		var tenants []string
		storetest.Must(t, s.Tx(store.WithTenant(ctx, tc.tenant), func(tx *gorm.DB) error {
			return tx.Raw("SELECT DISTINCT tenant_id::text FROM users").Scan(&tenants).Error
		}))
		if diff := cmp.Diff([]string{tc.tenant}, tenants); diff != "" {
			t.Errorf("raw SELECT in tenant %s sees tenants (-want +got):\n%s", tc.tenant, diff)
		}
		var n int64
		storetest.Must(t, s.Tx(store.WithTenant(ctx, tc.tenant), func(tx *gorm.DB) error {
			res := tx.Exec("UPDATE users SET status = 'suspended' WHERE tenant_id = ?", tc.other)
			n = res.RowsAffected
			return res.Error
		}))
		if n != 0 {
			t.Errorf("raw UPDATE from tenant %s changed %d rows of the other tenant", tc.tenant, n)
		}
		err := s.Tx(store.WithTenant(ctx, tc.tenant), func(tx *gorm.DB) error {
			return tx.Exec("INSERT INTO users (tenant_id, id, email, username, status, created_at, updated_at) VALUES (?, ?, 'x@x', 'x', 'active', now(), now())", tc.other, newID()).Error
		})
		if err == nil {
			t.Errorf("raw INSERT of a row for the other tenant succeeded; RLS WITH CHECK should refuse it")
		}
	}
	// SQL injected into a tenant's query cannot widen its own view: setting
	// app.platform_scope from the tenant connection's role changes nothing.
	for _, tc := range []string{a, b} {
		var tenants []string
		storetest.Must(t, s.Tx(store.WithTenant(ctx, tc), func(tx *gorm.DB) error {
			if err := tx.Exec("SELECT set_config('app.platform_scope', 'on', true)").Error; err != nil {
				return err
			}
			return tx.Raw("SELECT DISTINCT tenant_id::text FROM users").Scan(&tenants).Error
		}))
		if diff := cmp.Diff([]string{tc}, tenants); diff != "" {
			t.Errorf("tenant %s switching platform scope on by SQL sees (-want +got):\n%s", tc, diff)
		}
	}
	// Every tenant table's policy demands the registered platform role.
	var weak []string
	storetest.Must(t, s.Tx(ctx, func(tx *gorm.DB) error {
		return tx.Raw(`SELECT tablename FROM pg_policies WHERE schemaname = 'public' AND tablename IN ?
			AND (qual NOT LIKE '%platform_roles%' OR with_check NOT LIKE '%platform_roles%')`, store.TenantTables()).Scan(&weak).Error
	}))
	if len(weak) > 0 {
		t.Errorf("tenant tables whose policy honours platform scope from any role: %v", weak)
	}
	var policies int64
	storetest.Must(t, s.Tx(ctx, func(tx *gorm.DB) error {
		return tx.Raw(`SELECT count(*) FROM pg_policies WHERE schemaname = 'public' AND tablename IN ?`, store.TenantTables()).Scan(&policies).Error
	}))
	if int(policies) != len(store.TenantTables()) {
		t.Errorf("%d tenant-isolation policies for %d tenant tables", policies, len(store.TenantTables()))
	}

	// The platform's own rows (the all-zero tenant id: platform channels and
	// prices, operator sessions, platform audit) are the platform role's: SQL
	// injected into tenant work that names the zero id as its tenant reads and
	// writes none of them.
	platformCtx := store.WithPlatform(ctx, "test: a platform audit row")
	storetest.Must(t, s.Tx(platformCtx, func(tx *gorm.DB) error {
		return tx.Exec(`INSERT INTO audit_events (tenant_id, id, actor_type, service_id, event_type, resource, action, outcome, occurred_at)
			VALUES (?, ?, 'system', 'test', 'test.platform', 'test', 'create', 'success', now())`, store.PlatformTenantID, newID()).Error
	}))
	var seen int64
	storetest.Must(t, s.Tx(store.WithTenant(ctx, a), func(tx *gorm.DB) error {
		if err := tx.Exec("SELECT set_config('app.tenant_id', ?, true)", store.PlatformTenantID).Error; err != nil {
			return err
		}
		return tx.Raw("SELECT count(*) FROM audit_events").Scan(&seen).Error
	}))
	if seen != 0 {
		t.Errorf("the server's role, naming the zero tenant id by SQL, sees %d platform rows", seen)
	}
	err := s.Tx(store.WithTenant(ctx, a), func(tx *gorm.DB) error {
		if err := tx.Exec("SELECT set_config('app.tenant_id', ?, true)", store.PlatformTenantID).Error; err != nil {
			return err
		}
		return tx.Exec(`INSERT INTO audit_events (tenant_id, id, actor_type, service_id, event_type, resource, action, outcome, occurred_at)
			VALUES (?, ?, 'system', 'test', 'forged', 'test', 'create', 'success', now())`, store.PlatformTenantID, newID()).Error
	})
	if err == nil {
		t.Error("the server's role wrote a platform row by naming the zero tenant id")
	}
	var platformRows int64 // through the platform role, WithTenant(PlatformTenantID) works
	storetest.Must(t, s.Tx(store.WithTenant(ctx, store.PlatformTenantID), func(tx *gorm.DB) error {
		return tx.Raw("SELECT count(*) FROM audit_events WHERE event_type = 'test.platform'").Scan(&platformRows).Error
	}))
	if platformRows != 1 {
		t.Errorf("the platform's own scope sees %d of its rows, want 1", platformRows)
	}

	// No scope at all: raw SQL sees nothing.
	var n int64
	storetest.Must(t, s.Tx(ctx, func(tx *gorm.DB) error { return tx.Raw("SELECT count(*) FROM users").Scan(&n).Error }))
	if n != 0 {
		t.Errorf("raw count with no scope = %d, want 0", n)
	}
	bypass, role, err := s.RLSBypass(ctx)
	storetest.Must(t, err)
	if bypass {
		t.Errorf("test role %s bypasses RLS; the test would prove nothing", role)
	}
}

// TestPooledConnectionForgetsTenant runs tenant A's transaction and then a
// scope-less one on the same single pooled connection.
func TestPooledConnectionForgetsTenant(t *testing.T) {
	storetest.Each(t, func(t *testing.T, d store.Dialect) {
		db := storetest.New(t, d)
		// One tenant connection; the seed's tenant rows go through the platform role's pool.
		s, err := store.Open(context.Background(), store.Config{URL: db.URL, PlatformURL: db.PlatformURL, MaxOpenConns: 1})
		storetest.Must(t, err)
		defer s.Close()
		a, _ := seed(t, s)
		ctx := context.Background()
		storetest.Must(t, s.Tx(store.WithTenant(ctx, a), func(tx *gorm.DB) error {
			var u []userRow
			return tx.Find(&u).Error
		}))
		if d == store.Postgres {
			var setting *string
			var visible int64
			storetest.Must(t, s.Tx(ctx, func(tx *gorm.DB) error {
				if err := tx.Raw("SELECT NULLIF(current_setting('app.tenant_id', true), '')").Scan(&setting).Error; err != nil {
					return err
				}
				return tx.Raw("SELECT count(*) FROM users").Scan(&visible).Error
			}))
			if setting != nil || visible != 0 {
				t.Errorf("after tenant A's transaction, the next one on the same connection has app.tenant_id=%v and sees %d users; want none", *setting, visible)
			}
		}
		var u []userRow
		if err := s.Tx(ctx, func(tx *gorm.DB) error { return tx.Find(&u).Error }); !errors.Is(err, store.ErrNoTenantScope) {
			t.Errorf("next transaction without scope: got %v, want ErrNoTenantScope", err)
		}
	})
}

func TestTenantTablesMatchSchema(t *testing.T) {
	storetest.Each(t, func(t *testing.T, d store.Dialect) {
		s := storetest.Open(t, d)
		got, err := s.TablesWithTenantID(context.Background())
		storetest.Must(t, err)
		want := append(store.TenantTables(), "tenant_domains", "tenant_slugs")
		sort.Strings(want)
		if diff := cmp.Diff(want, got); diff != "" {
			t.Errorf("tables with tenant_id (-want +got); add a new tenant table to store.tenantTables:\n%s", diff)
		}
	})
}

func TestPurgeTenantLeavesNothing(t *testing.T) {
	storetest.Each(t, func(t *testing.T, d store.Dialect) {
		s := storetest.Open(t, d)
		a, b := seed(t, s)
		ctx := context.Background()
		removed, err := s.PurgeTenant(ctx, a)
		storetest.Must(t, err)
		if removed["users"] != 2 {
			t.Errorf("purge removed %d users, want 2", removed["users"])
		}
		var left, other int64
		storetest.Must(t, s.Tx(store.WithPlatform(ctx, "test"), func(tx *gorm.DB) error {
			if err := tx.Model(&userRow{}).Where("tenant_id = ?", a).Count(&left).Error; err != nil {
				return err
			}
			return tx.Model(&userRow{}).Where("tenant_id = ?", b).Count(&other).Error
		}))
		if left != 0 || other != 2 {
			t.Errorf("after purging a: a has %d users (want 0), b has %d (want 2)", left, other)
		}
	})
}

func TestParsePage(t *testing.T) {
	for _, tc := range []struct {
		limit, cursor string
		ok            bool
	}{
		{"", "", true}, {"1", "", true}, {"100", "", true}, {"0", "", false}, {"101", "", false},
		{"x", "", false}, {"", "!!", false}, {"", "bm90LWFuLWlk", false},
	} {
		_, err := store.ParsePage(tc.limit, tc.cursor)
		if got := err == nil; got != tc.ok {
			t.Errorf("ParsePage(%q, %q) ok = %v, want %v (%v)", tc.limit, tc.cursor, got, tc.ok, err)
		}
	}
}

func contains[T comparable](xs []T, x T) bool {
	for _, v := range xs {
		if v == x {
			return true
		}
	}
	return false
}
