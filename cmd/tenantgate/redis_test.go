package main

import (
	"fmt"
	"io"
	"net"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/tenantgate/tenantgate/internal/kv"
	"github.com/tenantgate/tenantgate/internal/store"
)

// badRedis listens on 127.0.0.1 and either never answers ("hung") or closes
// every connection at once ("dead"); it counts the connections it saw.
func badRedis(t *testing.T, mode string) (url string, accepted *atomic.Int64) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	accepted = &atomic.Int64{}
	var conns []net.Conn
	done := make(chan struct{})
	go func() {
		defer close(done)
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			accepted.Add(1)
			if mode == "dead" {
				c.Close()
				continue
			}
			conns = append(conns, c)
			go func() { _, _ = io.Copy(io.Discard, c) }()
		}
	}()
	t.Cleanup(func() {
		ln.Close()
		<-done
		for _, c := range conns {
			c.Close()
		}
	})
	return "redis://:PASSWORD@" + ln.Addr().String() + "/0", accepted
}

// TestRedisDown: with Redis dead or hung from the start, /api/health says
// degraded (200) at once, requests are served while the circuit breaker
// keeps them away from Redis (Redis sees at most the breaker's threshold plus
// one probe per cool-down, however many requests there are), logins follow
// the policy (fail-open: served, with lockouts kept per process; fail-closed:
// refused), go-redis's own lines do not escape the structured log, and the
// password of the Redis URL is never logged.
func TestRedisDown(t *testing.T) {
	for _, mode := range []string{"dead", "hung"} {
		for _, failOpen := range []bool{true, false} {
			t.Run(fmt.Sprintf("%s/failOpen=%v", mode, failOpen), func(t *testing.T) {
				redisURL, accepted := badRedis(t, mode)
				began := time.Now()
				url, logs := start(t, envFor(t, store.SQLite, map[string]string{"TENANTGATE_REDIS_URL": redisURL,
					"TENANTGATE_RATE_LIMIT_FAIL_OPEN": fmt.Sprint(failOpen), "TENANTGATE_AUTH_RATE_PER_MINUTE": "0"}))

				st, health := call(t, "GET", url+"/api/health", "", nil)
				deps, _ := health["dependencies"].(map[string]any)
				type view struct {
					Status       int
					Health       string
					Redis        string
					LimiterFails bool
				}
				got := view{st, fmt.Sprint(health["status"]), fmt.Sprint(deps["redis"]), deps["rateLimiter"] != "healthy"}
				if diff := cmp.Diff(got, view{200, "degraded", "unavailable", true}); diff != "" {
					t.Errorf("health before any request (-got +want):\n%s\n%v", diff, health)
				}

				st, out := call(t, "POST", url+"/api/v1/tenants/signup", "", map[string]any{"slug": "acme", "name": "Acme",
					"ownerEmail": "ann@acme.test", "ownerPassword": "correct-horse-1"})
				if st != 201 {
					t.Fatalf("signup: %d %v", st, out)
				}
				login := map[string]any{"email": "ann@acme.test", "password": "correct-horse-1", "tenant": "acme"}
				st, tok := call(t, "POST", url+"/api/v1/auth/login", "", login)
				if !failOpen {
					if st != 503 {
						t.Errorf("fail-closed login with Redis down: %d %v, want 503", st, tok)
					}
					return
				}
				if st != 200 {
					t.Fatalf("fail-open login with Redis down: %d %v", st, tok)
				}
				access := tok["accessToken"].(string)
				const requests = 60 // each takes the rate limiter and the API-call counter
				for i := 0; i < requests; i++ {
					if st, out := call(t, "GET", url+"/api/v1/tenants/current", access, nil); st != 200 {
						t.Fatalf("request %d: %d %v", i, st, out)
					}
				}
				// Probes are at least the minimum cool-down apart, so this bound
				// holds on any machine, however slow.
				bound := int64(kv.BreakerThreshold) + 1 + int64(time.Since(began)/(500*time.Millisecond))
				if n := accepted.Load(); n > bound {
					t.Errorf("Redis saw %d connections during start-up and %d requests; the breaker allows at most %d", n, requests, bound)
				}
				// Lockouts still apply, counted in this process.
				wrong := map[string]any{"email": "ann@acme.test", "password": "wrong-password-1", "tenant": "acme"}
				var last int
				for i := 0; i < 6; i++ {
					last, _ = call(t, "POST", url+"/api/v1/auth/login", "", wrong)
				}
				if last != 429 {
					t.Errorf("after 6 wrong passwords with Redis down: %d, want 429 (the local lockout)", last)
				}
				text := logs.String()
				if strings.Contains(text, "PASSWORD") {
					t.Errorf("the Redis password reached the logs:\n%s", text)
				}
				for _, line := range strings.Split(strings.TrimSpace(text), "\n") {
					if !strings.HasPrefix(line, "time=") {
						t.Errorf("a log line outside the structured log: %q", line)
					}
				}
			})
		}
	}
}
