package web

import (
	"bytes"
	"encoding/json"
	"io"
	"net/http"
	"testing"

	"github.com/tenantgate/tenantgate/internal/store"
)

// BenchmarkGatewayChat is one non-streaming call through the whole pipeline
// (key auth, limits, routing, relay to a local upstream, the durable usage
// write) on SQLite, in process, with 32 calls in flight: ns/op is the
// server's (and this client's) cost per call at saturation.
func BenchmarkGatewayChat(b *testing.B) { benchmarkGatewayChat(b, 16) }

// BenchmarkGatewayChatAlone is one call at a time: each commits alone.
func BenchmarkGatewayChatAlone(b *testing.B) { benchmarkGatewayChat(b, 0) }

// BenchmarkGatewayStream is one streaming call of 100 chunks, 32 in flight:
// ns/op divided by 100 is the cost of relaying a chunk.
func BenchmarkGatewayStream(b *testing.B) { benchmarkGatewayCall(b, 16, 100) }

func benchmarkGatewayChat(b *testing.B, parallelism int) { benchmarkGatewayCall(b, parallelism, 0) }

func benchmarkGatewayCall(b *testing.B, parallelism, chunks int) {
	up := newFakeOpenAI(b, "sk-upstream")
	up.parts.Store(int32(chunks))
	g := newGW(b, store.SQLite, up)
	g.a.want(g.a.do("PUT", "/api/v1/admin/tenants/"+g.org.ID+"/entitlements", g.op, map[string]any{"limits": map[string]int64{
		"requestsPerMinute": -1, "tokensPerMinute": -1, "apiCallsPerHour": -1, "monthlyTokens": -1, "monthlyMessages": -1}}, nil), 200, "")
	g.a.want(g.a.do("POST", "/api/v1/admin/tenants/"+g.org.ID+"/topups", g.op, map[string]any{"amount": "100000", "idempotencyKey": "bench"}, nil), 201, "")
	extra := map[string]any{"max_tokens": 256}
	if chunks > 0 {
		extra["stream"] = true
	}
	body, _ := json.Marshal(chat("gpt-test", extra))
	client := &http.Client{Transport: &http.Transport{MaxIdleConnsPerHost: 64}}
	b.ReportAllocs()
	call := func() {
		req, _ := http.NewRequest("POST", g.a.url+"/v1/chat/completions", bytes.NewReader(body))
		req.Header.Set("Authorization", "Bearer "+g.key)
		resp, err := client.Do(req)
		if err != nil {
			b.Fatal(err)
		}
		_, _ = io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		if resp.StatusCode != 200 {
			b.Fatalf("status %d", resp.StatusCode)
		}
	}
	b.ResetTimer()
	if parallelism == 0 {
		for b.Loop() {
			call()
		}
		return
	}
	b.SetParallelism(parallelism) // 32 calls in flight on 2 cores: finished calls share their commits as they would under load
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			call()
		}
	})
}
