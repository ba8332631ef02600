package rbac

import (
	"context"
	"fmt"
	"math/rand/v2"
	"slices"
	"testing"
	"time"
)

// BenchmarkCheckWarm measures in-process permission checks with 1,000
// tenants, each user holding 50 roles of 200 grants (drawn from a catalogue
// of 400 permissions), with the decision inputs warm in the cache. It
// reports the p50 and p99 of single checks besides the mean.
func BenchmarkCheckWarm(b *testing.B) {
	const tenants, roles, perms, catalogue = 1000, 50, 200, 400
	e := &Engine{now: func() time.Time { return time.Now().UTC() }, ttl: time.Hour,
		version: map[string]uint64{}, cache: map[string]*effectiveEntry{}}
	rng := rand.New(rand.NewPCG(1, 2))
	permName := func(i int) string { return fmt.Sprintf("res%d:act%d", i/8, i%8) }
	for t := 0; t < tenants; t++ {
		entry := &effectiveEntry{exp: time.Now().Add(time.Hour), ok: true}
		for r := 0; r < roles; r++ {
			role := fmt.Sprintf("role%d", r)
			for _, i := range rng.Perm(catalogue)[:perms] {
				entry.add(effectiveGrant{role: role, grant: Grant{Permission: permName(i)}})
			}
		}
		e.cache[fmt.Sprintf("t%d:u%d", t, t)] = entry
	}
	ctx := context.Background()
	checks := make([]Check, 4096)
	for i := range checks {
		t := rng.IntN(tenants)
		p := rng.IntN(catalogue + 50) // some permissions nobody holds
		checks[i] = Check{TenantID: fmt.Sprintf("t%d", t), UserID: fmt.Sprintf("u%d", t), Resource: fmt.Sprintf("res%d", p/8), Action: fmt.Sprintf("act%d", p%8)}
	}
	samples := make([]time.Duration, 0, 1<<16)
	b.ReportAllocs()
	b.ResetTimer()
	i := 0
	for b.Loop() {
		c := checks[i%len(checks)]
		i++
		start := time.Now()
		if _, err := e.Evaluate(ctx, c, "127.0.0.1"); err != nil {
			b.Fatal(err)
		}
		if len(samples) < cap(samples) {
			samples = append(samples, time.Since(start))
		}
	}
	b.StopTimer()
	slices.Sort(samples)
	if n := len(samples); n > 0 {
		b.ReportMetric(float64(samples[n/2].Nanoseconds()), "p50-ns")
		b.ReportMetric(float64(samples[n*99/100].Nanoseconds()), "p99-ns")
	}
}
