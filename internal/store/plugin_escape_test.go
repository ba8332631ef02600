package store_test

import (
	"context"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"gorm.io/gorm"

	"github.com/tenantgate/tenantgate/internal/store"
	"github.com/tenantgate/tenantgate/internal/store/storetest"
)

// TestPluginEscapes tries, from tenant A's scope, every GORM pattern a
// review found could reach tenant B's rows, and proves each now stays in A
// (or fails) on SQLite, where no RLS backs the filter up.
func TestPluginEscapes(t *testing.T) {
	storetest.Each(t, func(t *testing.T, d store.Dialect) {
		s := storetest.Open(t, d)
		a, b := seed(t, s)
		ctx := store.WithTenant(context.Background(), a)
		snapshot := func() []userRow {
			var out []userRow
			storetest.Must(t, s.Tx(store.WithTenant(context.Background(), b), func(tx *gorm.DB) error { return tx.Order("id").Find(&out).Error }))
			return out
		}
		bBefore := snapshot()
		bID := bBefore[0].ID
		now := time.Now().UTC()
		counts := map[string]func(tx *gorm.DB) (int64, error){
			"Table().Count": func(tx *gorm.DB) (int64, error) { var n int64; return n, tx.Table("users").Count(&n).Error },
			"Table().Find(maps)": func(tx *gorm.DB) (int64, error) {
				var m []map[string]any
				err := tx.Table("users").Find(&m).Error
				return int64(len(m)), err
			},
			"Table().Pluck": func(tx *gorm.DB) (int64, error) {
				var ids []string
				err := tx.Table("users").Pluck("id", &ids).Error
				return int64(len(ids)), err
			},
			"Where().Or()": func(tx *gorm.DB) (int64, error) {
				var u []userRow
				err := tx.Where("username = ?", "u1").Or("username = ?", "u2").Find(&u).Error
				for _, x := range u {
					if x.TenantID != a {
						return 99, err
					}
				}
				return int64(len(u)), err
			},
		}
		for name, fn := range counts {
			var n int64
			err := s.Tx(ctx, func(tx *gorm.DB) error { var err error; n, err = fn(tx); return err })
			if err != nil || n != 2 {
				t.Errorf("%s in tenant A: %d rows, %v; want A's 2", name, n, err)
			}
		}
		writes := map[string]func(tx *gorm.DB) error{
			"Table().Update(B's row)": func(tx *gorm.DB) error {
				return tx.Table("users").Where("id = ?", bID).Update("email", "pwned@x.test").Error
			},
			"Updates moving a row to B": func(tx *gorm.DB) error {
				return tx.Model(&userRow{}).Where("username = ?", "u2").Updates(map[string]any{"tenant_id": b, "username": "moved"}).Error
			},
			"Model().Create(map for B)": func(tx *gorm.DB) error {
				return tx.Model(&userRow{}).Create(map[string]any{"tenant_id": b, "id": newID(), "email": "m@x.test", "username": "mapped",
					"status": "active", "created_at": now, "updated_at": now}).Error
			},
			"Table().Create(map for B)": func(tx *gorm.DB) error {
				return tx.Table("users").Create(map[string]any{"tenant_id": b, "id": newID(), "email": "t@x.test", "username": "tabled",
					"status": "active", "created_at": now, "updated_at": now}).Error
			},
			"Table().Delete(B's row)": func(tx *gorm.DB) error {
				return tx.Table("users").Where("id = ?", bID).Delete(&map[string]any{}).Error
			},
		}
		for name, fn := range writes {
			_ = s.Tx(ctx, fn) // refused or harmless; what matters is B afterwards
			if diff := cmp.Diff(bBefore, snapshot()); diff != "" {
				t.Fatalf("%s from tenant A changed tenant B (-before +after):\n%s", name, diff)
			}
		}
		// A map create without a tenant is stamped with the scope's.
		storetest.Must(t, s.Tx(ctx, func(tx *gorm.DB) error {
			return tx.Table("users").Create(map[string]any{"id": newID(), "email": "ok@x.test", "username": "okmap",
				"status": "active", "created_at": now, "updated_at": now}).Error
		}))
		var n int64
		storetest.Must(t, s.Tx(ctx, func(tx *gorm.DB) error { return tx.Model(&userRow{}).Where("username = ?", "okmap").Count(&n).Error }))
		if n != 1 {
			t.Errorf("the stamped map row is not in tenant A (%d)", n)
		}
		// Without any scope, Table() on a tenant table fails closed.
		if err := s.Tx(context.Background(), func(tx *gorm.DB) error { var n int64; return tx.Table("users").Count(&n).Error }); err == nil {
			t.Error("Table(users).Count without a scope succeeded")
		}
	})
}
