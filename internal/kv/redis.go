package kv

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/redis/go-redis/v9"
)

// RedisConfig says how to reach Redis and how long a command may take.
type RedisConfig struct {
	URL string
	// Timeout bounds every command (dial, write, read, waiting for a pooled
	// connection); commands are never retried. 0: 100 ms.
	Timeout time.Duration
	Log     *slog.Logger
}

// ErrBreakerOpen is what a Redis command returns, without reaching Redis,
// while the circuit breaker is open.
var ErrBreakerOpen = errors.New("redis: circuit breaker open (Redis did not answer recently)")

// NewRedisClient opens a Redis client for every Redis use of the server
// (counters, locks, rate limits, login lockouts): each command is bounded by
// cfg.Timeout and not retried, and a circuit breaker (a go-redis hook, so it
// sees every command of this client) stops sending commands to a Redis that
// failed: while it is open a command costs no network round trip at all.
// go-redis's own log lines go to cfg.Log (see routeRedisLogs). close closes
// the client and detaches its logger.
func NewRedisClient(cfg RedisConfig) (c *redis.Client, b *Breaker, close func(), err error) {
	opts, err := redis.ParseURL(cfg.URL)
	if err != nil {
		return nil, nil, nil, err
	}
	if cfg.Timeout <= 0 {
		cfg.Timeout = 100 * time.Millisecond
	}
	log := cfg.Log
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	opts.DialTimeout, opts.ReadTimeout, opts.WriteTimeout, opts.PoolTimeout = cfg.Timeout, cfg.Timeout, cfg.Timeout, cfg.Timeout
	opts.ContextTimeoutEnabled = true
	opts.MaxRetries = -1   // a retry doubles the cost of a dead Redis; the breaker decides when to try again
	opts.DialerRetries = 1 // (the default, 5 dials 100 ms apart, is what made each request pay ~250 ms)
	opts.DisableIdentity = true
	detach := routeRedisLogs(log)
	c = redis.NewClient(opts)
	b = NewBreaker(log)
	c.AddHook(b)
	return c, b, func() { _ = c.Close(); detach() }, nil
}

// Breaker is a circuit breaker for one Redis client. Closed, it lets every
// command through and counts consecutive failures (network errors and
// timeouts; Redis's own error replies and redis.Nil are answers, not
// failures). After BreakerThreshold of them it opens: commands fail at once
// with ErrBreakerOpen. After a cool-down (500 ms, doubling up to 5 s while
// Redis stays down) it is half-open: one command goes through as a probe;
// success closes the breaker, failure opens it again.
type Breaker struct {
	mu       sync.Mutex
	state    breakerState
	failures int
	cooldown time.Duration
	openedAt time.Time
	probing  bool
	now      func() time.Time
	log      *slog.Logger

	attempts atomic.Int64 // commands sent to Redis
	rejected atomic.Int64 // commands refused while open
}

type breakerState int

const (
	breakerClosed breakerState = iota
	breakerOpen
	breakerHalfOpen
)

func (s breakerState) String() string {
	return [...]string{"closed", "open", "half-open"}[s]
}

// Breaker tuning.
const (
	BreakerThreshold   = 3
	breakerMinCooldown = 500 * time.Millisecond
	breakerMaxCooldown = 5 * time.Second
)

// NewBreaker returns a closed breaker.
func NewBreaker(log *slog.Logger) *Breaker {
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	return &Breaker{now: time.Now, log: log, cooldown: breakerMinCooldown}
}

// BreakerStats is a breaker's state and counts, for health and tests.
type BreakerStats struct {
	State              string
	Attempts, Rejected int64
}

// Stats reports the breaker's state and counts.
func (b *Breaker) Stats() BreakerStats {
	b.mu.Lock()
	st := b.state
	b.mu.Unlock()
	return BreakerStats{State: st.String(), Attempts: b.attempts.Load(), Rejected: b.rejected.Load()}
}

// Down reports whether Redis is considered unavailable (the breaker is not closed).
func (b *Breaker) Down() bool {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.state != breakerClosed
}

// Trip opens the breaker now (a failed check at start-up), so the server
// knows Redis is down before the first request pays for finding out.
func (b *Breaker) Trip(err error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.openLocked(err)
}

// allow decides whether a command may go to Redis; probe marks the one
// half-open trial.
func (b *Breaker) allow() (probe bool, ok bool) {
	b.mu.Lock()
	defer b.mu.Unlock()
	switch b.state {
	case breakerClosed:
		return false, true
	case breakerOpen:
		if b.now().Sub(b.openedAt) < b.cooldown {
			return false, false
		}
		b.state = breakerHalfOpen
	}
	if b.probing {
		return false, false
	}
	b.probing = true
	return true, true
}

// done records a command's outcome.
func (b *Breaker) done(ctx context.Context, probe bool, err error) {
	failed := isFailure(ctx, err)
	answered := err == nil || errorIsAnswer(err)
	b.mu.Lock()
	defer b.mu.Unlock()
	if probe {
		b.probing = false
	}
	switch {
	case failed && probe:
		b.cooldown = min(2*b.cooldown, breakerMaxCooldown)
		b.openLocked(err)
	case failed && b.state == breakerClosed:
		if b.failures++; b.failures >= BreakerThreshold {
			b.openLocked(err)
		}
	case answered:
		if b.state != breakerClosed {
			b.log.Info("Redis answers again: circuit breaker closed", "component", "redis")
		}
		b.state, b.failures, b.cooldown = breakerClosed, 0, breakerMinCooldown
	}
	// Otherwise the caller gave up, which says nothing about Redis (a
	// half-open breaker lets the next command probe).
}

func (b *Breaker) openLocked(err error) {
	if b.state == breakerClosed {
		b.log.Warn("Redis does not answer: circuit breaker open, Redis commands fail at once until a probe succeeds",
			"component", "redis", "err", errString(err))
	}
	b.state, b.openedAt, b.failures = breakerOpen, b.now(), 0
}

func errString(err error) string {
	if err == nil {
		return "start-up check failed"
	}
	return err.Error()
}

// isFailure tells a Redis that is down or hung from an answer.
func isFailure(ctx context.Context, err error) bool {
	if err == nil || errorIsAnswer(err) {
		return false
	}
	if errors.Is(err, context.Canceled) && errors.Is(ctx.Err(), context.Canceled) {
		return false // the caller went away
	}
	if errors.Is(err, redis.ErrClosed) {
		return false // we closed the client
	}
	return true
}

// errorIsAnswer: redis.Nil and Redis's error replies (NOSCRIPT, WRONGTYPE, …) come from a live Redis.
func errorIsAnswer(err error) bool {
	if errors.Is(err, redis.Nil) {
		return true
	}
	var re redis.Error
	if errors.As(err, &re) {
		var ne net.Error
		return !errors.As(err, &ne) // some network errors also claim to be Redis errors
	}
	return false
}

// DialHook implements redis.Hook.
func (b *Breaker) DialHook(next redis.DialHook) redis.DialHook { return next }

// inBreaker marks a context already admitted by the breaker: go-redis runs
// a new connection's handshake (HELLO, AUTH, SELECT) through the same hooks,
// inside the command that needed the connection, and that handshake is part
// of the command's one attempt, not a second one.
type inBreaker struct{}

// ProcessHook implements redis.Hook.
func (b *Breaker) ProcessHook(next redis.ProcessHook) redis.ProcessHook {
	return func(ctx context.Context, cmd redis.Cmder) error {
		return b.guard(ctx, func(ctx context.Context) error { return next(ctx, cmd) }, func() { cmd.SetErr(ErrBreakerOpen) })
	}
}

// guard runs one attempt (a command or a pipeline) through the breaker:
// refused at once while it is open (refuse marks the commands), counted
// otherwise. A handshake inside an admitted attempt is part of it.
func (b *Breaker) guard(ctx context.Context, run func(context.Context) error, refuse func()) error {
	if ctx.Value(inBreaker{}) != nil {
		return run(ctx)
	}
	ctx = context.WithValue(ctx, inBreaker{}, b)
	probe, ok := b.allow()
	if !ok {
		b.rejected.Add(1)
		refuse()
		return ErrBreakerOpen
	}
	b.attempts.Add(1)
	err := run(ctx)
	b.done(ctx, probe, err)
	return err
}

// ProcessPipelineHook implements redis.Hook.
func (b *Breaker) ProcessPipelineHook(next redis.ProcessPipelineHook) redis.ProcessPipelineHook {
	return func(ctx context.Context, cmds []redis.Cmder) error {
		return b.guard(ctx, func(ctx context.Context) error { return next(ctx, cmds) }, func() {
			for _, c := range cmds {
				c.SetErr(ErrBreakerOpen)
			}
		})
	}
}

// go-redis logs through one process-wide logger (redis.SetLogger; v9.23
// has no per-client option). The least global thing possible: the first
// client installs, once, a router that sends go-redis's lines to the slog
// logger of the most recently opened client that is still open (in a server
// process: the server's own logger) as warnings with component=redis, and to
// nowhere when no client is open. Nothing else in tenantgate is global.
var redisLogs struct {
	once  sync.Once
	mu    sync.Mutex
	sinks []*slog.Logger
}

type redisLogRouter struct{}

func (redisLogRouter) Printf(ctx context.Context, format string, v ...any) {
	redisLogs.mu.Lock()
	var log *slog.Logger
	if n := len(redisLogs.sinks); n > 0 {
		log = redisLogs.sinks[n-1]
	}
	redisLogs.mu.Unlock()
	if log != nil {
		log.Warn(strings.TrimPrefix(fmt.Sprintf(format, v...), "redis: "), "component", "redis")
	}
}

func routeRedisLogs(log *slog.Logger) (detach func()) {
	redisLogs.once.Do(func() { redis.SetLogger(redisLogRouter{}) })
	redisLogs.mu.Lock()
	redisLogs.sinks = append(redisLogs.sinks, log)
	redisLogs.mu.Unlock()
	var once sync.Once
	return func() {
		once.Do(func() {
			redisLogs.mu.Lock()
			defer redisLogs.mu.Unlock()
			for i := len(redisLogs.sinks) - 1; i >= 0; i-- {
				if redisLogs.sinks[i] == log {
					redisLogs.sinks = append(redisLogs.sinks[:i], redisLogs.sinks[i+1:]...)
					break
				}
			}
		})
	}
}

// Fallback is a Store that uses Primary (Redis) and, when Primary fails,
// Local (this process's memory): the fail-open policy for login lockouts and
// API-call counters. During an outage each process counts on its own;
// lockouts set locally still apply after Redis returns, until they expire.
type Fallback struct {
	Primary, Local Store
}

// Incr implements Store.
func (f Fallback) Incr(ctx context.Context, key string, window time.Duration) (int64, error) {
	n, err := f.Primary.Incr(ctx, key, window)
	if err != nil {
		return f.Local.Incr(ctx, key, window)
	}
	return n, nil
}

// SetTTL implements Store.
func (f Fallback) SetTTL(ctx context.Context, key string, ttl time.Duration) error {
	if err := f.Primary.SetTTL(ctx, key, ttl); err != nil {
		return f.Local.SetTTL(ctx, key, ttl)
	}
	return nil
}

// TTL implements Store: the longer of both, so a lockout set during an
// outage is not forgotten when Redis returns.
func (f Fallback) TTL(ctx context.Context, key string) (time.Duration, error) {
	local, _ := f.Local.TTL(ctx, key)
	d, err := f.Primary.TTL(ctx, key)
	if err != nil {
		return local, nil
	}
	return max(d, local), nil
}

// Del implements Store (both).
func (f Fallback) Del(ctx context.Context, keys ...string) error {
	_ = f.Local.Del(ctx, keys...)
	return f.Primary.Del(ctx, keys...)
}

// Ping implements Store: the primary's.
func (f Fallback) Ping(ctx context.Context) error { return f.Primary.Ping(ctx) }
