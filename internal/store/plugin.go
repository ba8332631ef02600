package store

import (
	"fmt"
	"reflect"
	"slices"

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

// owned reports whether the statement touches a tenant-owned table: through
// a model that implements TenantOwned, or by naming a tenant table with
// Table() and no model.
func owned(db *gorm.DB) bool {
	if s := db.Statement.Schema; s != nil {
		if reflect.PointerTo(s.ModelType).Implements(tenantOwnedType) || s.ModelType.Implements(tenantOwnedType) {
			return true
		}
	}
	return slices.Contains(tenantTables, db.Statement.Table)
}

func (tenantPlugin) filter(db *gorm.DB) {
	if db.Error != nil || !owned(db) {
		return
	}
	scope := ScopeFrom(db.Statement.Context)
	switch {
	case scope.Platform:
		return
	case scope.TenantID == "":
		_ = db.AddError(fmt.Errorf("%s on %s: %w", "query", db.Statement.Table, ErrNoTenantScope))
		return
	}
	if db.Statement.SQL.Len() > 0 { // raw SQL: cannot be rewritten; RLS guards it on PostgreSQL
		return
	}
	// Refuse moving rows to another tenant.
	if m, ok := db.Statement.Dest.(map[string]any); ok {
		for k, v := range m {
			if (k == "tenant_id" || k == "TenantID") && fmt.Sprint(v) != scope.TenantID {
				_ = db.AddError(fmt.Errorf("update on %s sets tenant_id: %w", db.Statement.Table, ErrNoTenantScope))
				return
			}
		}
	}
	tenantEq := clause.Eq{Column: clause.Column{Table: db.Statement.Table, Name: "tenant_id"}, Value: scope.TenantID}
	// AND the tenant onto the caller's conditions as one group, so an OR among
	// them cannot escape it: (a OR b) AND tenant_id = ?.
	if c, ok := db.Statement.Clauses["WHERE"]; ok {
		if w, ok := c.Expression.(clause.Where); ok && len(w.Exprs) > 0 {
			w.Exprs = []clause.Expression{clause.And(w.Exprs...), tenantEq}
			c.Expression = w
			db.Statement.Clauses["WHERE"] = c
			return
		}
	}
	db.Statement.AddClause(clause.Where{Exprs: []clause.Expression{tenantEq}})
}

func (tenantPlugin) stamp(db *gorm.DB) {
	if db.Error != nil || !owned(db) {
		return
	}
	scope := ScopeFrom(db.Statement.Context)
	if db.Statement.Schema == nil || !isStructDest(db.Statement.Dest) {
		stampMaps(db, scope)
		return
	}
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

func isStructDest(dest any) bool {
	switch dest.(type) {
	case map[string]any, []map[string]any, *map[string]any, *[]map[string]any:
		return false
	}
	return true
}

// stampMaps applies the create rules to map-shaped rows.
func stampMaps(db *gorm.DB, scope Scope) {
	var rows []map[string]any
	switch d := db.Statement.Dest.(type) {
	case map[string]any:
		rows = []map[string]any{d}
	case *map[string]any:
		rows = []map[string]any{*d}
	case []map[string]any:
		rows = d
	case *[]map[string]any:
		rows = *d
	default:
		_ = db.AddError(fmt.Errorf("create on %s: rows of type %T cannot be checked for their tenant: %w", db.Statement.Table, db.Statement.Dest, ErrNoTenantScope))
		return
	}
	for _, row := range rows {
		key := "tenant_id"
		if _, ok := row["TenantID"]; ok {
			key = "TenantID"
		}
		current, has := row[key]
		cur := ""
		if has && current != nil {
			cur = fmt.Sprint(current)
		}
		switch {
		case scope.TenantID == "" && !scope.Platform:
			_ = db.AddError(fmt.Errorf("create on %s: %w", db.Statement.Table, ErrNoTenantScope))
			return
		case scope.Platform:
			if cur == "" {
				_ = db.AddError(fmt.Errorf("create on %s in platform scope needs an explicit tenant_id", db.Statement.Table))
				return
			}
		case cur == "":
			row[key] = scope.TenantID
		case cur != scope.TenantID:
			_ = db.AddError(fmt.Errorf("create on %s: tenant_id %q differs from the scope's tenant: %w", db.Statement.Table, cur, ErrNoTenantScope))
			return
		}
	}
}
