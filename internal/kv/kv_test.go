package kv

import (
	"context"
	"os"
	"sync"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/redis/go-redis/v9"
)

// stores returns the stores to test: memory always, Redis when
// TENANTGATE_TEST_REDIS_URL is set (and then it must answer).
func stores(t *testing.T) map[string]Store {
	out := map[string]Store{"memory": NewMemory()}
	if u := os.Getenv("TENANTGATE_TEST_REDIS_URL"); u != "" {
		opts, err := redis.ParseURL(u)
		if err != nil {
			t.Fatalf("TENANTGATE_TEST_REDIS_URL: %v", err)
		}
		c := redis.NewClient(opts)
		t.Cleanup(func() { c.Close() })
		r := NewRedis(c, "tgtest:"+uuid.NewString()+":")
		if err := r.Ping(context.Background()); err != nil {
			t.Fatalf("Redis at %s is unreachable: %v", u, err)
		}
		out["redis"] = r
	}
	return out
}

func TestStore(t *testing.T) {
	for name, s := range stores(t) {
		t.Run(name, func(t *testing.T) {
			ctx := context.Background()
			for want := int64(1); want <= 3; want++ {
				n, err := s.Incr(ctx, "c", time.Second)
				if err != nil || n != want {
					t.Fatalf("Incr = %d, %v; want %d", n, err, want)
				}
			}
			if d, _ := s.TTL(ctx, "c"); d <= 0 || d > time.Second {
				t.Errorf("TTL of a counter = %v, want (0, 1s]", d)
			}
			// Wait for the window to end (a condition, not a duration: a busy
			// machine may take longer to notice it).
			for deadline := time.Now().Add(10 * time.Second); ; time.Sleep(50 * time.Millisecond) {
				if d, _ := s.TTL(ctx, "c"); d == 0 {
					break
				}
				if time.Now().After(deadline) {
					t.Fatal("the counter never expired")
				}
			}
			if n, _ := s.Incr(ctx, "c", time.Second); n != 1 {
				t.Errorf("after the window, Incr = %d, want 1", n)
			}
			if err := s.SetTTL(ctx, "lock", time.Minute); err != nil {
				t.Fatal(err)
			}
			if d, _ := s.TTL(ctx, "lock"); d < 59*time.Second {
				t.Errorf("TTL = %v, want about a minute", d)
			}
			if err := s.Del(ctx, "lock", "c"); err != nil {
				t.Fatal(err)
			}
			if d, _ := s.TTL(ctx, "lock"); d != 0 {
				t.Errorf("TTL after Del = %v", d)
			}
			if d, _ := s.TTL(ctx, "never-set"); d != 0 {
				t.Errorf("TTL of a missing key = %v", d)
			}
		})
	}
}

func TestIncrIsAtomic(t *testing.T) {
	for name, s := range stores(t) {
		t.Run(name, func(t *testing.T) {
			var wg sync.WaitGroup
			for i := 0; i < 50; i++ {
				wg.Add(1)
				go func() {
					defer wg.Done()
					if _, err := s.Incr(context.Background(), "race", time.Minute); err != nil {
						t.Error(err)
					}
				}()
			}
			wg.Wait()
			if n, _ := s.Incr(context.Background(), "race", time.Minute); n != 51 {
				t.Errorf("after 50 concurrent increments, the next is %d, want 51", n)
			}
		})
	}
}
