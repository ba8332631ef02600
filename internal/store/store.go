// Package store opens the database (embedded SQLite or PostgreSQL), runs the
// versioned migrations, and is the only way to reach tenant data: every access
// goes through Tx, a transaction bound to the scope in the context. On
// PostgreSQL, Tx first sets app.tenant_id with set_config(..., true) so that
// row-level security applies for exactly that transaction; the GORM plugin in
// plugin.go adds the application-level tenant filter as a second, independent
// line of defence.
package store

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"runtime/debug"
	"strings"
	"sync/atomic"
	"time"

	"github.com/glebarez/sqlite"
	"gorm.io/driver/postgres"
	"gorm.io/gorm"
	"gorm.io/gorm/logger"

	"github.com/tenantgate/tenantgate/internal/errs"
	"github.com/tenantgate/tenantgate/internal/secret"
)

// Dialect is the database flavour.
type Dialect string

// Supported dialects.
const (
	SQLite   Dialect = "sqlite"
	Postgres Dialect = "postgres"
)

// Config says where the database is.
type Config struct {
	// URL selects the database; see ParseURL (other schemes are refused).
	// Empty means SQLite at DataDir/tenantgate.db.
	URL     string
	DataDir string
	// PlatformURL (PostgreSQL) connects platform-scope work (operators,
	// background jobs) as a role registered in platform_roles; empty: the
	// URL's own role does it too (single-role mode, see the README).
	PlatformURL string
	// MaxOpenConns caps the pool (0: 20 for PostgreSQL, 8 for SQLite).
	MaxOpenConns int
	Logger       *slog.Logger
}

// Store is an open database.
type Store struct {
	db      *gorm.DB
	sqlDB   *sql.DB
	plat    *gorm.DB // platform-scope pool; nil: db
	platSQL *sql.DB
	dialect Dialect
	log     *slog.Logger
	nested  atomic.Int64 // transactions refused with ErrNestedTx
	where   string       // a description without credentials, for logs
	avail   availability
	// checkpoints runs SQLite's WAL checkpoints in the background (nil on PostgreSQL).
	checkpoints *checkpointer
}

// ParseURL tells which database a URL selects, and for SQLite the file:
//
//   - ""                                  SQLite at DATA_DIR/tenantgate.db
//   - postgres://… or postgresql://…      PostgreSQL
//   - sqlite:PATH or sqlite://PATH        SQLite at PATH
//   - a plain path (no scheme), e.g. ./tg.db or /var/lib/tg.db: SQLite at
//     that path (relative to the working directory, as with sqlite:PATH)
//
// Anything else is refused: an unknown scheme (postgress://, mysql://) or a
// key=value connection string must never turn into a SQLite file named after
// it. Errors show the URL only through secret.RedactURL.
func ParseURL(raw string) (Dialect, string, error) {
	switch {
	case raw == "":
		return SQLite, "", nil
	case strings.HasPrefix(raw, "postgres://"), strings.HasPrefix(raw, "postgresql://"):
		return Postgres, "", nil
	case strings.HasPrefix(raw, "sqlite:"):
		path := strings.TrimPrefix(strings.TrimPrefix(raw, "sqlite://"), "sqlite:")
		if path == "" {
			return "", "", errors.New("sqlite: needs a file path, e.g. sqlite:data/tenantgate.db")
		}
		return SQLite, path, nil
	}
	if scheme, ok := schemeOf(raw); ok {
		return "", "", fmt.Errorf("%s: unknown database scheme %q: use postgres://… (or postgresql://…) for PostgreSQL, or sqlite:PATH or a file path for SQLite",
			secret.RedactURL(raw), scheme)
	}
	if strings.ContainsAny(raw, "= \t") {
		return "", "", errors.New("a key=value connection string is not supported: use a postgres://… URL")
	}
	return SQLite, raw, nil
}

// schemeOf returns a URL scheme at the start of raw ("mysql" in
// mysql://…, "file" in file:x.db). A single letter is a Windows drive, not a scheme.
func schemeOf(raw string) (string, bool) {
	i := strings.IndexByte(raw, ':')
	if i < 2 {
		return "", false
	}
	for j, r := range raw[:i] {
		if !(r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || j > 0 && (r >= '0' && r <= '9' || r == '+' || r == '-' || r == '.')) {
			return "", false
		}
	}
	return raw[:i], true
}

// Open connects and configures the pool. It does not migrate.
func Open(ctx context.Context, cfg Config) (*Store, error) {
	log := cfg.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	// A gorm.Config holds the plugins registered on it: each pool gets its own.
	newConfig := func() *gorm.Config {
		return &gorm.Config{Logger: logger.Discard, SkipDefaultTransaction: true, NowFunc: func() time.Time { return time.Now().UTC() }}
	}
	gcfg := newConfig()
	dialect, path, err := ParseURL(cfg.URL)
	if err != nil {
		return nil, fmt.Errorf("the database URL %w", err)
	}
	s := &Store{dialect: dialect, log: log}
	var dial gorm.Dialector
	var walPath string // SQLite's write-ahead log
	switch s.dialect {
	case Postgres:
		dial = postgres.New(postgres.Config{DSN: cfg.URL})
		s.where = secret.RedactURL(cfg.URL)
	default:
		if path == "" {
			dir := cfg.DataDir
			if dir == "" {
				dir = "data"
			}
			path = filepath.Join(dir, "tenantgate.db")
		}
		if err := WritableDir(filepath.Dir(path)); err != nil {
			return nil, fmt.Errorf("the SQLite database %s: %w", path, err)
		}
		// WAL lets readers run beside the writer; IMMEDIATE transactions take the
		// write lock up front so read-then-write transactions never deadlock.
		// The WAL is also checkpointed in the background between transactions
		// (checkpoint.go), so commits on the request path rarely pay for one.
		dial = sqlite.Open("file:" + path + "?_pragma=busy_timeout(10000)&_pragma=journal_mode(WAL)" +
			"&_pragma=foreign_keys(1)&_pragma=synchronous(NORMAL)&_txlock=immediate")
		s.where = "sqlite:" + path
		walPath = path + "-wal"
	}
	db, err := gorm.Open(dial, gcfg)
	if err != nil {
		return nil, fmt.Errorf("open the database %s: %w", s.where, err)
	}
	if err := db.Use(tenantPlugin{}); err != nil {
		return nil, fmt.Errorf("install the tenant plugin: %w", err)
	}
	sqlDB, err := db.DB()
	if err != nil {
		return nil, err
	}
	maxOpen := cfg.MaxOpenConns
	if maxOpen == 0 {
		maxOpen = 20
		if s.dialect == SQLite {
			maxOpen = 8
		}
	}
	sqlDB.SetMaxOpenConns(maxOpen)
	sqlDB.SetMaxIdleConns(maxOpen)
	sqlDB.SetConnMaxIdleTime(5 * time.Minute)
	pingCtx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	if err := sqlDB.PingContext(pingCtx); err != nil {
		_ = sqlDB.Close()
		return nil, fmt.Errorf("connect to the database %s: %w", s.where, err)
	}
	s.db, s.sqlDB = db, sqlDB
	if walPath != "" {
		s.startCheckpointer(walPath)
	}
	if s.dialect == Postgres && cfg.PlatformURL != "" {
		pdb, err := gorm.Open(postgres.New(postgres.Config{DSN: cfg.PlatformURL}), newConfig())
		if err == nil {
			err = pdb.Use(tenantPlugin{})
		}
		if err != nil {
			_ = sqlDB.Close()
			return nil, fmt.Errorf("open the platform connection %s: %w", secret.RedactURL(cfg.PlatformURL), err)
		}
		psql, err := pdb.DB()
		if err != nil {
			return nil, err
		}
		psql.SetMaxOpenConns(max(2, maxOpen/4))
		psql.SetConnMaxIdleTime(5 * time.Minute)
		if err := psql.PingContext(pingCtx); err != nil {
			_ = sqlDB.Close()
			_ = psql.Close()
			return nil, fmt.Errorf("connect to the platform database %s: %w", secret.RedactURL(cfg.PlatformURL), err)
		}
		s.plat, s.platSQL = pdb, psql
	}
	return s, nil
}

// Close closes the pools.
func (s *Store) Close() error {
	s.checkpoints.close()
	if s.platSQL != nil {
		_ = s.platSQL.Close()
	}
	return s.sqlDB.Close()
}

// Dialect returns the database flavour.
func (s *Store) Dialect() Dialect { return s.dialect }

// Where describes the database without credentials.
func (s *Store) Where() string { return s.where }

// SQL returns the pool, for health checks and tests.
func (s *Store) SQL() *sql.DB { return s.sqlDB }

// Ping checks the database answers.
func (s *Store) Ping(ctx context.Context) error { return s.sqlDB.PingContext(ctx) }

// ErrNestedTx is the refusal of a transaction opened while the same line of
// work (see Track) already holds one. On SQLite that transaction would wait
// for its own caller's write lock until the busy timeout, stalling every
// other write meanwhile; on PostgreSQL it takes a second connection and sees
// none of the first one's changes. Work done inside a transaction must read
// through that transaction (or from a cache warmed before it began).
var ErrNestedTx = errors.New("store: a transaction was opened inside a transaction of the same context")

// NestedTx counts the transactions refused with ErrNestedTx since Open;
// tests assert it stays 0.
func (s *Store) NestedTx() int64 { return s.nested.Load() }

// Tx runs fn in a transaction confined to the scope in ctx. On PostgreSQL the
// scope is set with set_config(..., true), which is transaction-local, so a
// pooled connection never carries it into the next transaction.
//
// Tx never opens a transaction while ctx's line of work (Track) holds one:
// it returns ErrNestedTx (an internal error) at once and logs the caller's
// stack, always, not only in tests, since on SQLite the alternative is a
// self-deadlock until the busy timeout.
func (s *Store) Tx(ctx context.Context, fn func(tx *gorm.DB) error) error {
	scope := ScopeFrom(ctx)
	if scope.TenantID != "" && !ValidID(scope.TenantID) {
		return fmt.Errorf("tenant scope %q is not a valid id: %w", scope.TenantID, ErrNoTenantScope)
	}
	ctx = Track(ctx)
	tr := ctx.Value(trackKey{}).(*tracker)
	if !tr.open.CompareAndSwap(0, 1) {
		s.nested.Add(1)
		s.log.Error("programming error: a transaction was opened inside a transaction of the same request or job; "+
			"read through the open transaction instead (goroutines that each open transactions at the same time "+
			"take their own line of work: store.Fork)", "scope", scope.describe(), "stack", string(debug.Stack()))
		return errs.Internal(ErrNestedTx, "")
	}
	defer tr.open.Store(0)
	s.checkpoints.touch()
	db := s.db
	if (scope.Platform || scope.PlatformRole) && s.plat != nil {
		db = s.plat // only the platform role may see across tenants or write platform tables
	}
	err := db.WithContext(ctx).Transaction(func(tx *gorm.DB) error {
		if s.dialect == Postgres {
			switch {
			case scope.Platform:
				if err := tx.Exec("SELECT set_config('app.platform_scope', 'on', true)").Error; err != nil {
					return err
				}
			case scope.TenantID != "":
				if err := tx.Exec("SELECT set_config('app.tenant_id', ?, true)", scope.TenantID).Error; err != nil {
					return err
				}
			}
		}
		return fn(tx)
	})
	s.avail.note(err)
	return s.translate(err)
}

// translate turns driver errors the API can explain into *errs.Error.
func (s *Store) translate(err error) error {
	if err == nil {
		return nil
	}
	if _, ok := errs.As(err); ok {
		return err
	}
	if errors.Is(err, gorm.ErrRecordNotFound) {
		return err
	}
	if IsUniqueViolation(err) {
		return &errs.Error{Kind: errs.KindConflict, Code: "CONFLICT", Msg: "a record with the same unique value exists", Err: err}
	}
	return err
}

// IsUniqueViolation reports whether err is a unique-constraint failure.
func IsUniqueViolation(err error) bool {
	if err == nil {
		return false
	}
	m := err.Error()
	return strings.Contains(m, "UNIQUE constraint failed") || // SQLite
		strings.Contains(m, "SQLSTATE 23505") || strings.Contains(m, "duplicate key value") // PostgreSQL
}

// IsNotFound reports whether err is GORM's record-not-found.
func IsNotFound(err error) bool { return errors.Is(err, gorm.ErrRecordNotFound) }

// WritableDir makes sure dir exists (creating it, 0700) and that files can
// be created in it, so an unwritable data directory is reported as such
// rather than as SQLite's "out of memory (14)".
func WritableDir(dir string) error {
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return fmt.Errorf("cannot create the data directory %s: %w", dir, err)
	}
	f, err := os.CreateTemp(dir, ".write-check-*")
	if err != nil {
		return fmt.Errorf("the data directory %s is not writable: %w", dir, err)
	}
	name := f.Name()
	_ = f.Close()
	return os.Remove(name)
}

// LockTenantTx serialises changes that must see a consistent view of a
// tenant (the last-owner rule, quota reservations, plan changes) with a
// transaction-level advisory lock on the tenant's id, held until tx ends. A
// row lock (SELECT … FOR UPDATE) would need UPDATE on tenants, which the
// server's role does not have. SQLite transactions already take the write
// lock up front.
func (s *Store) LockTenantTx(tx *gorm.DB, tenantID string) error {
	if s.dialect != Postgres {
		return nil
	}
	return tx.Exec("SELECT pg_advisory_xact_lock(hashtextextended('tenantgate:tenant:' || ?::text, 0))", tenantID).Error
}

// Read runs fn in a transaction confined to ctx's scope and returns its value.
func Read[T any](ctx context.Context, s *Store, fn func(tx *gorm.DB) (T, error)) (T, error) {
	var out T
	err := s.Tx(ctx, func(tx *gorm.DB) error {
		var err error
		out, err = fn(tx)
		return err
	})
	return out, err
}
