package loadtest

import (
	"context"
	"fmt"
	"math"
	"os"
	"runtime"
	"sort"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/tenantgate/tenantgate/internal/store"
	"github.com/tenantgate/tenantgate/internal/store/storetest"
)

// The bounded load run: an open-loop pacer offers loadRate requests a
// second for loadFor per phase, whatever the answers' latency (a slow
// answer does not slow the offered rate; workers bounds the calls in
// flight). Latency is measured from each call's scheduled send time to the
// end of its answer (the whole body; [DONE] for a stream), so a generator
// or server that falls behind shows up in the figures instead of hiding.
//
// TENANTGATE_LOADTEST_RATE and TENANTGATE_LOADTEST_SECONDS change the
// offered rate and the phase length for exploring (the server never sees
// them: the harness passes it only its own TENANTGATE_* variables).
const (
	loadRate    = 2000
	loadFor     = 10 * time.Second
	loadWorkers = 256
	// A phase stops offering calls loadGrace after its end even if calls are
	// still due (a stalled server must not stretch the run), and a call
	// gives up after callTimeout; a phase therefore lasts at most
	// dur + loadGrace + callTimeout.
	loadGrace   = 2 * time.Second
	callTimeout = 5 * time.Second
	warmRate    = 1000
	warmFor     = 500 * time.Millisecond
)

func loadSettings(b *testing.B) (rate int, dur time.Duration, workers int) {
	rate, dur, workers = loadRate, loadFor, loadWorkers
	if v := os.Getenv("TENANTGATE_LOADTEST_WORKERS"); v != "" {
		n, err := strconv.Atoi(v)
		if err != nil || n < 1 || n > loadWorkers {
			b.Fatalf("TENANTGATE_LOADTEST_WORKERS=%q: want 1-%d calls in flight", v, loadWorkers)
		}
		workers = n
	}
	if v := os.Getenv("TENANTGATE_LOADTEST_RATE"); v != "" {
		n, err := strconv.Atoi(v)
		if err != nil || n < 1 || n > 20000 {
			b.Fatalf("TENANTGATE_LOADTEST_RATE=%q: want 1-20000 requests a second", v)
		}
		rate = n
	}
	if v := os.Getenv("TENANTGATE_LOADTEST_SECONDS"); v != "" {
		n, err := strconv.ParseFloat(v, 64)
		if err != nil || n <= 0 || n > 60 {
			b.Fatalf("TENANTGATE_LOADTEST_SECONDS=%q: want more than 0 and at most 60", v)
		}
		dur = time.Duration(n * float64(time.Second))
	}
	return rate, dur, workers
}

// BenchmarkGatewayLoad measures the gateway's added latency, throughput and
// memory against a mock upstream that answers at once, then checks the
// books. It runs once whatever b.N is (use -benchtime 1x) and takes about
// 45 s per database (at most about 2 minutes when the server stalls: every
// phase and every call is bounded, and benchmarks get no -timeout).
//
//	GOTOOLCHAIN=local go test ./internal/gateway/loadtest/ -run '^$' -bench BenchmarkGatewayLoad -benchtime 1x -v
func BenchmarkGatewayLoad(b *testing.B) {
	for _, d := range storetest.Dialects() {
		b.Run(string(d), func(b *testing.B) { gatewayLoad(b, d) })
	}
}

type loadPhase struct {
	name     string
	url, key string
	stream   bool
	idPrefix string // X-Request-ID prefix (gateway calls only)
	rate     int
	dur      time.Duration
}

type phaseResult struct {
	loadPhase
	offered, sent, ok int // sent < offered when the phase stopped with calls still due
	okIDs             []string
	failed            map[string]outcome // X-Request-ID → what the client saw, for calls that did not complete
	lat, svc, lag     []time.Duration    // completed calls: from the scheduled send, from the actual send; every call: how late it was sent
	errs              map[string]int
	elapsed           time.Duration // from the first scheduled send to the last answer
	serverCPU         time.Duration
	selfCPU           time.Duration // this process: load generator and mock upstream
	machineCores      float64       // CPU cores busy on the machine, on average
	wall              time.Duration // the phase's wall time, for the CPU figures
}

// otherCores is the CPU used on the machine by neither the server nor this
// process during the phase: other work sharing the machine skews the figures.
func (r *phaseResult) otherCores() float64 {
	return max(0, r.machineCores-(r.serverCPU+r.selfCPU).Seconds()/r.wall.Seconds())
}

// errors counts the calls sent that did not complete.
func (r *phaseResult) errors() int { return r.sent - r.ok }

// unsent counts the calls still due when the phase stopped: the server (or
// the generator) could not keep up with the offered rate.
func (r *phaseResult) unsent() int { return r.offered - r.sent }

func (r *phaseResult) rps() float64 {
	if r.elapsed <= 0 {
		return 0
	}
	return float64(r.ok) / r.elapsed.Seconds()
}

// runPhase offers p.rate calls a second for p.dur through workers workers.
func runPhase(p loadPhase, workers int, serverPID int) *phaseResult {
	res := &phaseResult{loadPhase: p, offered: int(float64(p.rate) * p.dur.Seconds()), errs: map[string]int{}, failed: map[string]outcome{}}
	hc := newClient(workers, callTimeout)
	defer hc.CloseIdleConnections()
	body := chatBody(p.stream)
	interval := time.Second / time.Duration(p.rate)
	slots := make(chan int, workers)
	cpu0, self0 := procCPU(serverPID), procCPU(os.Getpid())
	busy0, all0 := machineCPU()
	start := time.Now()
	stop, cancel := context.WithDeadline(context.Background(), start.Add(p.dur+loadGrace))
	defer cancel()
	go func() {
		defer close(slots)
		for i := 0; i < res.offered; {
			due := min(res.offered, int(time.Since(start)/interval)+1)
			for ; i < due; i++ {
				select {
				case slots <- i: // blocks when every worker is busy: the lag shows in the latency
				case <-stop.Done():
					return
				}
			}
			time.Sleep(interval) // wakes late under load; the next round sends everything due
		}
	}()
	var mu sync.Mutex
	var wg sync.WaitGroup
	var last time.Time
	for range workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			var lat, svc, lag []time.Duration
			var ids []string
			errs := map[string]int{}
			failed := map[string]outcome{}
			var end time.Time
			for i := range slots {
				at := start.Add(time.Duration(i) * interval)
				t0 := time.Now()
				id := ""
				if p.idPrefix != "" {
					id = fmt.Sprintf("%s-%06d", p.idPrefix, i)
				}
				out, status, detail := callChat(context.Background(), hc, p.url, p.key, id, body, p.stream)
				end = time.Now()
				lag = append(lag, t0.Sub(at))
				if out == completed {
					lat = append(lat, end.Sub(at))
					svc = append(svc, end.Sub(t0))
					ids = append(ids, id)
				} else {
					errs[fmt.Sprintf("%d %s", status, truncate(detail, 100))]++
					if id != "" {
						failed[id] = out
					}
				}
			}
			mu.Lock()
			res.sent += len(lag)
			res.ok += len(lat)
			res.lat, res.svc, res.lag = append(res.lat, lat...), append(res.svc, svc...), append(res.lag, lag...)
			res.okIDs = append(res.okIDs, ids...)
			for k, v := range errs {
				res.errs[k] += v
			}
			for k, v := range failed {
				res.failed[k] = v
			}
			if end.After(last) {
				last = end
			}
			mu.Unlock()
		}()
	}
	wg.Wait()
	res.elapsed = last.Sub(start)
	res.wall = time.Since(start)
	res.serverCPU, res.selfCPU = procCPU(serverPID)-cpu0, procCPU(os.Getpid())-self0
	busy1, all1 := machineCPU()
	if all1 > all0 {
		res.machineCores = float64(runtime.NumCPU()) * (busy1 - busy0) / (all1 - all0)
	}
	for _, d := range [][]time.Duration{res.lat, res.svc, res.lag} {
		sort.Slice(d, func(i, j int) bool { return d[i] < d[j] })
	}
	return res
}

// machineCPU reads the busy and total jiffies of all CPUs from /proc/stat.
func machineCPU() (busy, total float64) {
	raw, err := os.ReadFile("/proc/stat")
	if err != nil {
		return 0, 0
	}
	line, _, _ := strings.Cut(string(raw), "\n")
	f := strings.Fields(line)
	for i, v := range f[1:] {
		n, _ := strconv.ParseFloat(v, 64)
		if i >= 8 { // guest time is already in user
			break
		}
		total += n
		if i != 3 && i != 4 { // idle, iowait
			busy += n
		}
	}
	return busy, total
}

// pct is the nearest-rank percentile of sorted durations.
func pct(sorted []time.Duration, q float64) time.Duration {
	if len(sorted) == 0 {
		return 0
	}
	return sorted[min(len(sorted)-1, max(0, int(math.Ceil(q*float64(len(sorted))))-1))]
}

func ms(d time.Duration) float64 { return float64(d) / float64(time.Millisecond) }

// memWatch samples the server's VmRSS while the load runs.
type memWatch struct {
	mu      sync.Mutex
	peakRSS int64
	stop    chan struct{}
	done    chan struct{}
}

func watchMemory(pid int) *memWatch {
	m := &memWatch{stop: make(chan struct{}), done: make(chan struct{})}
	go func() {
		defer close(m.done)
		t := time.NewTicker(50 * time.Millisecond)
		defer t.Stop()
		for {
			if rss, _, err := procMemory(pid); err == nil {
				m.mu.Lock()
				m.peakRSS = max(m.peakRSS, rss)
				m.mu.Unlock()
			}
			select {
			case <-m.stop:
				return
			case <-t.C:
			}
		}
	}()
	return m
}

func (m *memWatch) finish() int64 {
	close(m.stop)
	<-m.done
	return m.peakRSS
}

func gatewayLoad(b *testing.B, d store.Dialect) {
	b.ReportMetric(0, "ns/op") // one bounded run, not a per-op figure
	up := newMockUpstream(b, 0)
	be := newBackend(b, d)
	srv := startServer(b, be, "server")
	f := setUp(b, srv, up)
	pid := srv.pid()
	idleRSS, _, err := procMemory(pid)
	if err != nil {
		b.Fatal(err)
	}
	mem := watchMemory(pid)
	rate, dur, workers := loadSettings(b)
	direct, gateway := up.URL+"/v1/chat/completions", srv.url+"/v1/chat/completions"

	var warm, results []*phaseResult
	for _, stream := range []bool{false, true} {
		kind := "chat"
		if stream {
			kind = "stream"
		}
		results = append(results, runPhase(loadPhase{name: kind + " direct", url: direct, key: upstreamKey, stream: stream, rate: rate, dur: dur}, workers, pid))
		warm = append(warm, runPhase(loadPhase{name: kind + " warm-up", url: gateway, key: f.key, stream: stream, idPrefix: "lt-" + kind + "-warm",
			rate: warmRate, dur: warmFor}, loadWorkers, pid))
		results = append(results, runPhase(loadPhase{name: kind + " gateway", url: gateway, key: f.key, stream: stream, idPrefix: "lt-" + kind,
			rate: rate, dur: dur}, workers, pid))
	}
	peakRSS := mem.finish()
	time.Sleep(500 * time.Millisecond) // let the writer drain the error rows it queues without waiting
	afterRSS, hwm, err := procMemory(pid)
	if err != nil {
		b.Fatal(err)
	}

	// The figures.
	var sb strings.Builder
	fmt.Fprintf(&sb, "%s: offered %d req/s open loop for %v per phase (at most %d calls in flight).\n", d, rate, dur, workers)
	fmt.Fprintf(&sb, "latency = from the scheduled send to the end of the answer (includes waiting for a free worker); service = from the actual send.\n")
	fmt.Fprintf(&sb, "The load generator, the mock upstream and the server share this machine's %d CPUs; the figures include that contention.\n", runtime.NumCPU())
	fmt.Fprintf(&sb, "%-15s %6s %6s %6s %6s %6s | %8s %8s %8s %8s | %8s %8s | %8s | %6s %6s %5s %5s\n", "phase", "offerd", "unsent", "ok", "errors", "ok/s",
		"p50 ms", "p90 ms", "p99 ms", "max ms", "svc p50", "svc p99", "lag p99", "srvCPU", "genCPU", "cores", "other")
	for _, r := range results {
		fmt.Fprintf(&sb, "%-15s %6d %6d %6d %6d %6.0f | %8.3f %8.3f %8.3f %8.3f | %8.3f %8.3f | %8.3f | %5.1fs %5.1fs %5.2f %5.2f\n", r.name, r.offered, r.unsent(), r.ok, r.errors(), r.rps(),
			ms(pct(r.lat, .50)), ms(pct(r.lat, .90)), ms(pct(r.lat, .99)), ms(pct(r.lat, 1)), ms(pct(r.svc, .50)), ms(pct(r.svc, .99)), ms(pct(r.lag, .99)),
			r.serverCPU.Seconds(), r.selfCPU.Seconds(), r.machineCores, r.otherCores())
	}
	fmt.Fprintf(&sb, "(unsent: calls still due when the phase stopped %v after its end, i.e. the offered rate was not absorbed; srvCPU: the server's\n"+
		" CPU time in the phase; genCPU: this process's, i.e. generator + mock; cores: machine-wide busy cores on average; other: cores\n"+
		" busy with none of them, i.e. PostgreSQL's backends and any other work on the machine)\n", loadGrace)
	for i := 0; i < len(results); i += 2 {
		dr, gr := results[i], results[i+1]
		kind := strings.Fields(gr.name)[0]
		if len(gr.lat) == 0 || len(dr.lat) == 0 {
			fmt.Fprintf(&sb, "%-15s added by the gateway: n/a, no call completed\n", kind)
			b.ReportMetric(float64(gr.errors()), kind+"-gw-errors")
			b.ReportMetric(float64(gr.unsent()), kind+"-gw-unsent")
			continue
		}
		add50, add99 := pct(gr.lat, .50)-pct(dr.lat, .50), pct(gr.lat, .99)-pct(dr.lat, .99)
		svc50, svc99 := pct(gr.svc, .50)-pct(dr.svc, .50), pct(gr.svc, .99)-pct(dr.svc, .99)
		fmt.Fprintf(&sb, "%-15s added by the gateway: p50 %+.3f ms, p99 %+.3f ms (service time alone: p50 %+.3f ms, p99 %+.3f ms); server CPU %.0f µs per call\n", kind,
			ms(add50), ms(add99), ms(svc50), ms(svc99), float64(gr.serverCPU.Microseconds())/float64(max(1, gr.sent)))
		b.ReportMetric(ms(svc50), kind+"-added-svc-p50-ms")
		b.ReportMetric(ms(svc99), kind+"-added-svc-p99-ms")
		b.ReportMetric(ms(pct(dr.lat, .50)), kind+"-direct-p50-ms")
		b.ReportMetric(ms(pct(dr.lat, .99)), kind+"-direct-p99-ms")
		b.ReportMetric(ms(pct(gr.lat, .50)), kind+"-gw-p50-ms")
		b.ReportMetric(ms(pct(gr.lat, .99)), kind+"-gw-p99-ms")
		b.ReportMetric(ms(add50), kind+"-added-p50-ms")
		b.ReportMetric(ms(add99), kind+"-added-p99-ms")
		b.ReportMetric(gr.rps(), kind+"-gw-ok/s")
		b.ReportMetric(float64(gr.errors()), kind+"-gw-errors")
		b.ReportMetric(float64(gr.unsent()), kind+"-gw-unsent")
	}
	fmt.Fprintf(&sb, "server memory: RSS %.1f MiB idle before the load, %.1f MiB peak sampled during it, VmHWM %.1f MiB, RSS %.1f MiB after\n",
		float64(idleRSS)/1024, float64(peakRSS)/1024, float64(hwm)/1024, float64(afterRSS)/1024)
	b.ReportMetric(float64(hwm)/1024, "peak-rss-MiB")
	b.ReportMetric(float64(idleRSS)/1024, "idle-rss-MiB")
	for _, r := range append(append([]*phaseResult{}, results...), warm...) {
		for msg, n := range r.errs {
			fmt.Fprintf(&sb, "error in %s (%d×): %s\n", r.name, n, msg)
		}
	}
	b.Logf("\n%s", sb.String())

	// The books: every call that got its whole 200 has one log row, the
	// ledger's usage equals the logs' cost, the balance top-ups minus usage.
	k := readBooks(b, be.open(b), f.tenantID)
	var gwOK, gwErrors, gwUnsent, abandoned200 int
	var lost, billedErr []string
	for _, r := range append(append([]*phaseResult{}, results...), warm...) {
		if r.idPrefix == "" {
			continue
		}
		gwOK += r.ok
		gwErrors += r.errors()
		gwUnsent += r.unsent()
		for _, id := range r.okIDs {
			if k.requestIDs[id] != 1 || k.rowStatus[id] != 200 {
				lost = append(lost, fmt.Sprintf("%s (%d rows, status %d)", id, k.requestIDs[id], k.rowStatus[id]))
			}
		}
		for id, out := range r.failed {
			if k.rowStatus[id] != 200 {
				continue
			}
			if out == errorStatus {
				billedErr = append(billedErr, id)
			} else {
				abandoned200++ // the client gave up (timeout) after the usage was committed: billed as designed
			}
		}
	}
	if gwErrors > 0 {
		b.Errorf("GATEWAY ERRORS UNDER LOAD: %d calls through the gateway did not complete (see the errors above and the server's errors below)", gwErrors)
	}
	if gwUnsent > 0 {
		b.Logf("SATURATED: %d calls offered to the gateway were never sent: it did not absorb %d req/s on this machine", gwUnsent, rate)
	}
	if len(lost) > 0 {
		b.Errorf("LOST USAGE: %d calls answered 200 in full without exactly one status-200 log row, e.g. %s", len(lost), strings.Join(lost[:min(5, len(lost))], "; "))
	}
	if len(billedErr) > 0 {
		b.Errorf("BILLED BUT ANSWERED AN ERROR: %d calls got a non-200 answer yet have a status-200 (billed) log row, e.g. %s", len(billedErr), billedErr[0])
	}
	if int64(gwOK) != k.ok200 {
		msg := fmt.Sprintf("LOG COUNT: %d gateway calls got their whole 200, the request log has %d status-200 rows; %d of the difference are calls "+
			"whose client timed out after their usage was committed", gwOK, k.ok200, abandoned200)
		if int64(gwOK+abandoned200) != k.ok200 {
			b.Error(msg + ", the rest is unexplained")
		} else {
			b.Log(msg)
		}
	}
	if p := srv.problemSummary(8); p != "" {
		b.Logf("server log, errors and warnings by kind:\n%s", p)
	}
	checkBooks(b, k, apiBalance(b, srv))
	b.Logf("books: %d calls answered 200 through the gateway (with warm-up); %d log rows (%d status 200, %d other); %d usage ledger entries (batches, ~%.0f calls each); "+
		"ledger usage %d micros = log cost %d micros; balance %d = top-up %d − usage %d; metered tokens %d = log tokens %d",
		gwOK, k.logs, k.ok200, k.logs-k.ok200, k.usageEntries, float64(k.logs)/float64(max(1, k.usageEntries)), k.usageDebits, k.logCost,
		k.balance, k.topUps, k.usageDebits, k.meteredTokens, k.logTokens)
}
