package store

import (
	"context"
	"embed"
	"fmt"
	"io/fs"
	"strings"
	"time"

	"github.com/pressly/goose/v3"
	"github.com/pressly/goose/v3/database"
	"gorm.io/gorm"
)

//go:embed migrations
var migrationFS embed.FS

// TenantTables lists every tenant-owned table, children before parents, in
// the order a purge deletes them. A test proves it matches the schema, so a
// new tenant table cannot be forgotten here.
var tenantTables = []string{"ai_request_logs", "ai_settings", "ai_channels", "ledger_entries", "key_spend", "model_prices", "billing_accounts", "notifications", "usage_counters", "usage_events", "audit_events", "refresh_tokens", "api_keys", "user_roles", "roles", "identity_links", "identity_providers", "users"}

// TenantTables returns the tenant-owned tables (RLS-protected on PostgreSQL).
func TenantTables() []string { return append([]string(nil), tenantTables...) }

// RoutingTables are platform tables whose rows point at one tenant (looked up
// before the tenant is known, so not RLS-protected); a purge removes them too.
var routingTables = []string{"tenant_domains", "tenant_slugs"}

func (s *Store) provider() (*goose.Provider, error) {
	sub, err := fs.Sub(migrationFS, "migrations/"+string(s.dialect))
	if err != nil {
		return nil, err
	}
	dialect := database.DialectSQLite3
	if s.dialect == Postgres {
		dialect = database.DialectPostgres
	}
	return goose.NewProvider(dialect, s.sqlDB, sub)
}

// Migrate applies every pending migration and returns the versions applied.
func (s *Store) Migrate(ctx context.Context) ([]int64, error) {
	p, err := s.provider()
	if err != nil {
		return nil, err
	}
	results, err := p.Up(ctx)
	var applied []int64
	for _, r := range results {
		if r.Error == nil {
			applied = append(applied, r.Source.Version)
		}
	}
	if err != nil {
		return applied, fmt.Errorf("migrate %s: %w", s.where, err)
	}
	return applied, nil
}

// MigrationStatus says which version the database is at and how many
// migrations are waiting.
type MigrationStatus struct {
	Current int64
	Latest  int64
	Pending int
}

// Status reads the migration state.
func (s *Store) Status(ctx context.Context) (MigrationStatus, error) {
	p, err := s.provider()
	if err != nil {
		return MigrationStatus{}, err
	}
	var st MigrationStatus
	if st.Current, err = p.GetDBVersion(ctx); err != nil {
		return st, fmt.Errorf("read the migration version of %s: %w", s.where, err)
	}
	for _, src := range p.ListSources() {
		if src.Version > st.Latest {
			st.Latest = src.Version
		}
		if src.Version > st.Current {
			st.Pending++
		}
	}
	return st, nil
}

// GrantApp gives a PostgreSQL login role what the server needs and nothing
// more: data access on every table, no ownership, so row-level security
// applies to it. It is run by `tenantgate migrate` as the owner.
//
// platformRole is the role platform-scope work connects as; it gets the same
// grants and is registered in platform_roles, the only roles whose
// app.platform_scope row-level security honours. It may equal role
// (single-role mode) or be empty (no platform role registered).
func (s *Store) GrantApp(ctx context.Context, role, platformRole string) error {
	if s.dialect != Postgres {
		return nil
	}
	for _, r := range []string{role, platformRole} {
		if r == "" {
			continue
		}
		q := quoteIdent(r)
		stmts := []string{
			"GRANT USAGE ON SCHEMA public TO " + q,
			"GRANT SELECT, INSERT, UPDATE, DELETE ON ALL TABLES IN SCHEMA public TO " + q,
			"REVOKE INSERT, UPDATE, DELETE ON goose_db_version FROM " + q,
			"REVOKE INSERT, UPDATE, DELETE ON platform_roles FROM " + q,
			"GRANT USAGE, SELECT ON ALL SEQUENCES IN SCHEMA public TO " + q,
		}
		for _, st := range stmts {
			if _, err := s.sqlDB.ExecContext(ctx, st); err != nil {
				return fmt.Errorf("grant %s: %w", r, err)
			}
		}
	}
	if platformRole != "" {
		if _, err := s.sqlDB.ExecContext(ctx, "INSERT INTO platform_roles (rolname) VALUES ($1) ON CONFLICT DO NOTHING", platformRole); err != nil {
			return fmt.Errorf("register the platform role %s: %w", platformRole, err)
		}
	}
	return nil
}

// RLSBypass reports whether the connected PostgreSQL role escapes row-level
// security (superuser, BYPASSRLS, or owner of a tenant table). The server
// warns loudly when it does: the database would then not isolate tenants.
func (s *Store) RLSBypass(ctx context.Context) (bool, string, error) {
	if s.dialect != Postgres {
		return false, "", nil
	}
	var super, bypass bool
	var name string
	err := s.sqlDB.QueryRowContext(ctx,
		"SELECT current_user, rolsuper, rolbypassrls FROM pg_roles WHERE rolname = current_user").Scan(&name, &super, &bypass)
	if err != nil {
		return false, "", err
	}
	if super || bypass {
		return true, name, nil
	}
	var owns int
	err = s.sqlDB.QueryRowContext(ctx,
		"SELECT count(*) FROM pg_tables WHERE schemaname = 'public' AND tableowner = current_user AND tablename = ANY($1)",
		"{"+strings.Join(tenantTables, ",")+"}").Scan(&owns)
	if err != nil {
		return false, name, err
	}
	return owns > 0, name, nil
}

// TablesWithTenantID lists the tables that have a tenant_id column, read from
// the live schema.
func (s *Store) TablesWithTenantID(ctx context.Context) ([]string, error) {
	var q string
	if s.dialect == Postgres {
		q = `SELECT table_name FROM information_schema.columns
		     WHERE table_schema = 'public' AND column_name = 'tenant_id' ORDER BY table_name`
	} else {
		q = `SELECT m.name FROM sqlite_master m, pragma_table_info(m.name) p
		     WHERE m.type = 'table' AND p.name = 'tenant_id' ORDER BY m.name`
	}
	rows, err := s.sqlDB.QueryContext(ctx, q)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	var out []string
	for rows.Next() {
		var t string
		if err := rows.Scan(&t); err != nil {
			return nil, err
		}
		out = append(out, t)
	}
	return out, rows.Err()
}

// PurgeTenant deletes every row the tenant owns, in every tenant table and
// routing table, in one transaction confined to that tenant. It returns the
// number of rows removed per table.
func (s *Store) PurgeTenant(ctx context.Context, tenantID string) (map[string]int64, error) {
	if !ValidID(tenantID) || tenantID == PlatformTenantID {
		return nil, fmt.Errorf("purge: %q is not a tenant id", tenantID)
	}
	removed := map[string]int64{}
	err := s.Tx(WithTenant(ctx, tenantID), func(tx *gorm.DB) error {
		for _, t := range append(TenantTables(), routingTables...) {
			res := tx.Exec("DELETE FROM "+t+" WHERE tenant_id = ?", tenantID)
			if res.Error != nil {
				return fmt.Errorf("purge %s: %w", t, res.Error)
			}
			removed[t] = res.RowsAffected
		}
		return nil
	})
	return removed, err
}

func quoteIdent(s string) string { return `"` + strings.ReplaceAll(s, `"`, `""`) + `"` }

// retentionTables are the activity records a tenant's data-retention
// setting applies to, with the column that dates each row.
var retentionTables = map[string]string{"audit_events": "occurred_at", "usage_events": "occurred_at", "notifications": "created_at"}

// PruneTenant deletes a tenant's activity records older than before, in one
// transaction confined to that tenant, and returns how many rows went per table.
func (s *Store) PruneTenant(ctx context.Context, tenantID string, before time.Time) (map[string]int64, error) {
	if !ValidID(tenantID) || tenantID == PlatformTenantID {
		return nil, fmt.Errorf("prune: %q is not a tenant id", tenantID)
	}
	removed := map[string]int64{}
	err := s.Tx(WithTenant(ctx, tenantID), func(tx *gorm.DB) error {
		for table, col := range retentionTables {
			res := tx.Exec("DELETE FROM "+table+" WHERE tenant_id = ? AND "+col+" < ?", tenantID, before.UTC())
			if res.Error != nil {
				return fmt.Errorf("prune %s: %w", table, res.Error)
			}
			removed[table] = res.RowsAffected
		}
		return nil
	})
	return removed, err
}
