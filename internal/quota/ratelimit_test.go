package quota

import (
	"context"
	"errors"
	"fmt"
	"math"
	"math/big"
	"math/rand/v2"
	"os"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/redis/go-redis/v9"
)

func redisClient(t testing.TB) *redis.Client {
	u := os.Getenv("TENANTGATE_TEST_REDIS_URL")
	if u == "" {
		return nil
	}
	opts, err := redis.ParseURL(u)
	if err != nil {
		t.Fatalf("TENANTGATE_TEST_REDIS_URL: %v", err)
	}
	c := redis.NewClient(opts)
	t.Cleanup(func() { c.Close() })
	if err := c.Ping(context.Background()).Err(); err != nil {
		t.Fatalf("Redis is unreachable: %v", err)
	}
	return c
}

func TestMemoryGCRA(t *testing.T) {
	now := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	m := NewMemoryLimiter()
	m.now = func() time.Time { return now }
	ctx := context.Background()
	for i := 0; i < 10; i++ {
		d, _ := m.Allow(ctx, "k", 10)
		if !d.Allowed || d.Remaining != 9-i {
			t.Fatalf("request %d: %+v, want allowed with %d remaining", i+1, d, 9-i)
		}
	}
	d, _ := m.Allow(ctx, "k", 10)
	if d.Allowed || d.RetryAfter != 6*time.Second {
		t.Fatalf("the 11th: %+v, want refused, retry after 6s", d)
	}
	if d, _ := m.Allow(ctx, "other", 10); !d.Allowed {
		t.Error("another key shares the bucket")
	}
	now = now.Add(6 * time.Second)
	if d, _ := m.Allow(ctx, "k", 10); !d.Allowed {
		t.Errorf("after 6s one more should fit: %+v", d)
	}
	if d, _ := m.Allow(ctx, "k", 10); d.Allowed {
		t.Error("and only one")
	}
}

// TestRedisSharedLimit: two "server processes" (separate clients) share a
// limit of N a minute in Redis; together they are admitted N, within one.
func TestRedisSharedLimit(t *testing.T) {
	c1 := redisClient(t)
	if c1 == nil {
		t.Skip("set TENANTGATE_TEST_REDIS_URL") // Redis-only; CI sets it
	}
	c2 := redisClient(t)
	key := "tenant:" + uuid.NewString() + ":rpm"
	const n = 40
	var admitted atomic.Int64
	var wg sync.WaitGroup
	for _, l := range []*RedisLimiter{NewRedisLimiter(c1), NewRedisLimiter(c2)} {
		for g := 0; g < 4; g++ {
			wg.Add(1)
			go func(l *RedisLimiter) {
				defer wg.Done()
				for i := 0; i < n; i++ {
					d, err := l.Allow(context.Background(), key, n)
					if err != nil {
						t.Error(err)
						return
					}
					if d.Allowed {
						admitted.Add(1)
					}
				}
			}(l)
		}
	}
	wg.Wait()
	if got := admitted.Load(); got < n || got > n+1 {
		t.Errorf("two processes admitted %d of %d attempts at a limit of %d a minute", got, 8*n, n)
	}
}

type failing struct{ err atomic.Pointer[error] }

func (f *failing) AllowN(ctx context.Context, key string, perMinute, _ int) (Decision, error) {
	return f.Allow(ctx, key, perMinute)
}

func (f *failing) Allow(ctx context.Context, key string, perMinute int) (Decision, error) {
	if e := f.err.Load(); e != nil {
		return Decision{}, *e
	}
	return Decision{Allowed: true, Limit: perMinute, Remaining: perMinute - 1}, nil
}

func TestGuardedOutage(t *testing.T) {
	down := errors.New("connection refused")
	for _, failOpen := range []bool{true, false} {
		inner := &failing{}
		g := NewGuarded(inner, failOpen, nil)
		inner.err.Store(&down)
		d, err := g.Allow(context.Background(), "k", 5)
		switch {
		case failOpen && (err != nil || !d.Allowed):
			t.Errorf("fail-open during an outage: %+v %v", d, err)
		case !failOpen && err == nil:
			t.Errorf("fail-closed during an outage admitted: %+v", d)
		}
		if g.Status() == "healthy" {
			t.Errorf("status during an outage: %q", g.Status())
		}
		inner.err.Store(nil) // the store answers again: no restart needed
		if d, err := g.Allow(context.Background(), "k", 5); err != nil || !d.Allowed || g.Status() != "healthy" {
			t.Errorf("after recovery: %+v %v %q", d, err, g.Status())
		}
	}
	// A real client to a port nobody listens on.
	c := redis.NewClient(&redis.Options{Addr: "127.0.0.1:1", DialTimeout: 100 * time.Millisecond, MaxRetries: -1})
	defer c.Close()
	g := NewGuarded(NewRedisLimiter(c), true, nil)
	if d, err := g.Allow(context.Background(), "k", 5); err != nil || !d.Allowed {
		t.Errorf("fail-open with Redis unreachable: %+v %v", d, err)
	}
}

func BenchmarkMemoryLimiter(b *testing.B) {
	m := NewMemoryLimiter()
	ctx := context.Background()
	for b.Loop() {
		_, _ = m.Allow(ctx, "tenant:bench:rpm", 1<<30)
	}
}

func BenchmarkRedisLimiter(b *testing.B) {
	c := redisClient(b)
	if c == nil {
		b.Skip("set TENANTGATE_TEST_REDIS_URL")
	}
	l := NewRedisLimiter(c)
	ctx := context.Background()
	for b.Loop() {
		if _, err := l.Allow(ctx, "tenant:bench:rpm", 1<<30); err != nil {
			b.Fatal(err)
		}
	}
}

// TestMemoryGCRAEveryRate holds the in-memory limiter to an exact model of
// GCRA (rational arithmetic) for rates across the whole int range, the
// values above 6e10 a minute (more than one a nanosecond, where the interval
// used to round to zero and the limiter divided by it) and "unlimited"
// included: the same decisions, remainders, retry and reset times, and never
// a panic.
func TestMemoryGCRAEveryRate(t *testing.T) {
	r := rand.New(rand.NewPCG(16, 9))
	rates := []int{1, 2, 3, 7, 59, 60, 61, 1000, 1_000_000, 59_999_999_999, 60_000_000_000, 60_000_000_001, 100_000_000_000,
		1_000_000_000_000_000, math.MaxInt64 / 2, math.MaxInt64 - 1, math.MaxInt64}
	for range 60 {
		rates = append(rates, int(r.Int64N(math.MaxInt64)>>r.IntN(63))+1) // spread over every magnitude
	}
	minute := big.NewRat(int64(time.Minute), 1)
	for _, per := range rates {
		start := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
		now := start
		m := NewMemoryLimiter()
		m.now = func() time.Time { return now }
		tat := new(big.Rat).SetInt64(now.UnixNano())
		interval := new(big.Rat).SetFrac(big.NewInt(int64(time.Minute)), big.NewInt(int64(per)))
		for step := range 200 {
			// Advance by nothing, a little, around one interval, or a lot.
			switch r.IntN(4) {
			case 1:
				now = now.Add(time.Duration(r.Int64N(1000)))
			case 2:
				iv, _ := new(big.Rat).Mul(interval, big.NewRat(int64(r.IntN(5)+1), 1)).Float64()
				now = now.Add(time.Duration(iv))
			case 3:
				now = now.Add(time.Duration(r.Int64N(int64(2 * time.Minute))))
			}
			var n int
			switch r.IntN(4) {
			case 0:
				n = 1
			case 1:
				n = per
			case 2:
				n = int(r.Int64N(int64(per))) + 1
			default:
				n = int(min(int64(per), int64(r.IntN(100)+1)))
			}
			got, err := m.AllowN(context.Background(), "k", per, n)
			if err != nil {
				t.Fatal(err)
			}
			// The model.
			nowR := new(big.Rat).SetInt64(now.UnixNano())
			t0 := tat
			if t0.Cmp(nowR) < 0 {
				t0 = nowR
			}
			newTat := new(big.Rat).Add(t0, new(big.Rat).Mul(big.NewRat(int64(n), 1), interval))
			ahead := new(big.Rat).Sub(newTat, nowR)
			want := Decision{Limit: per}
			if ahead.Cmp(minute) <= 0 {
				want.Allowed = true
				tat = newTat
				left := new(big.Rat).Quo(new(big.Rat).Sub(minute, ahead), interval)
				want.Remaining = int(new(big.Int).Quo(left.Num(), left.Denom()).Int64())
				want.ResetAfter = time.Duration(ceilRat(ahead))
			} else {
				want.RetryAfter = time.Duration(ceilRat(new(big.Rat).Sub(ahead, minute)))
				want.ResetAfter = time.Duration(ceilRat(new(big.Rat).Sub(t0, nowR)))
			}
			if got != want {
				t.Fatalf("rate %d, step %d, n %d at +%v: got %+v, want %+v", per, step, n, now.Sub(start), got, want)
			}
		}
	}
	// Unlimited and zero, and amounts outside the bucket, never panic.
	m := NewMemoryLimiter()
	at := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	m.now = func() time.Time { return at }
	for _, tc := range []struct {
		per, n int
		want   bool
	}{{-1, 1, true}, {-1, math.MaxInt64, true}, {math.MinInt64, 5, true}, {0, 1, false}, {0, 0, false},
		{5, 6, false}, {5, 0, true}, {5, -3, true}, {math.MaxInt64, math.MaxInt64, true}, {math.MaxInt64, 1, false}} {
		d, err := m.AllowN(context.Background(), fmt.Sprint("edge", tc.per), tc.per, tc.n)
		if err != nil || d.Allowed != tc.want {
			t.Errorf("AllowN(%d, %d) = %+v, %v; want allowed %v", tc.per, tc.n, d, err, tc.want)
		}
	}
}

func ceilRat(x *big.Rat) int64 {
	q, r := new(big.Int).QuoRem(x.Num(), x.Denom(), new(big.Int))
	if r.Sign() > 0 {
		q.Add(q, big.NewInt(1))
	}
	return q.Int64()
}

// TestRedisHugeRates: the Redis limiter takes the largest limits a plan may
// set without error and admits within them.
func TestRedisHugeRates(t *testing.T) {
	c := redisClient(t)
	if c == nil {
		t.Skip("set TENANTGATE_TEST_REDIS_URL") // Redis-only; CI sets it
	}
	l := NewRedisLimiter(c)
	for _, rate := range []int{60_000_000_001, 1_000_000_000_000_000} {
		key := "tenant:" + uuid.NewString() + ":tpm"
		for range 3 {
			d, err := l.AllowN(context.Background(), key, rate, 1_000_000)
			if err != nil || !d.Allowed {
				t.Fatalf("rate %d: %+v, %v", rate, d, err)
			}
		}
	}
}
