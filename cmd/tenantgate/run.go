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
	"path/filepath"
	"strings"
	"syscall"
	"time"

	"github.com/tenantgate/tenantgate/internal/actor"
	"github.com/tenantgate/tenantgate/internal/billing"
	"github.com/tenantgate/tenantgate/internal/egress"
	"github.com/tenantgate/tenantgate/internal/gateway"
	"github.com/tenantgate/tenantgate/internal/gateway/journal"
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

// exitCode: 2 for a usage or configuration error (nothing was done), 1 otherwise.
func exitCode(err error) int {
	var ce *configError
	if errors.Is(err, errUsage) || errors.As(err, &ce) {
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
	// Commands validate the whole configuration (environment and flags) after
	// parsing their flags and before anything else; help and version need none.
	cfg := loadConfig(getenv)
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
			fmt.Fprint(stdout, envHelp())
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
	_ = level.UnmarshalText([]byte(cfg.LogLevel)) // validated: debug, info, warn or error
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

// masterBox opens the box under the validated master key. Without one (no
// TENANTGATE_MASTER_KEY and no DATA_DIR/master.key) it generates
// DATA_DIR/master.key, but only for a database that holds no sealed secrets
// yet: a key made up for a database sealed under another one could open
// nothing, and would only leave a useless file behind.
func masterBox(ctx context.Context, cfg config, s *store.Store, log *slog.Logger) (*secret.Box, error) {
	key := cfg.masterKey
	if key == nil {
		sealed, err := identity.HasSigningKeys(ctx, s)
		if err != nil {
			return nil, err
		}
		if sealed {
			return nil, fmt.Errorf("the database %s holds secrets sealed under a master key this server does not have: set TENANTGATE_MASTER_KEY to the key the other server processes use (or put their master.key in %s)",
				s.Where(), cfg.DataDir)
		}
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
	store     *store.Store
	tenants   *tenant.Service
	identity  *identity.Service
	rbac      *rbac.Engine
	oidc      *oidc.Service
	quota     *quota.Service
	limiter   *quota.Guarded
	billing   *billing.Service
	gateway   *gateway.Service
	journal   *journal.Journal
	recovered []*journal.Recovered
	kv        kv.Store
	close     func()
}

// buildServices wires the domain services. serving opens the usage journal
// too: only `serve` relays AI calls, and the journal's lock admits one process
// per data directory, so the CLI's commands work beside a running server.
func buildServices(ctx context.Context, cfg config, s *store.Store, log *slog.Logger, publicURL string, serving bool) (*services, error) {
	box, err := masterBox(ctx, cfg, s, log)
	if err != nil {
		return nil, err
	}
	var shared kv.Store = kv.NewMemory()
	var limiter quota.RateLimiter = quota.NewMemoryLimiter()
	var breaker *kv.Breaker
	closeFn := func() {}
	if cfg.RedisURL != "" {
		// One client for every Redis use: short timeouts, no retries, a
		// circuit breaker, and go-redis's log lines in our log.
		rdb, b, closeRedis, err := kv.NewRedisClient(kv.RedisConfig{URL: cfg.RedisURL, Timeout: cfg.RedisTimeout, Log: log})
		if err != nil {
			return nil, fmt.Errorf("TENANTGATE_REDIS_URL %s: %s", secret.RedactURL(cfg.RedisURL), scrub(err, cfg.RedisURL))
		}
		if err := rdb.Ping(ctx).Err(); err != nil {
			// Known down before the first request pays for finding out.
			b.Trip(fmt.Errorf("start-up check: %w", err))
			policy := "failing closed: rate-limited requests and tenant logins are refused (503) until it answers"
			if cfg.RateLimitFailOpen {
				policy = "failing open: rate limits are not enforced and login lockouts are counted by each process alone until it answers"
			}
			log.Warn("Redis does not answer at start-up; "+policy, "redis", secret.RedactURL(cfg.RedisURL))
		}
		redisKV := kv.NewRedis(rdb, "tenantgate:")
		shared = redisKV
		if cfg.RateLimitFailOpen {
			shared = kv.Fallback{Primary: redisKV, Local: kv.NewMemory()}
		}
		limiter, breaker, closeFn = quota.NewRedisLimiter(rdb), b, closeRedis
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
	ident.UseRanks(engine) // rank rules read assigned and inherited roles too
	tenants := tenant.New(s, tcfg, log)
	fed := oidc.New(s, ident, tenants, box, publicURL, cfg.OIDC)
	fed.SetEgress(egress.Policy{AllowPrivate: cfg.AllowPrivateEgress}) // tenants' providers, like their channels
	guarded := quota.NewGuarded(limiter, cfg.RateLimitFailOpen, log)
	if breaker != nil {
		guarded.WatchStore(breaker)
	}
	bill := billing.New(s, billing.Options{Log: log, WebhookSecret: cfg.PaymentWebhookSecret})
	// The usage journal: AI usage survives a failing database and a kill -9
	// (README, "What a crash can lose").
	var jr *journal.Journal
	var recovered []*journal.Recovered
	if serving {
		var err error
		if jr, recovered, err = journal.Open(filepath.Join(cfg.DataDir, "usage-journal"), journal.Options{}); err != nil {
			closeFn()
			return nil, err
		}
		prev := closeFn
		closeFn = func() { _ = jr.Close(); prev() }
	}
	gw := gateway.New(s, gateway.Options{Box: box, Log: log, Billing: bill, Meter: quotas, Limiter: guarded, PlanExists: quotas.PlanExists,
		MaxAttempts: cfg.GatewayMaxAttempts, HealthFailures: cfg.GatewayDisableAfter[0], HealthWindow: cfg.GatewayDisableAfter[1],
		AllowPrivateUpstreams: cfg.AllowPrivateEgress, Journal: jr})
	return &services{store: s, tenants: tenants, kv: shared, close: closeFn, identity: ident, rbac: engine, oidc: fed, quota: quotas,
		limiter: guarded, billing: bill, gateway: gw, journal: jr, recovered: recovered}, nil
}

func serve(ctx context.Context, cfg config, args []string, stdout, stderr io.Writer) error {
	fs := newFlagSet("serve", "Run the API server.", stderr)
	fs.StringVar(&cfg.Addr, "addr", cfg.Addr, "listen address (TENANTGATE_ADDR)")
	cfg.storageFlags(fs)
	if help, err := parse(fs, args); help || err != nil {
		return err
	}
	// Validate, then take the port (so a busy port changes nothing), then
	// open the database, then migrate.
	if err := cfg.validate(); err != nil {
		return err
	}
	log := newLogger(cfg, stderr)
	ln, err := listen(cfg.Addr)
	if err != nil {
		return err
	}
	defer ln.Close()
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
	addr := ln.Addr().(*net.TCPAddr)
	publicURL := cfg.PublicURL
	if publicURL == "" {
		host := "localhost"
		if addr.IP.IsLoopback() && addr.IP.To4() != nil {
			host = addr.IP.String()
		}
		publicURL = fmt.Sprintf("http://%s:%d", host, addr.Port)
	}
	svc, err := buildServices(ctx, cfg, s, log, publicURL, true)
	if err != nil {
		return err
	}
	if cfg.BootstrapEmail != "" {
		_, err := svc.identity.CreateOperator(actor.With(ctx, actor.System("bootstrap")), cfg.BootstrapEmail, cfg.BootstrapPass, "bootstrap operator")
		switch {
		case err == nil:
			log.Info("created the bootstrap operator", "email", cfg.BootstrapEmail)
		case errors.Is(err, identity.ErrOperatorExists):
		default:
			return fmt.Errorf("bootstrap operator: %w", err)
		}
	}
	defer svc.close()
	// The routing table is loaded before the first request, so /v1 never
	// answers model_not_found for a channel that exists; if the database
	// fails here, /v1 and /readyz answer 503 until the background reload works.
	if err := svc.gateway.Reload(actor.With(ctx, actor.System("gateway"))); err != nil {
		log.Warn("the AI gateway will answer 503 until its channels load", "err", err)
	}
	// Calls the journal holds (cut by a crash or a shutdown, or finished while
	// the database failed) are billed before /v1 is served.
	if _, _, err := svc.gateway.Recover(actor.With(ctx, actor.System("usage journal")), svc.recovered); err != nil {
		ln.Close()
		return fmt.Errorf("settle the usage journal %s: %w", svc.journal.Dir(), err)
	}
	svc.recovered = nil
	// Redis has a fallback (the failure policy), so it degrades health
	// rather than failing it.
	degradable := map[string]web.Pinger{}
	if cfg.RedisURL != "" {
		degradable["redis"] = svc.kv
	}
	handler := web.NewServer(web.Deps{Log: log, Store: s, Tenants: svc.tenants, Identity: svc.identity, RBAC: svc.rbac, OIDC: svc.oidc, Quota: svc.quota, Limiter: svc.limiter, Counters: svc.kv, AuthRatePerMinute: cfg.AuthRatePerMinute,
		BaseDomain: cfg.BaseDomain, PublicURL: publicURL, Version: version, StartedAt: time.Now(), Degradable: degradable,
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
	keyUseDone := make(chan struct{})
	go func() { defer close(keyUseDone); svc.identity.RunKeyUseFlusher(bg, 10*time.Second, log) }()
	defer func() { stopBg(); <-keyUseDone }()

	errc := make(chan error, 1)
	go func() { errc <- srv.Serve(ln) }()
	log.Info("tenantgate is listening", "addr", "http://"+addr.String(), "publicUrl", publicURL, "database", s.Where(), "version", version)
	select {
	case err := <-errc:
		return err
	case <-ctx.Done():
	}
	log.Info("shutting down: finishing requests in flight", "grace", cfg.ShutdownGrace)
	shCtx, cancel := context.WithTimeout(context.Background(), cfg.ShutdownGrace)
	defer cancel()
	if err := srv.Shutdown(shCtx); err != nil {
		// The grace is over: AI calls still streaming end with an error event
		// and are billed for what they delivered; then the rest may finish.
		log.Warn("the shutdown grace period is over: cutting the AI calls still in flight", "grace", cfg.ShutdownGrace)
		svc.gateway.CutStreams()
		cutCtx, cancelCut := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancelCut()
		if err := srv.Shutdown(cutCtx); err != nil {
			_ = srv.Close()
			return fmt.Errorf("shutdown: requests still running 10 s after the grace period: %w", err)
		}
	}
	log.Info("stopped")
	return nil
}

// listen takes the address, telling a busy port from a refused one.
func listen(addr string) (net.Listener, error) {
	ln, err := net.Listen("tcp", addr)
	switch {
	case err == nil:
		return ln, nil
	case errors.Is(err, syscall.EADDRINUSE):
		return nil, fmt.Errorf("listen on %s: the port is already in use (another server?); set --addr or TENANTGATE_ADDR", addr)
	case errors.Is(err, syscall.EACCES):
		return nil, fmt.Errorf("listen on %s: permission denied (ports below 1024 need privileges); set --addr or TENANTGATE_ADDR: %w", addr, err)
	case errors.Is(err, syscall.EADDRNOTAVAIL):
		return nil, fmt.Errorf("listen on %s: no network interface has this address; set --addr or TENANTGATE_ADDR", addr)
	}
	return nil, fmt.Errorf("listen on %s: %w", addr, err)
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
	if err := cfg.validate(); err != nil {
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
	if err := cfg.validate(); err != nil {
		return err
	}
	log := newLogger(cfg, stderr)
	s, err := openMigrated(ctx, cfg, log)
	if err != nil {
		return err
	}
	defer s.Close()
	svc, err := buildServices(ctx, cfg, s, log, "http://localhost", false)
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
