package store

import (
	"fmt"
	"reflect"

	"gorm.io/gorm"
	"gorm.io/gorm/clause"

	"github.com/tenantgate/tenantgate/internal/errs"
)

// TenantOwned marks a model whose table holds one tenant's rows per tenant_id.
// Every query, update and delete on such a model is filtered by the tenant in
// the context, and every create stamps it; with no tenant in the context the
// operation fails instead of running unfiltered.
type TenantOwned interface{ TenantOwned() }

var tenantOwnedType = reflect.TypeFor[TenantOwned]()

// ErrNoTenantScope is returned for tenant-owned data accessed without a scope.
var ErrNoTenantScope = &errs.Error{Kind: errs.KindInternal, Code: errs.CodeTenantScopeRequired,
	Msg: "tenant-owned data was accessed without a tenant scope"}

type tenantPlugin struct{}

func (tenantPlugin) Name() string { return "tenantgate:tenant" }

func (p tenantPlugin) Initialize(db *gorm.DB) error {
	cb := db.Callback()
	steps := []error{
		cb.Query().Before("gorm:query").Register("tenantgate:tenant_query", p.filter),
		cb.Row().Before("gorm:row").Register("tenantgate:tenant_row", p.filter),
		cb.Update().Before("gorm:update").Register("tenantgate:tenant_update", p.filter),
		cb.Delete().Before("gorm:delete").Register("tenantgate:tenant_delete", p.filter),
		cb.Create().Before("gorm:create").Register("tenantgate:tenant_create", p.stamp),
	}
	for _, err := range steps {
		if err != nil {
			return err
		}
	}
	return nil
}

// ownedSchema reports whether the statement's model is tenant-owned.
func ownedSchema(db *gorm.DB) bool {
	s := db.Statement.Schema
	if s == nil {
		return false
	}
	return reflect.PointerTo(s.ModelType).Implements(tenantOwnedType) || s.ModelType.Implements(tenantOwnedType)
}

func (tenantPlugin) filter(db *gorm.DB) {
	if db.Error != nil || !ownedSchema(db) {
		return
	}
	scope := ScopeFrom(db.Statement.Context)
	switch {
	case scope.Platform:
		return
	case scope.TenantID == "":
		_ = db.AddError(fmt.Errorf("%s on %s: %w", "query", db.Statement.Schema.Table, ErrNoTenantScope))
		return
	}
	if db.Statement.SQL.Len() > 0 { // raw SQL: cannot be rewritten; RLS guards it on PostgreSQL
		return
	}
	db.Statement.AddClause(clause.Where{Exprs: []clause.Expression{
		clause.Eq{Column: clause.Column{Table: db.Statement.Table, Name: "tenant_id"}, Value: scope.TenantID},
	}})
}

func (tenantPlugin) stamp(db *gorm.DB) {
	if db.Error != nil || !ownedSchema(db) {
		return
	}
	scope := ScopeFrom(db.Statement.Context)
	field := db.Statement.Schema.LookUpField("tenant_id")
	if field == nil {
		_ = db.AddError(fmt.Errorf("model %s is tenant-owned but has no tenant_id", db.Statement.Schema.Name))
		return
	}
	set := func(rv reflect.Value) {
		v, zero := field.ValueOf(db.Statement.Context, rv)
		current, _ := v.(string)
		switch {
		case scope.TenantID == "" && !scope.Platform:
			_ = db.AddError(fmt.Errorf("create on %s: %w", db.Statement.Schema.Table, ErrNoTenantScope))
		case scope.Platform:
			if zero || current == "" {
				_ = db.AddError(fmt.Errorf("create on %s in platform scope needs an explicit tenant_id", db.Statement.Schema.Table))
			}
		case zero || current == "":
			if err := field.Set(db.Statement.Context, rv, scope.TenantID); err != nil {
				_ = db.AddError(err)
			}
		case current != scope.TenantID:
			_ = db.AddError(fmt.Errorf("create on %s: tenant_id %q differs from the scope's tenant: %w",
				db.Statement.Schema.Table, current, ErrNoTenantScope))
		}
	}
	rv := db.Statement.ReflectValue
	switch rv.Kind() {
	case reflect.Slice, reflect.Array:
		for i := 0; i < rv.Len(); i++ {
			set(reflect.Indirect(rv.Index(i)))
		}
	case reflect.Struct:
		set(rv)
	}
}
