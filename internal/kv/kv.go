// Package kv holds short-lived shared state (counters with expiry, locks
// with a time to live): in memory for a single process, or in Redis when
// several server processes must share it.
package kv

import (
	"context"
	"sync"
	"time"

	"github.com/redis/go-redis/v9"
)

// Store is the state tenantgate keeps outside the database.
type Store interface {
	// Incr adds one to key and returns the new count; a new key expires after window.
	Incr(ctx context.Context, key string, window time.Duration) (int64, error)
	// SetTTL sets key (to any value) to expire after ttl.
	SetTTL(ctx context.Context, key string, ttl time.Duration) error
	// TTL returns how long key has left; 0 when it does not exist.
	TTL(ctx context.Context, key string) (time.Duration, error)
	// Del removes keys.
	Del(ctx context.Context, keys ...string) error
	// Ping checks the store answers.
	Ping(ctx context.Context) error
}

// Memory is an in-process Store.
type Memory struct {
	mu      sync.Mutex
	entries map[string]*entry
	now     func() time.Time
	ops     int
}

type entry struct {
	n   int64
	exp time.Time
}

// NewMemory returns an empty in-memory store.
func NewMemory() *Memory { return &Memory{entries: map[string]*entry{}, now: time.Now} }

func (m *Memory) live(key string, now time.Time) *entry {
	e, ok := m.entries[key]
	if !ok || !now.Before(e.exp) {
		delete(m.entries, key)
		return nil
	}
	return e
}

func (m *Memory) sweep(now time.Time) {
	m.ops++
	if m.ops%1024 != 0 {
		return
	}
	for k, e := range m.entries {
		if !now.Before(e.exp) {
			delete(m.entries, k)
		}
	}
}

// Incr implements Store.
func (m *Memory) Incr(_ context.Context, key string, window time.Duration) (int64, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	now := m.now()
	m.sweep(now)
	e := m.live(key, now)
	if e == nil {
		e = &entry{exp: now.Add(window)}
		m.entries[key] = e
	}
	e.n++
	return e.n, nil
}

// SetTTL implements Store.
func (m *Memory) SetTTL(_ context.Context, key string, ttl time.Duration) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.entries[key] = &entry{n: 1, exp: m.now().Add(ttl)}
	return nil
}

// TTL implements Store.
func (m *Memory) TTL(_ context.Context, key string) (time.Duration, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	now := m.now()
	if e := m.live(key, now); e != nil {
		return e.exp.Sub(now), nil
	}
	return 0, nil
}

// Del implements Store.
func (m *Memory) Del(_ context.Context, keys ...string) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	for _, k := range keys {
		delete(m.entries, k)
	}
	return nil
}

// Ping implements Store.
func (m *Memory) Ping(context.Context) error { return nil }

// Redis is a Store in Redis; keys are prefixed so one Redis can serve
// several deployments.
type Redis struct {
	c      redis.UniversalClient
	prefix string
}

// NewRedis wraps a client; prefix is put before every key ("tenantgate:").
func NewRedis(c redis.UniversalClient, prefix string) *Redis { return &Redis{c: c, prefix: prefix} }

// incrScript increments and sets the expiry in one step, so a counter can
// never be left without one.
var incrScript = redis.NewScript(`
local n = redis.call('INCR', KEYS[1])
if n == 1 then redis.call('PEXPIRE', KEYS[1], ARGV[1]) end
return n`)

// Incr implements Store.
func (r *Redis) Incr(ctx context.Context, key string, window time.Duration) (int64, error) {
	return incrScript.Run(ctx, r.c, []string{r.prefix + key}, window.Milliseconds()).Int64()
}

// SetTTL implements Store.
func (r *Redis) SetTTL(ctx context.Context, key string, ttl time.Duration) error {
	return r.c.Set(ctx, r.prefix+key, 1, ttl).Err()
}

// TTL implements Store.
func (r *Redis) TTL(ctx context.Context, key string) (time.Duration, error) {
	d, err := r.c.PTTL(ctx, r.prefix+key).Result()
	if err != nil || d < 0 {
		return 0, err
	}
	return d, nil
}

// Del implements Store.
func (r *Redis) Del(ctx context.Context, keys ...string) error {
	full := make([]string, len(keys))
	for i, k := range keys {
		full[i] = r.prefix + k
	}
	return r.c.Del(ctx, full...).Err()
}

// Ping implements Store.
func (r *Redis) Ping(ctx context.Context) error { return r.c.Ping(ctx).Err() }
