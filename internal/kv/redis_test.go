package kv

import (
	"bytes"
	"context"
	"errors"
	"io"
	"log/slog"
	"net"
	"os"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/google/uuid"
	"github.com/redis/go-redis/v9"
)

// fakeRedis is a TCP endpoint on 127.0.0.1 that plays a Redis in trouble:
// "hung" accepts and never answers; "dead" accepts and closes at once (a
// closed port behaves the same for the client); "up" forwards to the real
// Redis at upstream. It counts the connections it accepted.
type fakeRedis struct {
	ln       net.Listener
	mode     atomic.Value // "hung", "dead" or "up"
	upstream string
	accepted atomic.Int64
	mu       sync.Mutex
	conns    []net.Conn
}

func newFakeRedis(t *testing.T, mode, upstream string) *fakeRedis {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	f := &fakeRedis{ln: ln, upstream: upstream}
	f.mode.Store(mode)
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			f.accepted.Add(1)
			f.mu.Lock()
			f.conns = append(f.conns, c)
			f.mu.Unlock()
			switch f.mode.Load().(string) {
			case "dead":
				c.Close()
			case "hung":
				go func() { _, _ = io.Copy(io.Discard, c) }()
			case "up":
				go func() {
					u, err := net.Dial("tcp", f.upstream)
					if err != nil {
						c.Close()
						return
					}
					go func() { _, _ = io.Copy(u, c); u.Close() }()
					_, _ = io.Copy(c, u)
					c.Close()
				}()
			}
		}
	}()
	t.Cleanup(func() {
		ln.Close()
		f.mu.Lock()
		defer f.mu.Unlock()
		for _, c := range f.conns {
			c.Close()
		}
	})
	return f
}

func (f *fakeRedis) url() string { return "redis://:PASSWORD@" + f.ln.Addr().String() + "/0" }

// setMode switches the behaviour and drops the connections made so far.
func (f *fakeRedis) setMode(m string) {
	f.mode.Store(m)
	f.mu.Lock()
	defer f.mu.Unlock()
	for _, c := range f.conns {
		c.Close()
	}
	f.conns = nil
}

type clock struct {
	mu sync.Mutex
	t  time.Time
}

func (c *clock) now() time.Time      { c.mu.Lock(); defer c.mu.Unlock(); return c.t }
func (c *clock) add(d time.Duration) { c.mu.Lock(); c.t = c.t.Add(d); c.mu.Unlock() }

// TestRedisBreakerDeadAndHung: with Redis dead or hung, the breaker opens
// after BreakerThreshold failed commands, and from then on no command reaches
// Redis (counted by the breaker and by the connections Redis saw) until the
// cool-down lets one probe through; a failed probe opens it again.
func TestRedisBreakerDeadAndHung(t *testing.T) {
	for _, mode := range []string{"dead", "hung"} {
		t.Run(mode, func(t *testing.T) {
			f := newFakeRedis(t, mode, "")
			var logs bytes.Buffer
			log := slog.New(slog.NewTextHandler(&logs, nil))
			c, b, closeFn, err := NewRedisClient(RedisConfig{URL: f.url(), Timeout: 50 * time.Millisecond, Log: log})
			if err != nil {
				t.Fatal(err)
			}
			defer closeFn()
			clk := &clock{t: time.Unix(1e9, 0)}
			b.now = clk.now
			kv := Fallback{Primary: NewRedis(c, "t:"), Local: NewMemory()}
			ctx := context.Background()
			// Until the breaker opens, each failed command reaches Redis.
			for i := 0; i < BreakerThreshold && !b.Down(); i++ {
				if _, err := kv.Incr(ctx, "k", time.Minute); err != nil {
					t.Fatalf("call %d: %v, want the local fallback to count", i, err)
				}
			}
			if !b.Down() {
				t.Fatalf("%d failed commands did not open the breaker: %+v", BreakerThreshold, b.Stats())
			}
			opened, accepted := b.Stats(), f.accepted.Load()
			// Open: no command reaches Redis, however many there are.
			const calls = 50
			for i := 0; i < calls; i++ {
				if _, err := kv.Incr(ctx, "k", time.Minute); err != nil {
					t.Fatalf("call %d: %v, want the local fallback to count", i, err)
				}
			}
			got := b.Stats()
			want := BreakerStats{State: "open", Attempts: opened.Attempts, Rejected: opened.Rejected + calls}
			if diff := cmp.Diff(got, want); diff != "" {
				t.Errorf("%d calls while open (-got +want):\n%s", calls, diff)
			}
			if n := f.accepted.Load(); n != accepted {
				t.Errorf("Redis saw %d new connections while the breaker was open", n-accepted)
			}
			if n, _ := kv.Local.TTL(ctx, "k"); n <= 0 {
				t.Error("the local fallback did not keep the counter")
			}
			// Cool-down over: one probe, which fails and opens the breaker again.
			clk.add(breakerMinCooldown)
			for i := 0; i < 10; i++ {
				_ = kv.Ping(ctx)
			}
			got = b.Stats()
			want = BreakerStats{State: "open", Attempts: opened.Attempts + 1, Rejected: opened.Rejected + calls + 9}
			if diff := cmp.Diff(got, want); diff != "" {
				t.Errorf("after the cool-down (-got +want):\n%s", diff)
			}
			// The cool-down doubled: the old one is not enough any more.
			clk.add(breakerMinCooldown)
			_ = kv.Ping(ctx)
			if got := b.Stats().Attempts; got != opened.Attempts+1 {
				t.Errorf("a probe went out before the doubled cool-down: %d attempts", got)
			}
			if strings.Contains(logs.String(), "PASSWORD") {
				t.Errorf("the password reached the logs:\n%s", logs.String())
			}
			if !strings.Contains(logs.String(), "circuit breaker open") {
				t.Errorf("opening the breaker was not logged:\n%s", logs.String())
			}
		})
	}
}

// TestRedisBreakerRecovers: a real Redis behind a switch. Down, the breaker
// opens; back up, the first probe after the cool-down closes it, and
// commands reach Redis again.
func TestRedisBreakerRecovers(t *testing.T) {
	u := os.Getenv("TENANTGATE_TEST_REDIS_URL")
	if u == "" {
		t.Skip("set TENANTGATE_TEST_REDIS_URL") // CI sets it
	}
	opts, err := redis.ParseURL(u)
	if err != nil {
		t.Fatal(err)
	}
	f := newFakeRedis(t, "up", opts.Addr)
	c, b, closeFn, err := NewRedisClient(RedisConfig{URL: "redis://" + f.ln.Addr().String() + "/" + strings.TrimPrefix(strings.SplitN(u, "/", 4)[3], "/"),
		Timeout: 200 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	defer closeFn()
	clk := &clock{t: time.Unix(1e9, 0)}
	b.now = clk.now
	r := NewRedis(c, "tgtest:"+uuid.NewString()+":")
	ctx := context.Background()
	if _, err := r.Incr(ctx, "k", time.Minute); err != nil {
		t.Fatalf("Redis up: %v", err)
	}
	f.setMode("dead")
	for i := 0; i < BreakerThreshold+2; i++ {
		_, _ = r.Incr(ctx, "k", time.Minute)
	}
	if _, err := r.Incr(ctx, "k", time.Minute); !errors.Is(err, ErrBreakerOpen) || b.Stats().State != "open" {
		t.Fatalf("Redis dead: %v %+v", err, b.Stats())
	}
	f.setMode("up")
	if _, err := r.Incr(ctx, "k", time.Minute); !errors.Is(err, ErrBreakerOpen) {
		t.Errorf("before the cool-down: %v, want the breaker still open", err)
	}
	clk.add(breakerMinCooldown)
	if err := r.Ping(ctx); err != nil {
		t.Errorf("the probe after the cool-down: %v", err)
	}
	n, err := r.Incr(ctx, "k", time.Minute)
	if err != nil || n != 2 || b.Stats().State != "closed" {
		t.Errorf("the probe after the cool-down: %d %v %+v, want the count to go on in Redis and the breaker closed", n, err, b.Stats())
	}
}

// TestBreakerIgnoresAnswers: Redis's error replies and a caller giving up do
// not open the breaker.
func TestBreakerIgnoresAnswers(t *testing.T) {
	b := NewBreaker(nil)
	ctx := context.Background()
	canceled, cancel := context.WithCancel(ctx)
	cancel()
	for i := 0; i < 2*BreakerThreshold; i++ {
		b.done(ctx, false, redis.Nil)
		b.done(canceled, false, context.Canceled)
	}
	if b.Down() {
		t.Errorf("answers opened the breaker: %+v", b.Stats())
	}
	for i := 0; i < BreakerThreshold; i++ {
		b.done(ctx, false, &net.OpError{Op: "dial", Err: errors.New("connection refused")})
	}
	if !b.Down() {
		t.Errorf("%d network errors did not open the breaker", BreakerThreshold)
	}
}

// TestRedisLogsGoThroughSlog: go-redis's own log lines reach the logger of
// the open client, as structured warnings, and nowhere once it is closed.
func TestRedisLogsGoThroughSlog(t *testing.T) {
	var buf bytes.Buffer
	log := slog.New(slog.NewTextHandler(&buf, nil))
	_, _, closeFn, err := NewRedisClient(RedisConfig{URL: "redis://127.0.0.1:1/0", Log: log})
	if err != nil {
		t.Fatal(err)
	}
	// go-redis logs while it builds a client with a too small read buffer.
	c := redis.NewClient(&redis.Options{Addr: "127.0.0.1:1", ReadBufferSize: 1})
	c.Close()
	if got := buf.String(); !strings.Contains(got, "level=WARN") || !strings.Contains(got, "component=redis") || !strings.Contains(got, "ReadBufferSize") {
		t.Errorf("go-redis's line did not reach the server's logger: %q", got)
	}
	closeFn()
	buf.Reset()
	c = redis.NewClient(&redis.Options{Addr: "127.0.0.1:1", ReadBufferSize: 1})
	c.Close()
	if buf.Len() != 0 {
		t.Errorf("a closed client's logger still receives go-redis's lines: %q", buf.String())
	}
}
