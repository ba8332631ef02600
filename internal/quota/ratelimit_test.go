package quota

import (
	"context"
	"errors"
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
