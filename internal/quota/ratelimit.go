package quota

import (
	"context"
	"github.com/tenantgate/tenantgate/internal/errs"
	"log/slog"
	"math/bits"
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
//
// It is exact for every rate an int can hold: the theoretical arrival time
// is kept in whole nanoseconds plus a remainder in 1/perMinute of a
// nanosecond, and the products are taken in 128 bits, so a rate of more than
// one unit a nanosecond (over 6e10 a minute) neither divides by zero nor
// rounds to another rate. A negative rate is unlimited (every request is
// admitted and nothing is recorded); a rate of 0 admits nothing.
type MemoryLimiter struct {
	mu  sync.Mutex
	tat map[string]gcraState
	now func() time.Time
	ops int
}

// gcraState is one key's theoretical arrival time: ns + rem/per nanoseconds.
type gcraState struct {
	ns  int64
	rem uint64 // < per
	per uint64 // the rate rem is counted in
}

// NewMemoryLimiter returns an empty in-memory limiter.
func NewMemoryLimiter() *MemoryLimiter { return NewMemoryLimiterClock(time.Now) }

// NewMemoryLimiterClock is NewMemoryLimiter reading time from now (tests
// stop the clock so that a bucket does not refill while a slow machine runs
// them).
func NewMemoryLimiterClock(now func() time.Time) *MemoryLimiter {
	return &MemoryLimiter{tat: map[string]gcraState{}, now: now}
}

// Allow implements RateLimiter.
func (m *MemoryLimiter) Allow(ctx context.Context, key string, perMinute int) (Decision, error) {
	return m.AllowN(ctx, key, perMinute, 1)
}

const minuteNs = uint64(time.Minute)

// AllowN implements RateLimiter: n units fit when the bucket (a burst of
// perMinute, refilled at perMinute a minute) holds n. n of 0 or less takes
// nothing and reports the bucket; n above perMinute never fits.
func (m *MemoryLimiter) AllowN(_ context.Context, key string, perMinute, n int) (Decision, error) {
	if perMinute < 0 {
		return Decision{Allowed: true, Limit: perMinute, Remaining: -1}, nil
	}
	if perMinute == 0 {
		return Decision{Allowed: false, Limit: 0, RetryAfter: time.Minute}, nil
	}
	n = max(n, 0)
	per := uint64(perMinute)
	m.mu.Lock()
	defer m.mu.Unlock()
	now := m.now().UnixNano()
	st, ok := m.tat[key]
	if ok && st.per != per && st.rem > 0 { // the rate changed: round the old fraction up
		st.ns, st.rem = st.ns+1, 0
	}
	if !ok || st.ns < now {
		st.ns, st.rem = now, 0
	}
	st.per = per
	resetAfter := time.Duration(st.ns - now)
	if st.rem > 0 {
		resetAfter++
	}
	if uint64(n) > per {
		return Decision{Allowed: false, Limit: perMinute, Remaining: remaining(st, now), RetryAfter: time.Minute, ResetAfter: resetAfter}, nil
	}
	// n units take n*T, T = one minute / per: q whole nanoseconds and r/per.
	// n <= per keeps the quotient at most a minute.
	hi, lo := bits.Mul64(uint64(n), minuteNs)
	q, r := bits.Div64(hi, lo, per)
	next := gcraState{ns: st.ns + int64(q), rem: st.rem + r, per: per}
	if next.rem >= per {
		next.ns, next.rem = next.ns+1, next.rem-per
	}
	// Allowed when the new arrival time is at most a minute (the burst) ahead.
	ahead := uint64(next.ns - now)
	if ahead > minuteNs || (ahead == minuteNs && next.rem > 0) {
		retry := time.Duration(ahead - minuteNs)
		if next.rem > 0 {
			retry++
		}
		return Decision{Allowed: false, Limit: perMinute, Remaining: 0, RetryAfter: retry, ResetAfter: resetAfter}, nil
	}
	m.tat[key] = next
	m.ops++
	if m.ops%4096 == 0 { // forget keys whose bucket is full again
		for k, s := range m.tat {
			if s.ns < now {
				delete(m.tat, k)
			}
		}
	}
	reset := time.Duration(ahead)
	if next.rem > 0 {
		reset++
	}
	return Decision{Allowed: true, Limit: perMinute, Remaining: remaining(next, now), ResetAfter: reset}, nil
}

// remaining is how many whole units fit now: (now + minute - tat) / T.
func remaining(st gcraState, now int64) int {
	ahead := uint64(st.ns - now) // st.ns >= now
	if ahead > minuteNs || (ahead == minuteNs && st.rem > 0) {
		return 0
	}
	// ((minute - ahead) * per - rem) / minute, in 128 bits; the quotient is at most per.
	hi, lo := bits.Mul64(minuteNs-ahead, st.per)
	var b uint64
	lo, b = bits.Sub64(lo, st.rem, 0)
	hi -= b
	q, _ := bits.Div64(hi, lo, minuteNs)
	return int(q)
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
