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

// platformOnlyTables are the platform tables the server's own role may not
// even read: operator accounts, signing keys (sealed) and redemption codes.
// Platform work (store.WithPlatform, WithTenantOnPlatform) reaches them
// through the platform role.
var platformOnlyTables = []string{"operators", "signing_keys", "redemption_codes"}

// GrantApp gives the PostgreSQL login roles what the server needs and
// nothing more, with no ownership, so row-level security applies to them. It
// is run by `tenantgate migrate` as the owner, and first revokes whatever
// the roles held on the tables, so a re-run also takes back an older grant.
//
// role (the server's, TENANTGATE_DATABASE_URL) does tenant work: it reads
// and writes the tenant tables (TenantTables), only reads the platform
// tables tenant work looks up (tenants, tenant_slugs, tenant_domains, plans,
// platform_roles, goose_db_version), and has no access to operators,
// signing_keys and redemption_codes, so SQL injected into tenant work can
// neither mint an operator or a signing key nor change a tenant's plan.
//
// platformRole (TENANTGATE_PLATFORM_DATABASE_URL) does platform work: it
// reads and writes every table but goose_db_version and platform_roles, and
// is registered in platform_roles, the only roles whose app.platform_scope
// row-level security honours. It may equal role (single-role mode: the one
// role then has the platform role's grants, since it also does platform
// work) or be empty (no platform role registered).
func (s *Store) GrantApp(ctx context.Context, role, platformRole string) error {
	if s.dialect != Postgres {
		return nil
	}
	quoted := func(tables []string) string {
		q := make([]string, len(tables))
		for i, t := range tables {
			q[i] = quoteIdent(t)
		}
		return strings.Join(q, ", ")
	}
	var roles []string // each role once: in single-role mode the platform grants win
	if role != "" && role != platformRole {
		roles = append(roles, role)
	}
	if platformRole != "" {
		roles = append(roles, platformRole)
	}
	var owner string
	if err := s.sqlDB.QueryRowContext(ctx, "SELECT tableowner FROM pg_tables WHERE schemaname = 'public' AND tablename = 'tenants'").Scan(&owner); err != nil {
		return fmt.Errorf("find the schema owner: %w", err)
	}
	for _, r := range roles {
		if r == owner {
			continue // the owner holds everything (and keeps it: it runs the migrations)
		}
		q := quoteIdent(r)
		stmts := []string{
			"REVOKE ALL ON ALL TABLES IN SCHEMA public FROM " + q,
			"GRANT USAGE ON SCHEMA public TO " + q,
			"GRANT USAGE, SELECT ON ALL SEQUENCES IN SCHEMA public TO " + q,
		}
		if r == platformRole {
			stmts = append(stmts,
				"GRANT SELECT, INSERT, UPDATE, DELETE ON ALL TABLES IN SCHEMA public TO "+q,
				"REVOKE INSERT, UPDATE, DELETE ON goose_db_version, platform_roles FROM "+q)
		} else {
			stmts = append(stmts,
				"GRANT SELECT ON ALL TABLES IN SCHEMA public TO "+q,
				"REVOKE SELECT ON "+quoted(platformOnlyTables)+" FROM "+q,
				"GRANT INSERT, UPDATE, DELETE ON "+quoted(tenantTables)+" TO "+q)
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
// routing table, in one transaction confined to that tenant, on the platform
// role (the server's role may not write routing tables). It returns the
// number of rows removed per table.
func (s *Store) PurgeTenant(ctx context.Context, tenantID string) (map[string]int64, error) {
	if !ValidID(tenantID) || tenantID == PlatformTenantID {
		return nil, fmt.Errorf("purge: %q is not a tenant id", tenantID)
	}
	removed := map[string]int64{}
	err := s.Tx(WithTenantOnPlatform(ctx, tenantID, "purge"), func(tx *gorm.DB) error {
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
