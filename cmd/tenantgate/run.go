package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/url"
	"strings"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/tenantgate/tenantgate/internal/actor"
	"github.com/tenantgate/tenantgate/internal/billing"
	"github.com/tenantgate/tenantgate/internal/gateway"
	"github.com/tenantgate/tenantgate/internal/identity"
	"github.com/tenantgate/tenantgate/internal/identity/oidc"
	"github.com/tenantgate/tenantgate/internal/kv"
	"github.com/tenantgate/tenantgate/internal/quota"
	"github.com/tenantgate/tenantgate/internal/rbac"
	"github.com/tenantgate/tenantgate/internal/secret"
	"github.com/tenantgate/tenantgate/internal/store"
	"github.com/tenantgate/tenantgate/internal/tenant"
	"github.com/tenantgate/tenantgate/internal/web"
)

// version is set at build time with -ldflags "-X main.version=…".
var version = "dev"

var errUsage = errors.New("usage")

func exitCode(err error) int {
	if errors.Is(err, errUsage) {
		return 2
	}
	return 1
}

const usage = `tenantgate — a multi-tenant platform server: tenants, isolation, identity and audit.

Usage:
  tenantgate serve     [--addr :8080] [--data-dir ./data] [--database-url postgres://…]
  tenantgate migrate   [--status] [--database-url …] [--migration-url …]
  tenantgate operator create --email E --password P [--name N]
  tenantgate tenant create --slug S --name N --owner-email E --owner-password P [--plan free]
  tenantgate version

With no configuration, serve keeps an embedded SQLite database under ./data and
needs nothing else. Run 'tenantgate COMMAND --help' for a command's flags, and
'tenantgate help env' for every TENANTGATE_* variable.
`

// run is the whole program; main only wires the process to it.
func run(ctx context.Context, args []string, getenv func(string) string, stdin io.Reader, stdout, stderr io.Writer) error {
	if len(args) == 0 {
		fmt.Fprint(stderr, usage)
		return errUsage
	}
	cfg, err := loadConfig(getenv)
	if err != nil {
		return err
	}
	switch args[0] {
	case "serve":
		return serve(ctx, cfg, args[1:], stdout, stderr)
	case "migrate":
		return migrate(ctx, cfg, args[1:], stdout, stderr)
	case "operator":
		return operatorCmd(ctx, cfg, args[1:], stdout, stderr)
	case "tenant":
		return tenantCmd(ctx, cfg, args[1:], stdout, stderr)
	case "version", "--version":
		fmt.Fprintf(stdout, "tenantgate %s\n", version)
		return nil
	case "help", "-h", "--help":
		if len(args) > 1 && args[1] == "env" {
			for _, e := range envDoc {
				fmt.Fprintf(stdout, "  %-40s %s\n", e[0], e[1])
			}
			return nil
		}
		fmt.Fprint(stdout, usage)
		return nil
	}
	fmt.Fprintf(stderr, "tenantgate: unknown command %q\n\n%s", args[0], usage)
	return errUsage
}

func newFlagSet(name, summary string, stderr io.Writer) *flag.FlagSet {
	fs := flag.NewFlagSet(name, flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.Usage = func() {
		fmt.Fprintf(stderr, "%s\n\nUsage: tenantgate %s [flags]\n\nFlags:\n", summary, name)
		fs.PrintDefaults()
	}
	return fs
}

// parse parses flags, turning -h into a clean exit and bad flags into usage.
func parse(fs *flag.FlagSet, args []string) (bool, error) {
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return true, nil
		}
		return false, errUsage
	}
	if fs.NArg() > 0 {
		fmt.Fprintf(fs.Output(), "unexpected argument %q\n", fs.Arg(0))
		fs.Usage()
		return false, errUsage
	}
	return false, nil
}

func newLogger(cfg config, w io.Writer) *slog.Logger {
	var level slog.Level
	_ = level.UnmarshalText([]byte(cfg.LogLevel))
	opts := &slog.HandlerOptions{Level: level}
	if cfg.LogFormat == "json" {
		return slog.New(slog.NewJSONHandler(w, opts))
	}
	return slog.New(slog.NewTextHandler(w, opts))
}

func openStore(ctx context.Context, cfg config, log *slog.Logger) (*store.Store, error) {
	return store.Open(ctx, store.Config{URL: cfg.DatabaseURL, PlatformURL: cfg.PlatformURL, DataDir: cfg.DataDir, Logger: log})
}

// openMigrated opens the store and makes sure its schema is current:
// migrating on its own for SQLite (or when TENANTGATE_AUTO_MIGRATE=true),
// refusing to start with a clear message otherwise.
func openMigrated(ctx context.Context, cfg config, log *slog.Logger) (*store.Store, error) {
	s, err := openStore(ctx, cfg, log)
	if err != nil {
		return nil, err
	}
	auto := cfg.AutoMigrate == "true" || (cfg.AutoMigrate == "" && s.Dialect() == store.SQLite)
	if auto {
		applied, err := s.Migrate(ctx)
		if err != nil {
			s.Close()
			return nil, err
		}
		if len(applied) > 0 {
			log.Info("database migrated", "database", s.Where(), "versions", fmt.Sprint(applied))
		}
		return s, nil
	}
	st, err := s.Status(ctx)
	if err != nil {
		s.Close()
		return nil, fmt.Errorf("%w\n  run `tenantgate migrate` as the schema owner first", err)
	}
	if st.Pending > 0 {
		s.Close()
		return nil, fmt.Errorf("the database %s is at version %d and %d migration(s) are waiting: run `tenantgate migrate` (TENANTGATE_MIGRATION_DATABASE_URL as the schema owner), or set TENANTGATE_AUTO_MIGRATE=true",
			s.Where(), st.Current, st.Pending)
	}
	return s, nil
}

func masterBox(cfg config, log *slog.Logger) (*secret.Box, error) {
	var key []byte
	var err error
	if cfg.MasterKey != "" {
		key, err = secret.ParseKey(cfg.MasterKey)
		if err != nil {
			return nil, fmt.Errorf("TENANTGATE_MASTER_KEY: %w", err)
		}
	} else {
		var created bool
		key, created, err = secret.LoadOrCreateKeyFile(cfg.masterKeyPath())
		if err != nil {
			return nil, fmt.Errorf("master key: %w", err)
		}
		if created {
			log.Warn("generated a master key; keep it safe and set TENANTGATE_MASTER_KEY in production", "file", cfg.masterKeyPath())
		}
	}
	return secret.NewBox(key)
}

func passwordParams(cfg config) identity.PasswordParams {
	if cfg.PasswordProfile == "fast" {
		return identity.FastPasswordParams
	}
	return identity.DefaultPasswordParams
}

// services builds the domain services over an open store.
type services struct {
	store    *store.Store
	tenants  *tenant.Service
	identity *identity.Service
	rbac     *rbac.Engine
	oidc     *oidc.Service
	quota    *quota.Service
	limiter  *quota.Guarded
	billing  *billing.Service
	gateway  *gateway.Service
	kv       kv.Store
	close    func()
}

func buildServices(ctx context.Context, cfg config, s *store.Store, log *slog.Logger, publicURL string) (*services, error) {
	box, err := masterBox(cfg, log)
	if err != nil {
		return nil, err
	}
	var shared kv.Store = kv.NewMemory()
	var limiter quota.RateLimiter = quota.NewMemoryLimiter()
	closeFn := func() {}
	if cfg.RedisURL != "" {
		opts, err := redis.ParseURL(cfg.RedisURL)
		if err != nil {
			return nil, fmt.Errorf("TENANTGATE_REDIS_URL: %w", err)
		}
		rdb := redis.NewClient(opts)
		shared, limiter, closeFn = kv.NewRedis(rdb, "tenantgate:"), quota.NewRedisLimiter(rdb), func() { rdb.Close() }
	}
	keys, err := identity.LoadKeys(ctx, s, box)
	if err != nil {
		return nil, err
	}
	signer := identity.NewSigner(keys, identity.TokenConfig{Issuer: publicURL, Audience: "tenantgate",
		AccessTTL: cfg.AccessTTL, RefreshTTL: cfg.RefreshTTL})
	tcfg := tenant.DefaultConfig
	tcfg.TrialDays, tcfg.PurgeDelay = cfg.TrialDays, cfg.PurgeDelay
	quotas := quota.New(s)
	quotas.RegisterCounter("users", identity.CountUsersTx)
	quotas.RegisterCounter("apiKeys", identity.CountAPIKeysTx)
	quotas.RegisterCounter("roles", rbac.CountCustomRolesTx)
	tcfg.PlanExists = quotas.PlanExists
	var engine *rbac.Engine
	ident := identity.New(s, signer, identity.Options{Password: passwordParams(cfg), Box: box, KV: shared, Quota: quotas,
		UserChanged: func(tenantID string) { engine.Invalidate(tenantID) }})
	engine = rbac.NewEngine(s, ident, quotas)
	tenants := tenant.New(s, tcfg, log)
	fed := oidc.New(s, ident, tenants, box, publicURL, cfg.OIDC)
	guarded := quota.NewGuarded(limiter, cfg.RateLimitFailOpen, log)
	bill := billing.New(s, billing.Options{Log: log, WebhookSecret: cfg.PaymentWebhookSecret})
	gw := gateway.New(s, gateway.Options{Box: box, Log: log, Billing: bill, Meter: quotas, Limiter: guarded, PlanExists: quotas.PlanExists,
		MaxAttempts: cfg.GatewayMaxAttempts, HealthFailures: cfg.GatewayDisableAfter[0], HealthWindow: cfg.GatewayDisableAfter[1],
		AllowPrivateUpstreams: cfg.GatewayAllowPrivate})
	return &services{store: s, tenants: tenants, kv: shared, close: closeFn, identity: ident, rbac: engine, oidc: fed, quota: quotas,
		limiter: guarded, billing: bill, gateway: gw}, nil
}

func serve(ctx context.Context, cfg config, args []string, stdout, stderr io.Writer) error {
	fs := newFlagSet("serve", "Run the API server.", stderr)
	fs.StringVar(&cfg.Addr, "addr", cfg.Addr, "listen address (TENANTGATE_ADDR)")
	cfg.storageFlags(fs)
	if help, err := parse(fs, args); help || err != nil {
		return err
	}
	log := newLogger(cfg, stderr)
	s, err := openMigrated(ctx, cfg, log)
	if err != nil {
		return err
	}
	defer s.Close()
	if bypass, role, err := s.RLSBypass(ctx); err != nil {
		return fmt.Errorf("check the database role: %w", err)
	} else if bypass {
		log.Warn("the database role escapes row-level security (superuser, BYPASSRLS or table owner): only the application filter isolates tenants; connect as a role that owns nothing", "role", role)
	}
	ln, err := net.Listen("tcp", cfg.Addr)
	if err != nil {
		return fmt.Errorf("listen on %s: %w (is another server using the port? set --addr or TENANTGATE_ADDR)", cfg.Addr, err)
	}
	addr := ln.Addr().(*net.TCPAddr)
	publicURL := cfg.PublicURL
	if publicURL == "" {
		host := "localhost"
		if addr.IP.IsLoopback() && addr.IP.To4() != nil {
			host = addr.IP.String()
		}
		publicURL = fmt.Sprintf("http://%s:%d", host, addr.Port)
	}
	svc, err := buildServices(ctx, cfg, s, log, publicURL)
	if err != nil {
		ln.Close()
		return err
	}
	if cfg.BootstrapEmail != "" {
		_, err := svc.identity.CreateOperator(actor.With(ctx, actor.System("bootstrap")), cfg.BootstrapEmail, cfg.BootstrapPass, "bootstrap operator")
		switch {
		case err == nil:
			log.Info("created the bootstrap operator", "email", cfg.BootstrapEmail)
		case errors.Is(err, identity.ErrOperatorExists):
		default:
			ln.Close()
			return fmt.Errorf("bootstrap operator: %w", err)
		}
	}
	defer svc.close()
	deps := map[string]web.Pinger{}
	if cfg.RedisURL != "" {
		deps["redis"] = svc.kv
	}
	handler := web.NewServer(web.Deps{Log: log, Store: s, Tenants: svc.tenants, Identity: svc.identity, RBAC: svc.rbac, OIDC: svc.oidc, Quota: svc.quota, Limiter: svc.limiter, Counters: svc.kv, AuthRatePerMinute: cfg.AuthRatePerMinute,
		BaseDomain: cfg.BaseDomain, PublicURL: publicURL, Version: version, StartedAt: time.Now(), Dependencies: deps,
		ServiceTokens: cfg.ServiceTokens, Gateway: svc.gateway, Billing: svc.billing})
	srv := &http.Server{Handler: handler, ReadHeaderTimeout: 10 * time.Second, ReadTimeout: 60 * time.Second,
		WriteTimeout: 120 * time.Second, IdleTimeout: 120 * time.Second, MaxHeaderBytes: 64 << 10,
		ErrorLog: slog.NewLogLogger(log.Handler(), slog.LevelWarn)}
	// Background work outlives the signal until the requests in flight are
	// done (Shutdown below), so their usage can still be written.
	bg, stopBg := context.WithCancel(context.WithoutCancel(ctx))
	defer stopBg()
	go svc.tenants.RunPurger(actor.With(bg, actor.System("maintenance")), cfg.PurgeEvery, tenant.Maintenance{PaidPlan: svc.quota.PaidPlan,
		Jobs: []tenant.Job{{Name: "usage counter pruning", Run: svc.quota.PruneCounters}, {Name: "AI request log retention", Run: svc.gateway.PruneLogs}}})
	gwDone := make(chan struct{})
	go func() { defer close(gwDone); svc.gateway.Run(actor.With(bg, actor.System("gateway"))) }()
	defer func() { stopBg(); <-gwDone }()
	flushed := make(chan struct{})
	go func() {
		defer close(flushed)
		svc.quota.RunAPICallFlusher(actor.With(bg, actor.System("metering")), 10*time.Second, log)
	}()
	defer func() { stopBg(); <-flushed }()
	go svc.identity.RunRevocationSync(bg, 2*time.Second, log)

	errc := make(chan error, 1)
	go func() { errc <- srv.Serve(ln) }()
	log.Info("tenantgate is listening", "addr", "http://"+addr.String(), "publicUrl", publicURL, "database", s.Where(), "version", version)
	select {
	case err := <-errc:
		return err
	case <-ctx.Done():
	}
	log.Info("shutting down: finishing requests in flight (up to 20s)")
	shCtx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	if err := srv.Shutdown(shCtx); err != nil {
		return fmt.Errorf("shutdown: %w", err)
	}
	log.Info("stopped")
	return nil
}

func migrate(ctx context.Context, cfg config, args []string, stdout, stderr io.Writer) error {
	fs := newFlagSet("migrate", "Apply pending database migrations (as the schema owner), and on PostgreSQL grant the server's role what it needs.", stderr)
	cfg.storageFlags(fs)
	fs.StringVar(&cfg.PlatformURL, "platform-url", cfg.PlatformURL, "postgres://… of the platform role (TENANTGATE_PLATFORM_DATABASE_URL)")
	fs.StringVar(&cfg.MigrationURL, "migration-url", cfg.MigrationURL, "postgres://… of the schema owner (TENANTGATE_MIGRATION_DATABASE_URL; default: --database-url)")
	status := fs.Bool("status", false, "only print the current and latest version")
	if help, err := parse(fs, args); help || err != nil {
		return err
	}
	log := newLogger(cfg, stderr)
	ownerCfg := cfg
	if cfg.MigrationURL != "" {
		ownerCfg.DatabaseURL = cfg.MigrationURL
	}
	s, err := openStore(ctx, ownerCfg, log)
	if err != nil {
		return err
	}
	defer s.Close()
	if *status {
		st, err := s.Status(ctx)
		if err != nil {
			return err
		}
		fmt.Fprintf(stdout, "database %s: version %d of %d, %d pending\n", s.Where(), st.Current, st.Latest, st.Pending)
		return nil
	}
	applied, err := s.Migrate(ctx)
	if err != nil {
		return err
	}
	if len(applied) == 0 {
		fmt.Fprintf(stdout, "database %s is up to date\n", s.Where())
	} else {
		fmt.Fprintf(stdout, "database %s: applied %d migration(s): %v\n", s.Where(), len(applied), applied)
	}
	if appRole := userOf(cfg.DatabaseURL); s.Dialect() == store.Postgres && appRole != "" {
		platformRole := userOf(cfg.PlatformURL)
		if platformRole == "" {
			platformRole = appRole
			fmt.Fprintf(stdout, "note: no TENANTGATE_PLATFORM_DATABASE_URL, so %s also does cross-tenant work and writes the platform\n"+
				"      tables (single-role mode: it gets the platform role's grants); give that work its own role so SQL\n"+
				"      injected into a tenant query can neither reach other tenants nor write operators or signing keys\n", appRole)
		}
		grantTo := appRole
		if appRole == userOf(ownerCfg.DatabaseURL) {
			grantTo = "" // the owner needs no grants
		}
		if err := s.GrantApp(ctx, grantTo, platformRole); err != nil {
			return err
		}
		if grantTo == "" {
			fmt.Fprintf(stdout, "warning: the server's role %s owns the schema, so row-level security does not bind it;\n"+
				"         connect the server as a role that owns nothing (TENANTGATE_DATABASE_URL, see the README)\n", appRole)
		} else {
			fmt.Fprintf(stdout, "granted data access (no ownership, row-level security applies) to %s; platform role: %s\n", appRole, platformRole)
		}
	}
	return nil
}

func userOf(raw string) string {
	u, err := url.Parse(raw)
	if err != nil || u.User == nil {
		return ""
	}
	return u.User.Username()
}

func operatorCmd(ctx context.Context, cfg config, args []string, stdout, stderr io.Writer) error {
	if len(args) == 0 || args[0] != "create" {
		fmt.Fprint(stderr, "Usage: tenantgate operator create --email E --password P [--name N]\n")
		if len(args) > 0 && (args[0] == "-h" || args[0] == "--help") {
			return nil
		}
		return errUsage
	}
	fs := newFlagSet("operator create", "Create a platform operator, who manages every tenant.", stderr)
	cfg.storageFlags(fs)
	email := fs.String("email", "", "the operator's email (required)")
	password := fs.String("password", "", "the operator's password: 10+ characters, letters with digits or symbols (required)")
	name := fs.String("name", "", "display name")
	if help, err := parse(fs, args[1:]); help || err != nil {
		return err
	}
	if *email == "" || *password == "" {
		fs.Usage()
		return errUsage
	}
	return withServices(ctx, cfg, stderr, func(svc *services) error {
		o, err := svc.identity.CreateOperator(actor.With(ctx, actor.System("cli")), *email, *password, *name)
		if err != nil {
			return err
		}
		fmt.Fprintf(stdout, "created operator %s (%s)\n", o.Email, o.ID)
		return nil
	})
}

// withServices opens the (migrated) store and the services for a CLI command.
func withServices(ctx context.Context, cfg config, stderr io.Writer, fn func(*services) error) error {
	log := newLogger(cfg, stderr)
	s, err := openMigrated(ctx, cfg, log)
	if err != nil {
		return err
	}
	defer s.Close()
	svc, err := buildServices(ctx, cfg, s, log, "http://localhost")
	if err != nil {
		return err
	}
	defer svc.close()
	return fn(svc)
}

func tenantCmd(ctx context.Context, cfg config, args []string, stdout, stderr io.Writer) error {
	if len(args) == 0 || args[0] != "create" {
		fmt.Fprint(stderr, "Usage: tenantgate tenant create --slug S --name N --owner-email E --owner-password P [--plan free]\n")
		if len(args) > 0 && (args[0] == "-h" || args[0] == "--help") {
			return nil
		}
		return errUsage
	}
	fs := newFlagSet("tenant create", "Create a tenant with its owner.", stderr)
	cfg.storageFlags(fs)
	var in web.SignupRequest
	fs.StringVar(&in.Slug, "slug", "", "3-32 characters of a-z, 0-9 and '-' (required)")
	fs.StringVar(&in.Name, "name", "", "the organisation's name (required)")
	fs.StringVar(&in.OwnerEmail, "owner-email", "", "the owner's email (required)")
	fs.StringVar(&in.OwnerPassword, "owner-password", "", "the owner's password (required)")
	fs.StringVar(&in.OwnerName, "owner-name", "", "the owner's name")
	fs.StringVar(&in.Plan, "plan", "free", "plan: "+strings.Join(tenant.Plans, ", "))
	if help, err := parse(fs, args[1:]); help || err != nil {
		return err
	}
	if in.Slug == "" || in.Name == "" || in.OwnerEmail == "" || in.OwnerPassword == "" {
		fs.Usage()
		return errUsage
	}
	return withServices(ctx, cfg, stderr, func(svc *services) error {
		t, owner, _, err := web.CreateTenant(actor.With(ctx, actor.System("cli")), svc.tenants, svc.identity, in, false)
		if err != nil {
			return err
		}
		fmt.Fprintf(stdout, "created tenant %s (%s), status %s, owner %s (%s)\n", t.Slug, t.ID, t.Status, owner.Email, owner.ID)
		return nil
	})
}
