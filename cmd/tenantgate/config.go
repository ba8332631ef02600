package main

import (
	"errors"
	"flag"
	"fmt"
	"net"
	"net/url"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/tenantgate/tenantgate/internal/identity/oidc"
	"github.com/tenantgate/tenantgate/internal/secret"
	"github.com/tenantgate/tenantgate/internal/store"
	"github.com/tenantgate/tenantgate/internal/web"
)

// config is read once, from TENANTGATE_* variables and then flags, and
// validated as a whole (validate) before a command does anything else.
type config struct {
	Addr            string
	DataDir         string
	DatabaseURL     string
	MigrationURL    string
	PlatformURL     string
	AutoMigrate     string // "", "true", "false"
	BaseDomain      string
	PublicURL       string
	MasterKey       string
	RedisURL        string
	RedisTimeout    time.Duration
	LogFormat       string
	LogLevel        string
	AccessTTL       time.Duration
	RefreshTTL      time.Duration
	PurgeDelay      time.Duration
	PurgeEvery      time.Duration
	ShutdownGrace   time.Duration // how long requests in flight may finish after a stop signal
	TrialDays       int
	BootstrapEmail  string
	BootstrapPass   string
	PasswordProfile string // "default" or "fast" (tests only)
	ServiceTokens   []web.ServiceToken
	OIDC            *oidc.Platform
	// Rate limits.
	RateLimitFailOpen bool
	AuthRatePerMinute int
	// The AI gateway.
	GatewayMaxAttempts   int
	GatewayDisableAfter  [2]int // failures of the last N requests that disable a channel
	AllowPrivateEgress   bool   // tenants' URLs (AI channels, identity providers) may reach internal addresses
	PaymentWebhookSecret string

	// Filled by validate.
	masterKey        []byte // from TENANTGATE_MASTER_KEY or an existing DATA_DIR/master.key; nil: none yet
	masterKeyFromEnv bool
	problems         []string // found while reading the environment
}

// envVar documents one variable for `tenantgate help env`. Min and Max bound
// an integer (Kind "int") or a duration (Kind "duration", in nanoseconds):
// the one parser of each kind reads its bounds from here, so the help and the
// check cannot disagree.
type envVar struct {
	Name, Doc string
	Kind      string // "", "bool", "int", "duration"
	Min, Max  int64
}

// envDoc documents every variable; `tenantgate help env` prints it.
var envDoc = []envVar{
	{Name: "TENANTGATE_ADDR", Doc: "listen address host:port, port 0-65535 (default :8080)"},
	{Name: "TENANTGATE_DATA_DIR", Doc: "where SQLite, the master key and files live (default ./data); must be writable"},
	{Name: "TENANTGATE_DATABASE_URL", Doc: "postgres://… or postgresql://… for PostgreSQL (the server's role); sqlite:PATH, sqlite://PATH or a plain file path for SQLite (relative paths from the working directory); default: SQLite at DATA_DIR/tenantgate.db. Other schemes are refused"},
	{Name: "TENANTGATE_MIGRATION_DATABASE_URL", Doc: "postgres://… of the schema owner, used by `migrate` (default: the database URL)"},
	{Name: "TENANTGATE_PLATFORM_DATABASE_URL", Doc: "postgres://… of the role for cross-tenant work (operators, jobs); default: the database URL's role"},
	{Name: "TENANTGATE_AUTO_MIGRATE", Kind: "bool", Doc: "migrate on serve (default true for SQLite, false for PostgreSQL)"},
	{Name: "TENANTGATE_BASE_DOMAIN", Doc: "tenants answer at {slug}.{base domain}, a host name such as example.com (default: none)"},
	{Name: "TENANTGATE_PUBLIC_URL", Doc: "http(s)://host[:port][/path] clients reach the server at; the token issuer (default http://localhost:PORT)"},
	{Name: "TENANTGATE_MASTER_KEY", Doc: "32-byte key (64 hex characters or base64) sealing secrets; default: DATA_DIR/master.key, generated on first start of a database that holds no sealed secrets yet"},
	{Name: "TENANTGATE_REDIS_URL", Doc: "redis://… or rediss://… shares rate limits, login lockouts and API-call counters between server processes"},
	{Name: "TENANTGATE_REDIS_TIMEOUT", Kind: "duration", Min: int64(10 * time.Millisecond), Max: int64(5 * time.Second), Doc: "how long one Redis command may take before it counts as a failure (default 100ms)"},
	{Name: "TENANTGATE_LOG_FORMAT", Doc: "text or json (default text)"},
	{Name: "TENANTGATE_LOG_LEVEL", Doc: "debug, info, warn or error (default info)"},
	{Name: "TENANTGATE_ACCESS_TOKEN_TTL", Kind: "duration", Min: int64(time.Minute), Max: int64(24 * time.Hour), Doc: "access token lifetime (default 15m)"},
	{Name: "TENANTGATE_REFRESH_TOKEN_TTL", Kind: "duration", Min: int64(time.Hour), Max: int64(8760 * time.Hour), Doc: "refresh token lifetime, at least the access token's (default 720h)"},
	{Name: "TENANTGATE_PURGE_DELAY", Kind: "duration", Min: int64(time.Minute), Max: int64(8760 * time.Hour), Doc: "how long a deleted tenant can be restored before its data is purged (default 720h)"},
	{Name: "TENANTGATE_PURGE_INTERVAL", Kind: "duration", Min: int64(time.Second), Max: int64(24 * time.Hour), Doc: "how often the purge and retention jobs run (default 1h)"},
	{Name: "TENANTGATE_SHUTDOWN_GRACE", Kind: "duration", Min: int64(time.Second), Max: int64(time.Hour), Doc: "on SIGTERM, how long requests in flight may finish before AI streams are cut (ended with an error event and billed for what they delivered) (default 20s)"},
	{Name: "TENANTGATE_TRIAL_DAYS", Kind: "int", Min: 0, Max: 365, Doc: "trial length of a new tenant in days (default 14)"},
	{Name: "TENANTGATE_SERVICE_TOKENS", Doc: "credentials of the service API (/internal/*): name=token,name2=token2 (tokens of 32+ characters)"},
	{Name: "TENANTGATE_RATE_LIMIT_FAIL_OPEN", Kind: "bool", Doc: "when Redis is down: true (default) admits requests unlimited and keeps login lockouts per process; false refuses limited requests and logins"},
	{Name: "TENANTGATE_AUTH_RATE_PER_MINUTE", Kind: "int", Min: 0, Max: 1_000_000, Doc: "sign-up, login and refresh requests a minute per client address (default 30; 0 for none)"},
	{Name: "TENANTGATE_GATEWAY_MAX_ATTEMPTS", Kind: "int", Min: 1, Max: 10, Doc: "AI gateway: channels tried per request on retryable failures (default 3)"},
	{Name: "TENANTGATE_GATEWAY_DISABLE_AFTER", Doc: "AI gateway: disable a channel after F failures in its last N requests, as F/N with 1 <= F <= N <= 1000 (default 10/20)"},
	{Name: "TENANTGATE_ALLOW_PRIVATE_EGRESS", Kind: "bool", Doc: "let URLs tenants configure (their AI channels, identity providers) reach loopback, private, link-local and other internal addresses (default false)"},
	{Name: "TENANTGATE_GATEWAY_ALLOW_PRIVATE_UPSTREAMS", Kind: "bool", Doc: "the former name of TENANTGATE_ALLOW_PRIVATE_EGRESS, still honoured (true for either turns it on)"},
	{Name: "TENANTGATE_PAYMENT_WEBHOOK_SECRET", Doc: "HMAC secret of the signed payment webhook (POST /api/v1/billing/webhooks/payment); unset: off"},
	{Name: "TENANTGATE_OIDC_ISSUER", Doc: "platform-wide OpenID Connect provider (Zitadel style), an http(s) URL, e.g. https://acme.zitadel.cloud"},
	{Name: "TENANTGATE_OIDC_CLIENT_ID", Doc: "… its client id"},
	{Name: "TENANTGATE_OIDC_CLIENT_SECRET", Doc: "… its client secret"},
	{Name: "TENANTGATE_OIDC_ORG_CLAIM", Doc: "… the claim naming the organisation (default urn:zitadel:iam:org:id)"},
	{Name: "TENANTGATE_OIDC_ROLES_CLAIM", Doc: "… an optional claim listing tenant roles"},
	{Name: "TENANTGATE_OIDC_JIT", Kind: "bool", Doc: "… create users on first sign-in (default true)"},
	{Name: "TENANTGATE_PASSWORD_PROFILE", Doc: "default, or fast for tests only: cheap password hashing that must never run in production (default default)"},
	{Name: "TENANTGATE_BOOTSTRAP_OPERATOR_EMAIL", Doc: "create this platform operator on first start …"},
	{Name: "TENANTGATE_BOOTSTRAP_OPERATOR_PASSWORD", Doc: "… with this password"},
}

// envHelp is the text of `tenantgate help env`.
func envHelp() string {
	var b strings.Builder
	b.WriteString("Every setting is a TENANTGATE_* variable (serve's --addr, --data-dir and --database-url override theirs).\n" +
		"Booleans are true or false (1 and 0 are accepted too); durations are Go durations such as 100ms, 15m or 720h.\n" +
		"The whole configuration is checked before anything else happens; every bad value is reported at once (exit code 2).\n\n")
	for _, e := range envDoc {
		doc := e.Doc
		switch e.Kind {
		case "bool":
			doc += " [true|false]"
		case "int":
			doc += fmt.Sprintf(" [%d to %d]", e.Min, e.Max)
		case "duration":
			doc += fmt.Sprintf(" [%s to %s]", shortDuration(time.Duration(e.Min)), shortDuration(time.Duration(e.Max)))
		}
		fmt.Fprintf(&b, "  %-42s %s\n", e.Name, doc)
	}
	return b.String()
}

// shortDuration writes 24h rather than 24h0m0s.
func shortDuration(d time.Duration) string {
	s := d.String()
	if strings.HasSuffix(s, "m0s") {
		s = strings.TrimSuffix(s, "0s")
	}
	if strings.HasSuffix(s, "h0m") {
		s = strings.TrimSuffix(s, "0m")
	}
	return s
}

func envSpec(name string) envVar {
	for _, e := range envDoc {
		if e.Name == name {
			return e
		}
	}
	panic("undocumented variable " + name) // a programming error: document it in envDoc
}

// envReader reads variables with the one parser of each kind and collects
// every problem.
type envReader struct {
	getenv   func(string) string
	problems []string
}

func (r *envReader) bad(format string, a ...any) {
	r.problems = append(r.problems, fmt.Sprintf(format, a...))
}

// boolean reads true/false (also 1/0, any case); empty is def.
func (r *envReader) boolean(name string, def bool) bool {
	v, ok := parseBool(r.getenv(name))
	if !ok {
		r.bad("%s=%q: use true or false", name, r.getenv(name))
		return def
	}
	if v == nil {
		return def
	}
	return *v
}

// parseBool is the one boolean parser: true/false or 1/0, any case; nil for "".
func parseBool(s string) (*bool, bool) {
	var v bool
	switch strings.ToLower(strings.TrimSpace(s)) {
	case "":
		return nil, true
	case "true", "1":
		v = true
	case "false", "0":
	default:
		return nil, false
	}
	return &v, true
}

// integer reads a whole number within the variable's documented range.
func (r *envReader) integer(name string, def int) int {
	spec, raw := envSpec(name), strings.TrimSpace(r.getenv(name))
	if raw == "" {
		return def
	}
	n, err := strconv.ParseInt(raw, 10, 64)
	if err != nil || n < spec.Min || n > spec.Max {
		r.bad("%s=%q: must be a whole number from %d to %d", name, raw, spec.Min, spec.Max)
		return def
	}
	return int(n)
}

// duration reads a Go duration within the variable's documented range.
func (r *envReader) duration(name string, def time.Duration) time.Duration {
	spec, raw := envSpec(name), strings.TrimSpace(r.getenv(name))
	if raw == "" {
		return def
	}
	d, err := time.ParseDuration(raw)
	if err != nil || int64(d) < spec.Min || int64(d) > spec.Max {
		r.bad("%s=%q: must be a duration from %s to %s, such as %s", name, raw, shortDuration(time.Duration(spec.Min)), shortDuration(time.Duration(spec.Max)), shortDuration(def))
		return def
	}
	return d
}

// oneOf reads one of a fixed set of words (any case).
func (r *envReader) oneOf(name, def string, allowed ...string) string {
	raw := strings.ToLower(strings.TrimSpace(r.getenv(name)))
	if raw == "" {
		return def
	}
	for _, a := range allowed {
		if raw == a {
			return raw
		}
	}
	r.bad("%s=%q: use %s", name, r.getenv(name), strings.Join(allowed, ", "))
	return def
}

func loadConfig(getenv func(string) string) config {
	r := &envReader{getenv: getenv}
	c := config{
		Addr: or(getenv("TENANTGATE_ADDR"), ":8080"), DataDir: or(getenv("TENANTGATE_DATA_DIR"), "data"),
		DatabaseURL: getenv("TENANTGATE_DATABASE_URL"), MigrationURL: getenv("TENANTGATE_MIGRATION_DATABASE_URL"),
		PlatformURL: getenv("TENANTGATE_PLATFORM_DATABASE_URL"),
		BaseDomain:  getenv("TENANTGATE_BASE_DOMAIN"),
		PublicURL:   strings.TrimSuffix(getenv("TENANTGATE_PUBLIC_URL"), "/"), MasterKey: getenv("TENANTGATE_MASTER_KEY"),
		RedisURL: getenv("TENANTGATE_REDIS_URL"), BootstrapEmail: getenv("TENANTGATE_BOOTSTRAP_OPERATOR_EMAIL"),
		BootstrapPass: getenv("TENANTGATE_BOOTSTRAP_OPERATOR_PASSWORD"),
	}
	if v, ok := parseBool(getenv("TENANTGATE_AUTO_MIGRATE")); !ok {
		r.bad("TENANTGATE_AUTO_MIGRATE=%q: use true or false (or leave it unset: true for SQLite, false for PostgreSQL)", getenv("TENANTGATE_AUTO_MIGRATE"))
	} else if v != nil {
		c.AutoMigrate = strconv.FormatBool(*v)
	}
	c.LogFormat = r.oneOf("TENANTGATE_LOG_FORMAT", "text", "text", "json")
	c.LogLevel = r.oneOf("TENANTGATE_LOG_LEVEL", "info", "debug", "info", "warn", "error")
	c.PasswordProfile = r.oneOf("TENANTGATE_PASSWORD_PROFILE", "default", "default", "fast")
	c.AccessTTL = r.duration("TENANTGATE_ACCESS_TOKEN_TTL", 15*time.Minute)
	c.RefreshTTL = r.duration("TENANTGATE_REFRESH_TOKEN_TTL", 720*time.Hour)
	if c.RefreshTTL < c.AccessTTL {
		r.bad("TENANTGATE_REFRESH_TOKEN_TTL (%s) must not be shorter than TENANTGATE_ACCESS_TOKEN_TTL (%s)", c.RefreshTTL, c.AccessTTL)
	}
	c.PurgeDelay = r.duration("TENANTGATE_PURGE_DELAY", 720*time.Hour)
	c.PurgeEvery = r.duration("TENANTGATE_PURGE_INTERVAL", time.Hour)
	c.ShutdownGrace = r.duration("TENANTGATE_SHUTDOWN_GRACE", 20*time.Second)
	c.RedisTimeout = r.duration("TENANTGATE_REDIS_TIMEOUT", 100*time.Millisecond)
	c.TrialDays = r.integer("TENANTGATE_TRIAL_DAYS", 14)
	c.AuthRatePerMinute = r.integer("TENANTGATE_AUTH_RATE_PER_MINUTE", 30)
	c.GatewayMaxAttempts = r.integer("TENANTGATE_GATEWAY_MAX_ATTEMPTS", 3)
	c.RateLimitFailOpen = r.boolean("TENANTGATE_RATE_LIMIT_FAIL_OPEN", true)
	if (c.BootstrapEmail == "") != (c.BootstrapPass == "") {
		r.bad("set both TENANTGATE_BOOTSTRAP_OPERATOR_EMAIL and TENANTGATE_BOOTSTRAP_OPERATOR_PASSWORD, or neither")
	}
	if v := getenv("TENANTGATE_SERVICE_TOKENS"); v != "" {
		for _, pair := range strings.Split(v, ",") {
			name, tok, ok := strings.Cut(strings.TrimSpace(pair), "=")
			if !ok || name == "" || len(tok) < 32 {
				r.bad("TENANTGATE_SERVICE_TOKENS: each entry must be name=token with a token of at least 32 characters (make one with: openssl rand -hex 32)")
				break
			}
			c.ServiceTokens = append(c.ServiceTokens, web.ServiceToken{Name: name, Token: tok})
		}
	}
	c.GatewayDisableAfter = [2]int{10, 20}
	if v := getenv("TENANTGATE_GATEWAY_DISABLE_AFTER"); v != "" {
		var f, n int
		if _, err := fmt.Sscanf(v, "%d/%d", &f, &n); err != nil || f < 1 || n < f || n > 1000 || fmt.Sprintf("%d/%d", f, n) != strings.TrimSpace(v) {
			r.bad("TENANTGATE_GATEWAY_DISABLE_AFTER=%q: must be F/N with 1 <= F <= N <= 1000, e.g. 10/20", v)
		} else {
			c.GatewayDisableAfter = [2]int{f, n}
		}
	}
	newName, oldName := r.boolean("TENANTGATE_ALLOW_PRIVATE_EGRESS", false), r.boolean("TENANTGATE_GATEWAY_ALLOW_PRIVATE_UPSTREAMS", false)
	c.AllowPrivateEgress = newName || oldName // both are checked, and either turns it on
	c.PaymentWebhookSecret = getenv("TENANTGATE_PAYMENT_WEBHOOK_SECRET")
	if c.PublicURL != "" {
		if msg := checkHTTPURL(c.PublicURL); msg != "" {
			r.bad("TENANTGATE_PUBLIC_URL=%q: %s", showURL(c.PublicURL), msg)
		}
	}
	if c.BaseDomain != "" && !validHostName(c.BaseDomain) {
		r.bad("TENANTGATE_BASE_DOMAIN=%q: must be a host name such as example.com (no scheme, port or path)", c.BaseDomain)
	}
	if c.RedisURL != "" {
		if _, err := redis.ParseURL(c.RedisURL); err != nil {
			r.bad("TENANTGATE_REDIS_URL=%q: %s", showURL(c.RedisURL), scrub(err, c.RedisURL))
		}
	}
	if iss := getenv("TENANTGATE_OIDC_ISSUER"); iss != "" {
		c.OIDC = &oidc.Platform{Issuer: strings.TrimSuffix(iss, "/"), ClientID: getenv("TENANTGATE_OIDC_CLIENT_ID"),
			ClientSecret: getenv("TENANTGATE_OIDC_CLIENT_SECRET"), OrgClaim: getenv("TENANTGATE_OIDC_ORG_CLAIM"),
			RolesClaim: getenv("TENANTGATE_OIDC_ROLES_CLAIM"), JIT: r.boolean("TENANTGATE_OIDC_JIT", true)}
		if msg := checkHTTPURL(c.OIDC.Issuer); msg != "" {
			r.bad("TENANTGATE_OIDC_ISSUER=%q: %s", showURL(iss), msg)
		}
		if c.OIDC.ClientID == "" || c.OIDC.ClientSecret == "" {
			r.bad("TENANTGATE_OIDC_ISSUER needs TENANTGATE_OIDC_CLIENT_ID and TENANTGATE_OIDC_CLIENT_SECRET")
		}
	} else {
		r.boolean("TENANTGATE_OIDC_JIT", true) // still checked, so a typo is not silently ignored
	}
	c.problems = r.problems
	return c
}

// configError is a configuration that cannot run; it exits with code 2.
type configError struct{ problems []string }

func (e *configError) Error() string {
	return "configuration (see `tenantgate help env`):\n  " + strings.Join(e.problems, "\n  ")
}

// validate checks the whole configuration, the environment's values and the
// flags', and reports every problem at once. It has no side effects: it
// creates no directory or file and connects to nothing.
func (c *config) validate() error {
	problems := append([]string(nil), c.problems...)
	bad := func(format string, a ...any) { problems = append(problems, fmt.Sprintf(format, a...)) }
	if msg := checkAddr(c.Addr); msg != "" {
		bad("listen address (--addr / TENANTGATE_ADDR) %q: %s", c.Addr, msg)
	}
	if strings.TrimSpace(c.DataDir) == "" {
		bad("the data directory (--data-dir / TENANTGATE_DATA_DIR) is empty")
	} else if fi, err := os.Stat(c.DataDir); err == nil && !fi.IsDir() {
		bad("the data directory (--data-dir / TENANTGATE_DATA_DIR) %s is a file, not a directory", c.DataDir)
	}
	dialect, _, dbErr := store.ParseURL(c.DatabaseURL)
	if dbErr != nil {
		bad("the database URL (--database-url / TENANTGATE_DATABASE_URL) %s", dbErr)
	}
	for _, u := range []struct{ name, value string }{
		{"TENANTGATE_MIGRATION_DATABASE_URL", c.MigrationURL}, {"TENANTGATE_PLATFORM_DATABASE_URL", c.PlatformURL}} {
		if u.value == "" {
			continue
		}
		if d, _, err := store.ParseURL(u.value); err != nil || d != store.Postgres {
			bad("%s=%q: must be a postgres://… URL", u.name, showURL(u.value))
		} else if dbErr == nil && dialect != store.Postgres {
			bad("%s is set but the database (TENANTGATE_DATABASE_URL) is not PostgreSQL", u.name)
		}
	}
	c.masterKey, c.masterKeyFromEnv = nil, false
	if c.MasterKey != "" {
		if k, err := secret.ParseKey(c.MasterKey); err != nil {
			bad("TENANTGATE_MASTER_KEY: %s", err)
		} else {
			c.masterKey, c.masterKeyFromEnv = k, true
		}
	} else if raw, err := os.ReadFile(c.masterKeyPath()); err == nil {
		if k, err := secret.ParseKey(string(raw)); err != nil {
			bad("the master key file %s: %s", c.masterKeyPath(), err)
		} else {
			c.masterKey = k
		}
	} else if !errors.Is(err, os.ErrNotExist) && !errors.Is(err, syscall.ENOTDIR) {
		bad("the master key file %s cannot be read: %s", c.masterKeyPath(), err)
	}
	if len(problems) > 0 {
		return &configError{problems: problems}
	}
	return nil
}

// checkAddr accepts host:port with a numeric port 0-65535 (host may be empty).
func checkAddr(addr string) string {
	host, port, err := net.SplitHostPort(addr)
	if err != nil {
		return "must be host:port or :port, e.g. :8080 or 127.0.0.1:8080"
	}
	if n, err := strconv.Atoi(port); err != nil || n < 0 || n > 65535 {
		return "the port must be a number from 0 to 65535"
	}
	if host != "" && net.ParseIP(host) == nil && !validHostName(host) {
		return "the host is neither an IP address nor a host name"
	}
	return ""
}

// checkHTTPURL accepts an absolute http(s) URL without credentials, query or fragment.
func checkHTTPURL(raw string) string {
	u, err := url.Parse(raw)
	switch {
	case err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "":
		return "must be an absolute http:// or https:// URL, e.g. https://tenantgate.example.com"
	case u.User != nil:
		return "must not carry credentials"
	case u.RawQuery != "" || u.Fragment != "":
		return "must not have a query or fragment"
	case u.Port() != "":
		if n, err := strconv.Atoi(u.Port()); err != nil || n < 1 || n > 65535 {
			return "the port must be a number from 1 to 65535"
		}
	}
	if h := u.Hostname(); net.ParseIP(h) == nil && !validHostName(h) {
		return "the host is neither an IP address nor a host name"
	}
	return ""
}

// validHostName: dot-separated labels of letters, digits and '-'.
func validHostName(h string) bool {
	if h == "" || len(h) > 253 {
		return false
	}
	for _, label := range strings.Split(strings.TrimSuffix(h, "."), ".") {
		if label == "" || len(label) > 63 || label[0] == '-' || label[len(label)-1] == '-' {
			return false
		}
		for _, r := range label {
			if !(r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' || r == '-') {
				return false
			}
		}
	}
	return true
}

// showURL is a URL as the operator wrote it when it carries nothing secret,
// else its redacted form.
func showURL(raw string) string {
	if u, err := url.Parse(raw); err == nil && u.User == nil && !strings.Contains(raw, "=") {
		return raw
	}
	return secret.RedactURL(raw)
}

// scrub returns err's text with raw (a URL that may hold a password) replaced
// by its redacted form: parsers quote their input in their errors.
func scrub(err error, raw string) string {
	return strings.ReplaceAll(err.Error(), raw, secret.RedactURL(raw))
}

// storageFlags adds the flags every database-touching command shares.
func (c *config) storageFlags(fs *flag.FlagSet) {
	fs.StringVar(&c.DataDir, "data-dir", c.DataDir, "directory for the SQLite database and the master key (TENANTGATE_DATA_DIR)")
	fs.StringVar(&c.DatabaseURL, "database-url", c.DatabaseURL, "postgres://… for PostgreSQL, sqlite:PATH or a file path for SQLite (TENANTGATE_DATABASE_URL)")
}

func (c *config) masterKeyPath() string { return filepath.Join(c.DataDir, "master.key") }

func or(v, def string) string {
	if v == "" {
		return def
	}
	return v
}
