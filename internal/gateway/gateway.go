// Package gateway is tenantgate's OpenAI-compatible AI relay: channels
// (upstreams with sealed keys), routing with weighted failover, health with
// automatic disablement and a probe, streaming pass-through, exact metering
// from upstream usage (or a local tokenizer), billing through the ledger, the
// request log, per-tenant settings (content storage, redaction, BYOK-only)
// and the token-rate limits. One sub-package per upstream wire format.
package gateway

import (
	"context"
	"log/slog"
	"math/rand/v2"
	"net/http"
	"net/url"
	"slices"
	"sort"
	"sync"
	"sync/atomic"
	"time"

	"gorm.io/gorm"

	"github.com/tenantgate/tenantgate/internal/actor"
	"github.com/tenantgate/tenantgate/internal/billing"
	"github.com/tenantgate/tenantgate/internal/egress"
	"github.com/tenantgate/tenantgate/internal/gateway/anthropic"
	"github.com/tenantgate/tenantgate/internal/gateway/gemini"
	"github.com/tenantgate/tenantgate/internal/gateway/journal"
	"github.com/tenantgate/tenantgate/internal/gateway/openai"
	"github.com/tenantgate/tenantgate/internal/gateway/wire"
	"github.com/tenantgate/tenantgate/internal/secret"
	"github.com/tenantgate/tenantgate/internal/store"
)

// Meter is the usage metering the gateway reports to (quota implements it):
// tokens and messages count toward the plan's monthly limits.
type Meter interface {
	// AddMeteredTx adds values (meter → amount) to the tenant's current
	// period counters inside tx.
	AddMeteredTx(ctx context.Context, tx *gorm.DB, tenantID string, values map[string]int64) error
	// AllowsMetered refuses (429 TENANT_QUOTA_EXCEEDED) when amount more of
	// meter does not fit the period; it reads a short-lived cache.
	AllowsMetered(ctx context.Context, tenantID, meter string, amount int64) error
	// Warm readies what AddMeteredTx reads, before its transaction begins.
	Warm(ctx context.Context, tenantID string) error
}

// TokenLimiter is the rate limiter, counting tokens instead of requests.
type TokenLimiter interface {
	AllowTokens(ctx context.Context, key string, perMinute, n int) (ok bool, retryAfter time.Duration, err error)
}

// Options configure the gateway.
type Options struct {
	Box        *secret.Box
	Log        *slog.Logger
	Billing    *billing.Service
	Meter      Meter        // nil: no monthly token or message limits
	Limiter    TokenLimiter // nil: no token-per-minute limits
	PlanExists func(ctx context.Context, plan string) bool
	Now        func() time.Time

	MaxAttempts      int           // channels tried per request (default 3)
	HealthWindow     int           // the last N requests a channel's health looks at (default 20)
	HealthFailures   int           // disable after this many failures among them (default 10)
	ProbeEvery       time.Duration // the longest wait between probes of a disabled channel (default 30s)
	ProbeFirst       time.Duration // the first wait; it doubles after every failed probe up to ProbeEvery (default 1s)
	ReloadEvery      time.Duration // how often channels and settings are re-read (default 10s)
	DefaultMaxOutput int64         // output tokens reserved when a request sets no cap (default 4096)
	// AllowPrivateUpstreams lets tenants' own channels reach loopback,
	// private and link-local addresses (the operator's egress switch). Off
	// by default: a tenant must not be able to point the gateway at the
	// operator's internal network.
	AllowPrivateUpstreams bool
	// FlushEvery is how long the usage writer waits for more finished calls
	// when the last batch had several (default 1ms; a negative value never
	// waits): commits are shared, so under load each call costs less.
	FlushEvery time.Duration
	// Journal is the local usage journal (nil: none). With it, a call's usage
	// survives a failing database and the death of the process; see Recover.
	Journal *journal.Journal
	// ProgressEvery is how often a stream's delivered usage is journaled
	// (default 200ms): what a kill -9 can cost a stream at most.
	ProgressEvery time.Duration
}

// Service is the gateway.
type Service struct {
	store *store.Store
	box   *secret.Box
	log   *slog.Logger
	opts  Options
	now   func() time.Time

	providers map[string]wire.Provider

	mu       sync.RWMutex
	byOwner  map[string][]*live // owner (tenant id or platform) → channels, priority order
	health   map[string]*health // channel id → health, kept across reloads
	settings map[string]*Settings
	loadedAt time.Time
	reloadMu sync.Mutex

	writer  *writer
	journal *journal.Journal
	tokens  tokens
	probing atomic.Bool
	trials  atomic.Uint64 // tokens of half-open trial calls

	// cut ends every upstream call in flight (CutStreams, at the end of a
	// shutdown's grace period); cutCtx is done once it did.
	cutCtx context.Context
	cut    context.CancelFunc
}

// New builds the gateway. Call Run to start its background work.
func New(s *store.Store, o Options) *Service {
	if o.Log == nil {
		o.Log = slog.New(slog.DiscardHandler)
	}
	if o.Now == nil {
		o.Now = time.Now
	}
	def := func(p *int, v int) {
		if *p <= 0 {
			*p = v
		}
	}
	def(&o.MaxAttempts, 3)
	def(&o.HealthWindow, 20)
	def(&o.HealthFailures, 10)
	if o.HealthFailures > o.HealthWindow {
		o.HealthFailures = o.HealthWindow
	}
	if o.ProbeEvery <= 0 {
		o.ProbeEvery = 30 * time.Second
	}
	if o.ProbeFirst <= 0 {
		o.ProbeFirst = time.Second
	}
	o.ProbeFirst = min(o.ProbeFirst, o.ProbeEvery)
	if o.ReloadEvery <= 0 {
		o.ReloadEvery = 10 * time.Second
	}
	if o.FlushEvery == 0 {
		o.FlushEvery = time.Millisecond
	}
	if o.ProgressEvery <= 0 {
		o.ProgressEvery = 200 * time.Millisecond
	}
	if o.DefaultMaxOutput <= 0 {
		o.DefaultMaxOutput = 4096
	}
	g := &Service{store: s, box: o.Box, log: o.Log, opts: o, journal: o.Journal, now: func() time.Time { return o.Now().UTC() },
		providers: map[string]wire.Provider{
			ProviderOpenAI:     openai.New(openai.OpenAI),
			ProviderAzure:      openai.New(openai.Azure),
			ProviderCompatible: openai.New(openai.Compatible),
			ProviderAnthropic:  anthropic.New(),
			ProviderGemini:     gemini.New(),
		},
		byOwner: map[string][]*live{}, health: map[string]*health{}, settings: map[string]*Settings{}}
	g.writer = newWriter(g)
	g.cutCtx, g.cut = context.WithCancel(context.Background())
	return g
}

// CutStreams ends every upstream call still in flight: a stream ends with an
// error event and is billed for what it delivered, a call that has not
// answered yet fails unbilled. Shutdown calls it when its grace period is
// over, so that no stream is cut without a word or a bill.
func (g *Service) CutStreams() { g.cut() }

// Run reloads channels and settings, probes disabled channels and writes
// usage until ctx ends; it returns once every accepted usage record is
// written.
func (g *Service) Run(ctx context.Context) {
	if !g.Ready() {
		_ = g.Reload(ctx)
	}
	done := make(chan struct{})
	go func() { defer close(done); g.writer.run() }()
	var probes sync.WaitGroup
	defer probes.Wait()
	reload := time.NewTicker(g.opts.ReloadEvery)
	probe := time.NewTicker(g.opts.ProbeFirst) // each channel is probed when its own backoff is over
	defer reload.Stop()
	defer probe.Stop()
	for {
		select {
		case <-ctx.Done():
			g.writer.close()
			<-done
			return
		case <-reload.C:
			g.Reload(ctx)
		case <-probe.C:
			if g.probing.CompareAndSwap(false, true) { // a slow probe round never holds up reloads
				probes.Add(1)
				go func() { defer probes.Done(); defer g.probing.Store(false); g.ProbeDisabled(ctx) }()
			}
		}
	}
}

// live is a channel ready to serve: keys opened, client built.
type live struct {
	ch       Channel
	keys     []string
	headers  map[string]string
	provider wire.Provider
	client   *http.Client
	health   *health
	next     atomic.Uint64 // round robin over keys
}

// down reports whether the health check has taken the channel out of
// routing: recorded as auto_disabled, or disabled in this process before the
// next reload records it.
func (l *live) down() bool {
	return l.ch.Status == StatusAutoDisabled || (l.ch.Status == StatusEnabled && l.health.disabled.Load())
}

func (l *live) key() string {
	if len(l.keys) == 0 {
		return ""
	}
	return l.keys[int(l.next.Add(1)-1)%len(l.keys)]
}

// health is a channel's recent record, shared across reloads.
type health struct {
	mu         sync.Mutex
	ring       []bool // true: failure
	pos        int
	filled     int
	inflight   atomic.Int64
	disabled   atomic.Bool  // set at once on automatic disablement, before the reload
	disabledAt atomic.Int64 // when (unix nanoseconds)
	// While disabled: the next probe is due at probeAt (unix ns), after a
	// wait of backoff (ns) that doubles with every failed probe; trial holds
	// the token (candidate.trial) of the call let through while every channel
	// of its model is down, 0 when free; it was a
	// real call let through while every channel of its model is down.
	probeAt  atomic.Int64
	backoff  atomic.Int64
	trial    atomic.Uint64
	reviving atomic.Bool // a re-enablement is being recorded
}

func (h *health) record(window int, failed bool) (failures int) {
	h.mu.Lock()
	defer h.mu.Unlock()
	if len(h.ring) != window {
		h.ring, h.pos, h.filled = make([]bool, window), 0, 0
	}
	h.ring[h.pos] = failed
	h.pos = (h.pos + 1) % window
	if h.filled < window {
		h.filled++
	}
	for _, f := range h.ring[:h.filled] {
		if f {
			failures++
		}
	}
	return failures
}

// acquire takes one of the channel's concurrent slots (max 0: unlimited).
func (h *health) acquire(max int) bool {
	for {
		n := h.inflight.Load()
		if max > 0 && n >= int64(max) {
			return false
		}
		if h.inflight.CompareAndSwap(n, n+1) {
			return true
		}
	}
}

func (h *health) reset() {
	h.mu.Lock()
	h.ring, h.pos, h.filled = nil, 0, 0
	h.mu.Unlock()
	h.disabled.Store(false)
}

// Ready reports whether the routing table has been loaded at least once.
// Until then the gateway cannot tell a model that no channel serves from one
// whose channels are not loaded yet, so /v1 answers 503 and /readyz says not
// ready.
func (g *Service) Ready() bool {
	g.mu.RLock()
	defer g.mu.RUnlock()
	return !g.loadedAt.IsZero()
}

// Reload re-reads every channel and setting (at most one reload at a time).
// On failure it keeps the table loaded before and returns the error.
func (g *Service) Reload(ctx context.Context) error {
	g.reloadMu.Lock()
	defer g.reloadMu.Unlock()
	var chans []Channel
	var sets []Settings
	err := g.store.Tx(store.WithPlatform(ctx, "gateway routing table"), func(tx *gorm.DB) error {
		if err := tx.Find(&chans).Error; err != nil {
			return err
		}
		return tx.Find(&sets).Error
	})
	if err != nil {
		g.log.Error("could not load the AI channels; keeping the ones loaded before", "err", err)
		return err
	}
	byOwner := map[string][]*live{}
	g.mu.RLock()
	old := g.health
	oldLive := map[string]*live{}
	for _, ls := range g.byOwner {
		for _, l := range ls {
			oldLive[l.ch.ID] = l
		}
	}
	g.mu.RUnlock()
	healthByID := map[string]*health{}
	for i := range chans {
		c := chans[i]
		var l *live
		if o, ok := oldLive[c.ID]; ok && o.ch.UpdatedAt.Equal(c.UpdatedAt) && o.ch.Status == c.Status {
			l = o // unchanged: keep its opened keys and its client's warm connections
			delete(oldLive, c.ID)
		} else {
			var err error
			if l, err = g.prepare(&c); err != nil {
				g.log.Error("an AI channel cannot be used: its keys cannot be opened (was TENANTGATE_MASTER_KEY changed?)", "channel", c.ID, "err", err)
				continue
			}
		}
		switch h, ok := old[c.ID]; {
		case l.health != nil:
			// a live kept from before: it already holds its record, and
			// requests read the field, so it is never written again
		case ok:
			l.health = h // a changed channel (a new live, not yet published) keeps its record
		default:
			l.health = &health{}
		}
		if c.Status == StatusEnabled && l.health.disabled.Load() && c.StatusAt != nil && c.StatusAt.UnixNano() > l.health.disabledAt.Load() {
			l.health.reset() // enabled again after it was disabled (by a person or the probe): a fresh record
		}
		healthByID[c.ID] = l.health
		byOwner[c.TenantID] = append(byOwner[c.TenantID], l)
	}
	for _, ls := range byOwner {
		sort.SliceStable(ls, func(i, j int) bool { return ls[i].ch.Priority > ls[j].ch.Priority })
	}
	settings := map[string]*Settings{}
	for i := range sets {
		settings[sets[i].TenantID] = sets[i].compile(g.log)
	}
	g.mu.Lock()
	g.byOwner, g.health, g.settings, g.loadedAt = byOwner, healthByID, settings, g.now()
	g.mu.Unlock()
	for _, l := range oldLive { // changed or removed: let their idle connections go
		l.client.CloseIdleConnections()
	}
	return nil
}

func (g *Service) prepare(c *Channel) (*live, error) {
	keys, err := g.openKeys(c)
	if err != nil {
		return nil, err
	}
	headers, err := g.openHeaders(c)
	if err != nil {
		return nil, err
	}
	return &live{ch: *c, keys: keys, headers: headers, provider: g.providers[c.Provider],
		client: g.client(c)}, nil
}

// client builds the channel's HTTP client through egress: its proxy, its
// timeout before the answer's headers, no redirects, and, for tenants'
// channels, connections only to public addresses unless the operator
// allows private ones. Platform channels are the operator's: trusted.
func (g *Service) client(c *Channel) *http.Client {
	timeout := time.Duration(c.TimeoutMs) * time.Millisecond
	if timeout <= 0 {
		timeout = 60 * time.Second
	}
	policy := egress.Policy{AllowPrivate: g.opts.AllowPrivateUpstreams}
	if c.Platform() {
		policy = egress.Trusted
	}
	o := egress.Options{ResponseHeaderTimeout: timeout, MaxIdleConnsPerHost: 256}
	if c.ProxyURL != "" {
		if u, err := url.Parse(c.ProxyURL); err == nil {
			o.Proxy = u
		}
	}
	return policy.Client(o)
}

// candidate is one channel a request may try, with the model name upstream.
type candidate struct {
	l        *live
	upstream string
	byok     bool
	trial    uint64 // non-zero: a half-open trial of a disabled channel, holding its slot with this token
}

// candidates returns, in the order to try them, the enabled channels that
// serve model for the tenant: its own (BYOK) channels first, then, unless
// the tenant routes only to its own, the platform channels its plan may use.
// Within one priority the order is weighted random. unhealthy reports that
// channels serving the model exist but the health check has disabled them
// all for now (a 503 to retry, not a 404 for a model nobody serves).
func (g *Service) candidates(tenantID, plan, model string, byok bool, set *Settings) (out []candidate, unhealthy bool) {
	g.mu.RLock()
	own, plat := g.byOwner[tenantID], g.byOwner[store.PlatformTenantID]
	g.mu.RUnlock()
	var down []candidate // channels serving the model that the health check disabled
	add := func(ls []*live, isOwn bool) {
		var tier []*live
		flush := func() {
			for _, l := range weightedOrder(tier) {
				out = append(out, candidate{l: l, upstream: l.ch.UpstreamModel(model), byok: isOwn})
			}
			tier = tier[:0]
		}
		for i, l := range ls {
			if !l.ch.Serves(model) || l.provider == nil || (!isOwn && len(l.ch.Plans) > 0 && !slices.Contains(l.ch.Plans, plan)) {
				continue
			}
			if l.down() {
				down = append(down, candidate{l: l, upstream: l.ch.UpstreamModel(model), byok: isOwn})
				continue
			}
			if l.ch.Status != StatusEnabled {
				continue
			}
			if len(tier) > 0 && tier[0].ch.Priority != l.ch.Priority {
				flush()
			}
			tier = append(tier, ls[i])
		}
		flush()
	}
	if byok {
		add(own, true)
	}
	if !(byok && set != nil && set.BYOKOnly) {
		add(plat, false)
	}
	if len(out) > 0 || len(down) == 0 {
		return out, false
	}
	// Every channel of the model is down (half-open): one real call at a time
	// goes to each, and the first that succeeds brings its channel back, so
	// a flaky channel still serves rather than refusing everything.
	token := g.trials.Add(1)
	for _, c := range down {
		if c.l.health.trial.CompareAndSwap(0, token) {
			c.trial = token
			out = append(out, c)
		}
	}
	return out, len(out) == 0
}

// weightedOrder shuffles channels so that each comes first with a
// probability proportional to its weight (Efraimidis–Spirakis).
func weightedOrder(ls []*live) []*live {
	if len(ls) <= 1 {
		return slices.Clone(ls)
	}
	type keyed struct {
		l *live
		k float64
	}
	ks := make([]keyed, len(ls))
	for i, l := range ls {
		w := float64(max(l.ch.Weight, 1))
		ks[i] = keyed{l, -rand.ExpFloat64() / w} // log(u)/w, larger first
	}
	sort.Slice(ks, func(i, j int) bool { return ks[i].k > ks[j].k })
	out := make([]*live, len(ks))
	for i, k := range ks {
		out[i] = k.l
	}
	return out
}

// Models lists the models the tenant can call: every model named by an
// enabled channel it may use ("*" channels add nothing listable).
func (g *Service) Models(tenantID, plan string, byok bool) []string {
	g.mu.RLock()
	set := g.settings[tenantID]
	own, plat := g.byOwner[tenantID], g.byOwner[store.PlatformTenantID]
	g.mu.RUnlock()
	seen := map[string]bool{}
	add := func(ls []*live, isOwn bool) {
		for _, l := range ls {
			if l.ch.Status != StatusEnabled || l.health.disabled.Load() || (!isOwn && len(l.ch.Plans) > 0 && !slices.Contains(l.ch.Plans, plan)) {
				continue
			}
			for _, m := range l.ch.Models {
				if m != "*" {
					seen[m] = true
				}
			}
			for m := range l.ch.ModelMapping {
				seen[m] = true
			}
		}
	}
	if byok {
		add(own, true)
	}
	if !(byok && set != nil && set.BYOKOnly) {
		add(plat, false)
	}
	out := make([]string, 0, len(seen))
	for m := range seen {
		out = append(out, m)
	}
	slices.Sort(out)
	return out
}

func actorName(ctx context.Context) string {
	if a := actor.From(ctx); a != nil {
		if a.Email != "" {
			return a.Email
		}
		return string(a.Type) + ":" + a.ID
	}
	return "system"
}

// endTrial gives a trial call's slot back (only its own: the token says whose).
func (c candidate) endTrial() {
	if c.trial != 0 {
		c.l.health.trial.CompareAndSwap(c.trial, 0)
	}
}
