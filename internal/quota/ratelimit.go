package quota

import (
	"context"
	"github.com/tenantgate/tenantgate/internal/errs"
	"log/slog"
	"sync"
	"sync/atomic"
	"time"

	"github.com/go-redis/redis_rate/v10"
	"github.com/redis/go-redis/v9"
)

// Decision is a rate limiter's answer.
type Decision struct {
	Allowed    bool
	Limit      int
	Remaining  int
	RetryAfter time.Duration // when refused: how long until one more fits
	ResetAfter time.Duration // how long until the full burst is available again
}

// RateLimiter decides requests with GCRA: perMinute requests a minute,
// with a burst of the same size.
type RateLimiter interface {
	Allow(ctx context.Context, key string, perMinute int) (Decision, error)
	// AllowN admits n units at once (tokens, for the AI gateway's token rates).
	AllowN(ctx context.Context, key string, perMinute, n int) (Decision, error)
}

// MemoryLimiter is GCRA in process memory: for a single server process.
type MemoryLimiter struct {
	mu  sync.Mutex
	tat map[string]time.Time // theoretical arrival time per key
	now func() time.Time
	ops int
}

// NewMemoryLimiter returns an empty in-memory limiter.
func NewMemoryLimiter() *MemoryLimiter { return NewMemoryLimiterClock(time.Now) }

// NewMemoryLimiterClock is NewMemoryLimiter reading time from now (tests
// stop the clock so that a bucket does not refill while a slow machine runs
// them).
func NewMemoryLimiterClock(now func() time.Time) *MemoryLimiter {
	return &MemoryLimiter{tat: map[string]time.Time{}, now: now}
}

// Allow implements RateLimiter.
func (m *MemoryLimiter) Allow(ctx context.Context, key string, perMinute int) (Decision, error) {
	return m.AllowN(ctx, key, perMinute, 1)
}

// AllowN implements RateLimiter.
func (m *MemoryLimiter) AllowN(_ context.Context, key string, perMinute, n int) (Decision, error) {
	if perMinute <= 0 {
		return Decision{Allowed: false, Limit: 0}, nil
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	now := m.now()
	interval := time.Minute / time.Duration(perMinute)
	burst := time.Duration(perMinute) * interval
	tat := m.tat[key]
	if tat.Before(now) {
		tat = now
	}
	newTat := tat.Add(time.Duration(n) * interval)
	allowAt := newTat.Add(-burst)
	if now.Before(allowAt) {
		return Decision{Allowed: false, Limit: perMinute, Remaining: 0, RetryAfter: allowAt.Sub(now), ResetAfter: tat.Sub(now)}, nil
	}
	m.tat[key] = newTat
	m.ops++
	if m.ops%4096 == 0 { // forget keys whose bucket is full again
		for k, t := range m.tat {
			if t.Before(now) {
				delete(m.tat, k)
			}
		}
	}
	remaining := int(now.Sub(newTat.Add(-burst)) / interval)
	return Decision{Allowed: true, Limit: perMinute, Remaining: remaining, ResetAfter: newTat.Sub(now)}, nil
}

// RedisLimiter is GCRA in Redis (one Lua script, Redis's clock), shared by
// every server process. Keys are "rate:" + the limiter key.
type RedisLimiter struct{ l *redis_rate.Limiter }

// NewRedisLimiter wraps a Redis client.
func NewRedisLimiter(c redis.UniversalClient) *RedisLimiter {
	return &RedisLimiter{l: redis_rate.NewLimiter(c)}
}

// Allow implements RateLimiter.
func (r *RedisLimiter) Allow(ctx context.Context, key string, perMinute int) (Decision, error) {
	return r.AllowN(ctx, key, perMinute, 1)
}

// AllowN implements RateLimiter.
func (r *RedisLimiter) AllowN(ctx context.Context, key string, perMinute, n int) (Decision, error) {
	res, err := r.l.AllowN(ctx, key, redis_rate.PerMinute(perMinute), n)
	if err != nil {
		return Decision{}, err
	}
	d := Decision{Allowed: res.Allowed > 0, Limit: perMinute, Remaining: res.Remaining, ResetAfter: res.ResetAfter}
	if res.RetryAfter > 0 {
		d.RetryAfter = res.RetryAfter
	}
	return d, nil
}

// Guarded applies the failure policy when the limiter's store is down:
// fail open (admit) or fail closed (refuse), log each change of state once,
// report it for /api/health, and recover by itself when the store answers.
type Guarded struct {
	inner    RateLimiter
	failOpen bool
	log      *slog.Logger
	down     atomic.Bool
	store    Availability
}

// Availability tells whether the limiter's store is down: the Redis client's
// circuit breaker (kv.Breaker), which knows before the first limited request.
type Availability interface{ Down() bool }

// WatchStore makes Status follow the store's availability rather than the
// outcome of the last limited request, so /api/health tells a Redis that is
// down at start-up at once.
func (g *Guarded) WatchStore(a Availability) *Guarded {
	g.store = a
	return g
}

// NewGuarded wraps a limiter with a failure policy.
func NewGuarded(inner RateLimiter, failOpen bool, log *slog.Logger) *Guarded {
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	return &Guarded{inner: inner, failOpen: failOpen, log: log}
}

// ErrLimiterDown marks a refusal because the limiter is unavailable and fails closed.
type ErrLimiterDown struct{ Err error }

func (e ErrLimiterDown) Error() string { return "rate limiter unavailable: " + e.Err.Error() }

// Allow implements RateLimiter with the failure policy.
func (g *Guarded) Allow(ctx context.Context, key string, perMinute int) (Decision, error) {
	return g.AllowN(ctx, key, perMinute, 1)
}

// AllowTokens is AllowN for the AI gateway's token rates.
func (g *Guarded) AllowTokens(ctx context.Context, key string, perMinute, n int) (bool, time.Duration, error) {
	d, err := g.AllowN(ctx, key, perMinute, n)
	if err != nil {
		return false, 0, errs.E(errs.KindUnavailable, errs.CodeServiceUnavailable, "rate limits cannot be checked right now; try again shortly")
	}
	return d.Allowed, d.RetryAfter, nil
}

// AllowN implements RateLimiter with the failure policy.
// Commands are bounded by the store's client (kv.NewRedisClient: a short
// timeout and a circuit breaker), so a dead or hung Redis costs no more than
// that timeout, and nothing while the breaker is open.
func (g *Guarded) AllowN(ctx context.Context, key string, perMinute, n int) (Decision, error) {
	d, err := g.inner.AllowN(ctx, key, perMinute, n)
	if err != nil {
		if !g.down.Swap(true) {
			g.log.Error("the rate limiter's store is unreachable", "failOpen", g.failOpen, "err", err)
		}
		if g.failOpen {
			return Decision{Allowed: true, Limit: perMinute, Remaining: -1}, nil
		}
		return Decision{}, ErrLimiterDown{err}
	}
	if g.down.Swap(false) {
		g.log.Info("the rate limiter's store answers again")
	}
	return d, nil
}

// Status reports the limiter for /api/health.
func (g *Guarded) Status() string {
	down := g.down.Load()
	if g.store != nil {
		down = g.store.Down()
	}
	switch {
	case !down:
		return "healthy"
	case g.failOpen:
		return "unavailable (failing open: requests are not limited)"
	}
	return "unavailable (failing closed: limited requests are refused)"
}
