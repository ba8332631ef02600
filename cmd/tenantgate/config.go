package main

import (
	"flag"
	"fmt"
	"path/filepath"
	"strings"
	"time"

	"github.com/tenantgate/tenantgate/internal/identity/oidc"
	"github.com/tenantgate/tenantgate/internal/web"
)

// config is read once, from TENANTGATE_* variables and then flags.
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
	LogFormat       string
	LogLevel        string
	AccessTTL       time.Duration
	RefreshTTL      time.Duration
	PurgeDelay      time.Duration
	PurgeEvery      time.Duration
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
}

// envDoc documents every variable; --help prints it.
var envDoc = [][2]string{
	{"TENANTGATE_ADDR", "listen address (default :8080)"},
	{"TENANTGATE_DATA_DIR", "where SQLite, the master key and files live (default ./data)"},
	{"TENANTGATE_DATABASE_URL", "postgres://… to use PostgreSQL as the server's role (default: SQLite in the data dir)"},
	{"TENANTGATE_MIGRATION_DATABASE_URL", "postgres://… of the schema owner, used by `migrate` (default: the database URL)"},
	{"TENANTGATE_PLATFORM_DATABASE_URL", "postgres://… of the role for cross-tenant work (operators, jobs); default: the database URL's role"},
	{"TENANTGATE_AUTO_MIGRATE", "migrate on serve: default true for SQLite, false for PostgreSQL"},
	{"TENANTGATE_BASE_DOMAIN", "tenants answer at {slug}.{base domain} (default: none)"},
	{"TENANTGATE_PUBLIC_URL", "URL clients reach the server at; the token issuer (default http://localhost:PORT)"},
	{"TENANTGATE_MASTER_KEY", "32-byte key (hex or base64) sealing secrets; default: generated into DATA_DIR/master.key"},
	{"TENANTGATE_REDIS_URL", "redis://… shares rate limits, login lockouts and API-call counters between server processes"},
	{"TENANTGATE_LOG_FORMAT", "text or json (default text)"},
	{"TENANTGATE_LOG_LEVEL", "debug, info, warn or error (default info)"},
	{"TENANTGATE_ACCESS_TOKEN_TTL", "access token lifetime (default 15m)"},
	{"TENANTGATE_REFRESH_TOKEN_TTL", "refresh token lifetime (default 720h)"},
	{"TENANTGATE_PURGE_DELAY", "how long a deleted tenant can be restored before its data is purged (default 720h)"},
	{"TENANTGATE_TRIAL_DAYS", "trial length of a new tenant in days (default 14)"},
	{"TENANTGATE_SERVICE_TOKENS", "credentials of the service API (/internal/*): name=token,name2=token2 (tokens of 32+ characters)"},
	{"TENANTGATE_RATE_LIMIT_FAIL_OPEN", "when Redis is down: true (default) admits requests unlimited, false refuses them"},
	{"TENANTGATE_AUTH_RATE_PER_MINUTE", "sign-up, login and refresh requests a minute per client address (default 30; 0 for none)"},
	{"TENANTGATE_GATEWAY_MAX_ATTEMPTS", "AI gateway: channels tried per request on retryable failures (default 3)"},
	{"TENANTGATE_GATEWAY_DISABLE_AFTER", "AI gateway: disable a channel after F failures in its last N requests, as F/N (default 10/20)"},
	{"TENANTGATE_ALLOW_PRIVATE_EGRESS", "true lets URLs tenants configure (their AI channels, identity providers) reach loopback, private, link-local and other internal addresses (default false)"},
	{"TENANTGATE_GATEWAY_ALLOW_PRIVATE_UPSTREAMS", "the former name of TENANTGATE_ALLOW_PRIVATE_EGRESS, still honoured (true for either turns it on)"},
	{"TENANTGATE_PAYMENT_WEBHOOK_SECRET", "HMAC secret of the signed payment webhook (POST /api/v1/billing/webhooks/payment); unset: off"},
	{"TENANTGATE_OIDC_ISSUER", "platform-wide OpenID Connect provider (Zitadel style), e.g. https://acme.zitadel.cloud"},
	{"TENANTGATE_OIDC_CLIENT_ID", "… its client id"},
	{"TENANTGATE_OIDC_CLIENT_SECRET", "… its client secret"},
	{"TENANTGATE_OIDC_ORG_CLAIM", "… the claim naming the organisation (default urn:zitadel:iam:org:id)"},
	{"TENANTGATE_OIDC_ROLES_CLAIM", "… an optional claim listing tenant roles"},
	{"TENANTGATE_OIDC_JIT", "… create users on first sign-in: true (default) or false"},
	{"TENANTGATE_BOOTSTRAP_OPERATOR_EMAIL", "create this platform operator on first start …"},
	{"TENANTGATE_BOOTSTRAP_OPERATOR_PASSWORD", "… with this password"},
}

func loadConfig(getenv func(string) string) (config, error) {
	c := config{
		Addr: or(getenv("TENANTGATE_ADDR"), ":8080"), DataDir: or(getenv("TENANTGATE_DATA_DIR"), "data"),
		DatabaseURL: getenv("TENANTGATE_DATABASE_URL"), MigrationURL: getenv("TENANTGATE_MIGRATION_DATABASE_URL"),
		PlatformURL: getenv("TENANTGATE_PLATFORM_DATABASE_URL"),
		AutoMigrate: getenv("TENANTGATE_AUTO_MIGRATE"), BaseDomain: getenv("TENANTGATE_BASE_DOMAIN"),
		PublicURL: getenv("TENANTGATE_PUBLIC_URL"), MasterKey: getenv("TENANTGATE_MASTER_KEY"),
		RedisURL: getenv("TENANTGATE_REDIS_URL"), LogFormat: or(getenv("TENANTGATE_LOG_FORMAT"), "text"),
		LogLevel: or(getenv("TENANTGATE_LOG_LEVEL"), "info"), BootstrapEmail: getenv("TENANTGATE_BOOTSTRAP_OPERATOR_EMAIL"),
		BootstrapPass: getenv("TENANTGATE_BOOTSTRAP_OPERATOR_PASSWORD"), PasswordProfile: or(getenv("TENANTGATE_PASSWORD_PROFILE"), "default"),
		PurgeEvery: time.Hour,
	}
	var problems []string
	dur := func(name, def string) time.Duration {
		v := or(getenv(name), def)
		d, err := time.ParseDuration(v)
		if err != nil || d <= 0 {
			problems = append(problems, fmt.Sprintf("%s=%q is not a positive duration such as 15m or 720h", name, v))
		}
		return d
	}
	c.AccessTTL = dur("TENANTGATE_ACCESS_TOKEN_TTL", "15m")
	c.RefreshTTL = dur("TENANTGATE_REFRESH_TOKEN_TTL", "720h")
	c.PurgeDelay = dur("TENANTGATE_PURGE_DELAY", "720h")
	if v := getenv("TENANTGATE_PURGE_INTERVAL"); v != "" {
		c.PurgeEvery = dur("TENANTGATE_PURGE_INTERVAL", "1h")
	}
	c.TrialDays = 14
	if v := getenv("TENANTGATE_TRIAL_DAYS"); v != "" {
		if _, err := fmt.Sscanf(v, "%d", &c.TrialDays); err != nil || c.TrialDays < 0 {
			problems = append(problems, fmt.Sprintf("TENANTGATE_TRIAL_DAYS=%q is not a whole number of days", v))
		}
	}
	if c.LogFormat != "text" && c.LogFormat != "json" {
		problems = append(problems, fmt.Sprintf("TENANTGATE_LOG_FORMAT=%q: use text or json", c.LogFormat))
	}
	if c.PasswordProfile != "default" && c.PasswordProfile != "fast" {
		problems = append(problems, "TENANTGATE_PASSWORD_PROFILE must be default or fast")
	}
	if (c.BootstrapEmail == "") != (c.BootstrapPass == "") {
		problems = append(problems, "set both TENANTGATE_BOOTSTRAP_OPERATOR_EMAIL and TENANTGATE_BOOTSTRAP_OPERATOR_PASSWORD, or neither")
	}
	if v := getenv("TENANTGATE_SERVICE_TOKENS"); v != "" {
		for _, pair := range strings.Split(v, ",") {
			name, tok, ok := strings.Cut(strings.TrimSpace(pair), "=")
			if !ok || name == "" || len(tok) < 32 {
				problems = append(problems, "TENANTGATE_SERVICE_TOKENS: each entry must be name=token with a token of at least 32 characters (make one with: openssl rand -hex 32)")
				break
			}
			c.ServiceTokens = append(c.ServiceTokens, web.ServiceToken{Name: name, Token: tok})
		}
	}
	c.RateLimitFailOpen = getenv("TENANTGATE_RATE_LIMIT_FAIL_OPEN") != "false"
	c.AuthRatePerMinute = 30
	if v := getenv("TENANTGATE_AUTH_RATE_PER_MINUTE"); v != "" {
		if _, err := fmt.Sscanf(v, "%d", &c.AuthRatePerMinute); err != nil || c.AuthRatePerMinute < 0 {
			problems = append(problems, fmt.Sprintf("TENANTGATE_AUTH_RATE_PER_MINUTE=%q is not a whole number", v))
		}
	}
	c.GatewayMaxAttempts, c.GatewayDisableAfter = 3, [2]int{10, 20}
	if v := getenv("TENANTGATE_GATEWAY_MAX_ATTEMPTS"); v != "" {
		if _, err := fmt.Sscanf(v, "%d", &c.GatewayMaxAttempts); err != nil || c.GatewayMaxAttempts < 1 || c.GatewayMaxAttempts > 10 {
			problems = append(problems, fmt.Sprintf("TENANTGATE_GATEWAY_MAX_ATTEMPTS=%q must be a whole number from 1 to 10", v))
		}
	}
	if v := getenv("TENANTGATE_GATEWAY_DISABLE_AFTER"); v != "" {
		var f, n int
		if _, err := fmt.Sscanf(v, "%d/%d", &f, &n); err != nil || f < 1 || n < f || n > 1000 {
			problems = append(problems, fmt.Sprintf("TENANTGATE_GATEWAY_DISABLE_AFTER=%q must be F/N with 1 <= F <= N <= 1000, e.g. 10/20", v))
		}
		c.GatewayDisableAfter = [2]int{f, n}
	}
	c.AllowPrivateEgress = getenv("TENANTGATE_ALLOW_PRIVATE_EGRESS") == "true" || getenv("TENANTGATE_GATEWAY_ALLOW_PRIVATE_UPSTREAMS") == "true"
	c.PaymentWebhookSecret = getenv("TENANTGATE_PAYMENT_WEBHOOK_SECRET")
	if iss := getenv("TENANTGATE_OIDC_ISSUER"); iss != "" {
		c.OIDC = &oidc.Platform{Issuer: strings.TrimSuffix(iss, "/"), ClientID: getenv("TENANTGATE_OIDC_CLIENT_ID"),
			ClientSecret: getenv("TENANTGATE_OIDC_CLIENT_SECRET"), OrgClaim: getenv("TENANTGATE_OIDC_ORG_CLAIM"),
			RolesClaim: getenv("TENANTGATE_OIDC_ROLES_CLAIM"), JIT: getenv("TENANTGATE_OIDC_JIT") != "false"}
		if c.OIDC.ClientID == "" || c.OIDC.ClientSecret == "" {
			problems = append(problems, "TENANTGATE_OIDC_ISSUER needs TENANTGATE_OIDC_CLIENT_ID and TENANTGATE_OIDC_CLIENT_SECRET")
		}
	}
	if len(problems) > 0 {
		return c, fmt.Errorf("configuration:\n  %s", strings.Join(problems, "\n  "))
	}
	return c, nil
}

// storageFlags adds the flags every database-touching command shares.
func (c *config) storageFlags(fs *flag.FlagSet) {
	fs.StringVar(&c.DataDir, "data-dir", c.DataDir, "directory for the SQLite database and the master key (TENANTGATE_DATA_DIR)")
	fs.StringVar(&c.DatabaseURL, "database-url", c.DatabaseURL, "postgres://… to use PostgreSQL (TENANTGATE_DATABASE_URL)")
}

func (c *config) masterKeyPath() string { return filepath.Join(c.DataDir, "master.key") }

func or(v, def string) string {
	if v == "" {
		return def
	}
	return v
}
