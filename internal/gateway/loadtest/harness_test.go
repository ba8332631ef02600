// Package loadtest drives the real tenantgate binary as a subprocess: a
// bounded load run (BenchmarkGatewayLoad, only with -bench) and a crash test
// (TestGatewayKill9LosesNoUsage) that kill -9s the server under load and
// checks that no usage was lost or billed twice.
//
// The server is built once per test binary with `go build` from the module
// root, started on 127.0.0.1 with a fresh data dir (SQLite; PostgreSQL too
// when TENANTGATE_TEST_POSTGRES_URL is set), and always killed at the end.
// The upstream model provider is an in-process httptest server.
package loadtest

import (
	"bufio"
	"bytes"
	"context"
	"database/sql"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"sort"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	_ "github.com/glebarez/sqlite" // database/sql driver "sqlite", to read the server's SQLite file
	"github.com/google/uuid"

	"github.com/tenantgate/tenantgate/internal/money"
	"github.com/tenantgate/tenantgate/internal/store"
	"github.com/tenantgate/tenantgate/internal/store/storetest" // also registers database/sql driver "pgx"
)

// buildDir is where the server binary is built: one directory per test
// process, removed by TestMain.
func buildDir() string {
	return filepath.Join(os.TempDir(), fmt.Sprintf("tenantgate-loadtest-%d", os.Getpid()))
}

func TestMain(m *testing.M) {
	code := m.Run()
	_ = os.RemoveAll(buildDir())
	os.Exit(code)
}

// serverBinary builds ./cmd/tenantgate once per test process.
var serverBinary = sync.OnceValues(func() (string, error) {
	goBin, err := exec.LookPath("go")
	if err != nil {
		goBin = filepath.Join(runtime.GOROOT(), "bin", "go")
	}
	env := append(os.Environ(), "GOTOOLCHAIN=local")
	out, err := exec.Command(goBin, "env", "GOMOD").Output()
	if err != nil {
		return "", fmt.Errorf("go env GOMOD: %w", err)
	}
	gomod := strings.TrimSpace(string(out))
	if gomod == "" || gomod == os.DevNull {
		return "", errors.New("go env GOMOD: not inside the module")
	}
	if err := os.MkdirAll(buildDir(), 0o700); err != nil {
		return "", err
	}
	bin := filepath.Join(buildDir(), "tenantgate")
	cmd := exec.Command(goBin, "build", "-o", bin, "./cmd/tenantgate")
	cmd.Dir, cmd.Env = filepath.Dir(gomod), env
	if out, err := cmd.CombinedOutput(); err != nil {
		return "", fmt.Errorf("go build ./cmd/tenantgate: %w\n%s", err, out)
	}
	return bin, nil
})

const (
	operatorEmail    = "ops@loadtest.test"
	operatorPassword = "operator-pass-1"
	ownerPassword    = "correct-horse-1"
	upstreamKey      = "sk-mock-upstream"
	model            = "gpt-load"
	// The mock reports 11 prompt and 7 completion tokens; at 2.00 and 8.00
	// per million tokens every call costs 11*2 + 7*8 = 78 micros.
	inputPerMTok  = "2.00"
	outputPerMTok = "8.00"
	topUp         = "100000.00"
)

// backend is where a server keeps its data: SQLite in the data dir, or a
// fresh PostgreSQL database from storetest (migrated by the URL's superuser,
// served by a role that owns nothing and has NOBYPASSRLS, plus a registered
// platform role: the README's three-role setup).
type backend struct {
	dialect store.Dialect
	dataDir string
	pg      storetest.DB
}

func newBackend(tb testing.TB, d store.Dialect) *backend {
	tb.Helper()
	b := &backend{dialect: d, dataDir: tb.TempDir()}
	if d == store.Postgres {
		b.pg = storetest.New(tb, d)
	}
	return b
}

func (b *backend) env() []string {
	if b.dialect != store.Postgres {
		return nil
	}
	return []string{"TENANTGATE_DATABASE_URL=" + b.pg.URL, "TENANTGATE_PLATFORM_DATABASE_URL=" + b.pg.PlatformURL}
}

// open opens the database for checks: SQLite read-only, PostgreSQL as the
// owner (a superuser, so row-level security does not hide rows).
func (b *backend) open(tb testing.TB) *sql.DB {
	tb.Helper()
	driver, dsn := "sqlite", "file:"+filepath.Join(b.dataDir, "tenantgate.db")+"?mode=ro&_pragma=busy_timeout(10000)"
	if b.dialect == store.Postgres {
		driver, dsn = "pgx", b.pg.OwnerURL
	}
	db, err := sql.Open(driver, dsn)
	if err != nil {
		tb.Fatal(err)
	}
	db.SetMaxOpenConns(1)
	tb.Cleanup(func() { db.Close() })
	return db
}

// server is one tenantgate process.
type server struct {
	tb      testing.TB
	cmd     *exec.Cmd
	url     string
	logPath string
	exited  chan struct{}
	waitErr error
}

func freeAddr(tb testing.TB) string {
	tb.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		tb.Fatal(err)
	}
	defer l.Close()
	return l.Addr().String()
}

// startServer runs `tenantgate serve` on a free loopback port with the
// backend's data (and extraEnv, NAME=value) and waits for /healthz. The process is killed when the
// test ends (and, through Pdeathsig, if the test process dies first).
func startServer(tb testing.TB, be *backend, name string, extraEnv ...string) *server {
	tb.Helper()
	bin, err := serverBinary()
	if err != nil {
		tb.Fatal(err)
	}
	addr := freeAddr(tb)
	s := &server{tb: tb, url: "http://" + addr, logPath: filepath.Join(be.dataDir, name+".log"), exited: make(chan struct{})}
	logFile, err := os.Create(s.logPath)
	if err != nil {
		tb.Fatal(err)
	}
	defer logFile.Close()
	var env []string
	for _, kv := range os.Environ() {
		if !strings.HasPrefix(kv, "TENANTGATE_") {
			env = append(env, kv)
		}
	}
	env = append(env,
		"TENANTGATE_ADDR="+addr,
		"TENANTGATE_DATA_DIR="+be.dataDir,
		"TENANTGATE_BOOTSTRAP_OPERATOR_EMAIL="+operatorEmail,
		"TENANTGATE_BOOTSTRAP_OPERATOR_PASSWORD="+operatorPassword,
		"TENANTGATE_AUTH_RATE_PER_MINUTE=0",
	)
	env = append(env, be.env()...)
	env = append(env, extraEnv...)
	s.cmd = exec.Command(bin, "serve")
	s.cmd.Env, s.cmd.Stdout, s.cmd.Stderr = env, logFile, logFile
	s.cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	if err := s.cmd.Start(); err != nil {
		tb.Fatal(err)
	}
	go func() { s.waitErr = s.cmd.Wait(); close(s.exited) }()
	tb.Cleanup(func() {
		s.kill()
		if tb.Failed() {
			tb.Logf("warnings and errors in %s:\n%s", s.logPath, strings.Join(s.problems(30), "\n"))
		}
		if dir := os.Getenv("TENANTGATE_LOADTEST_KEEP_LOGS"); dir != "" {
			raw, _ := os.ReadFile(s.logPath)
			dst := filepath.Join(dir, fmt.Sprintf("%s-%d.log", strings.ReplaceAll(tb.Name(), "/", "_"), s.pid()))
			if err := os.WriteFile(dst, raw, 0o600); err == nil {
				tb.Logf("server log kept in %s", dst)
			}
		}
	})
	deadline := time.Now().Add(30 * time.Second)
	for {
		select {
		case <-s.exited:
			tb.Fatalf("the server exited during start (%v):\n%s", s.waitErr, s.logTail(30))
		default:
		}
		resp, err := http.Get(s.url + "/healthz")
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return s
			}
		}
		if time.Now().After(deadline) {
			tb.Fatalf("the server did not answer /healthz within 30 s:\n%s", s.logTail(30))
		}
		time.Sleep(50 * time.Millisecond)
	}
}

func (s *server) pid() int { return s.cmd.Process.Pid }

// kill sends SIGKILL (if the process still runs) and reaps it.
func (s *server) kill() {
	select {
	case <-s.exited:
		return
	default:
	}
	_ = syscall.Kill(s.pid(), syscall.SIGKILL)
	select {
	case <-s.exited:
	case <-time.After(10 * time.Second):
		s.tb.Errorf("server %d did not exit 10 s after SIGKILL", s.pid())
	}
}

// problems returns up to n lines of the server's log above info level.
func (s *server) problems(n int) []string {
	raw, _ := os.ReadFile(s.logPath)
	var out []string
	for _, l := range strings.Split(string(raw), "\n") {
		if strings.Contains(l, "generated a master key") {
			continue // expected on a fresh data dir
		}
		if strings.Contains(l, "level=WARN") || strings.Contains(l, "level=ERROR") || strings.Contains(l, "panic") {
			if len(out) == n {
				out = append(out, "…")
				break
			}
			out = append(out, l)
		}
	}
	return out
}

// problemSummary counts the server's error and warning lines by message,
// without their times and request ids, most frequent first.
func (s *server) problemSummary(n int) string {
	counts := map[string]int{}
	for _, l := range s.problems(1 << 20) {
		var kept []string
		for _, f := range strings.Fields(l) {
			if !strings.HasPrefix(f, "time=") && !strings.HasPrefix(f, "requestId=") && !strings.HasPrefix(f, "file=") {
				kept = append(kept, f)
			}
		}
		counts[truncate(strings.Join(kept, " "), 240)]++
	}
	keys := make([]string, 0, len(counts))
	for k := range counts {
		keys = append(keys, k)
	}
	sort.Slice(keys, func(i, j int) bool { return counts[keys[i]] > counts[keys[j]] })
	var sb strings.Builder
	for _, k := range keys[:min(n, len(keys))] {
		fmt.Fprintf(&sb, "%6d× %s\n", counts[k], k)
	}
	return sb.String()
}

func (s *server) logTail(n int) string {
	raw, _ := os.ReadFile(s.logPath)
	lines := strings.Split(strings.TrimRight(string(raw), "\n"), "\n")
	return strings.Join(lines[max(0, len(lines)-n):], "\n")
}

// procMemory reads VmRSS and VmHWM (peak RSS) of pid, in KiB.
func procMemory(pid int) (rss, hwm int64, err error) {
	f, err := os.Open(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return 0, 0, err
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		k, v, ok := strings.Cut(sc.Text(), ":")
		if !ok || (k != "VmRSS" && k != "VmHWM") {
			continue
		}
		n, _ := strconv.ParseInt(strings.TrimSuffix(strings.TrimSpace(v), " kB"), 10, 64)
		if k == "VmRSS" {
			rss = n
		} else {
			hwm = n
		}
	}
	return rss, hwm, sc.Err()
}

// procCPU reads the user+system CPU time of pid.
func procCPU(pid int) time.Duration {
	raw, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return 0
	}
	// Fields after the parenthesised command: state is field 3, utime 14, stime 15.
	s := string(raw)
	f := strings.Fields(s[strings.LastIndexByte(s, ')')+1:])
	if len(f) < 13 {
		return 0
	}
	ut, _ := strconv.ParseInt(f[11], 10, 64)
	st, _ := strconv.ParseInt(f[12], 10, 64)
	return time.Duration(ut+st) * 10 * time.Millisecond // USER_HZ is 100 on Linux
}

// mockUpstream is an OpenAI-compatible provider that answers at once
// (streams optionally pause chunkDelay between chunks).
type mockUpstream struct {
	*httptest.Server
	chunkDelay time.Duration
}

var (
	mockAnswer = []byte(`{"id":"chatcmpl-load","object":"chat.completion","created":1,"model":"` + model + `","choices":[{"index":0,"message":{"role":"assistant","content":"Hello there"},"finish_reason":"stop"}],"usage":{"prompt_tokens":11,"completion_tokens":7,"total_tokens":18}}`)
	mockChunks = func() [][]byte {
		var out [][]byte
		for _, part := range []string{"Hel", "lo", " there"} {
			out = append(out, []byte(`data: {"id":"chatcmpl-load","object":"chat.completion.chunk","created":1,"model":"`+model+`","choices":[{"index":0,"delta":{"content":"`+part+`"},"finish_reason":null}]}`+"\n\n"))
		}
		out = append(out,
			[]byte(`data: {"id":"chatcmpl-load","object":"chat.completion.chunk","created":1,"model":"`+model+`","choices":[{"index":0,"delta":{},"finish_reason":"stop"}]}`+"\n\n"),
			[]byte(`data: {"id":"chatcmpl-load","object":"chat.completion.chunk","created":1,"model":"`+model+`","choices":[],"usage":{"prompt_tokens":11,"completion_tokens":7,"total_tokens":18}}`+"\n\n"),
			[]byte("data: [DONE]\n\n"))
		return out
	}()
)

func newMockUpstream(tb testing.TB, chunkDelay time.Duration) *mockUpstream {
	m := &mockUpstream{chunkDelay: chunkDelay}
	m.Server = httptest.NewServer(http.HandlerFunc(m.serve))
	tb.Cleanup(m.Close)
	return m
}

func (m *mockUpstream) serve(w http.ResponseWriter, r *http.Request) {
	if r.URL.Path != "/v1/chat/completions" || r.Method != http.MethodPost {
		http.NotFound(w, r)
		return
	}
	if r.Header.Get("Authorization") != "Bearer "+upstreamKey {
		w.WriteHeader(http.StatusUnauthorized)
		_, _ = io.WriteString(w, `{"error":{"message":"Incorrect API key provided","type":"invalid_request_error","code":"invalid_api_key"}}`)
		return
	}
	var req struct {
		Stream bool `json:"stream"`
	}
	if err := json.NewDecoder(r.Body).Decode(&req); err != nil {
		w.WriteHeader(http.StatusBadRequest)
		_, _ = io.WriteString(w, `{"error":{"message":"bad json","type":"invalid_request_error"}}`)
		return
	}
	if !req.Stream {
		w.Header().Set("Content-Type", "application/json")
		_, _ = w.Write(mockAnswer)
		return
	}
	w.Header().Set("Content-Type", "text/event-stream")
	fl := w.(http.Flusher)
	for i, c := range mockChunks {
		if i > 0 && m.chunkDelay > 0 {
			select {
			case <-time.After(m.chunkDelay):
			case <-r.Context().Done():
				return
			}
		}
		_, _ = w.Write(c)
		fl.Flush()
	}
}

// chatBody is the request both the mock and the gateway get.
func chatBody(stream bool) []byte {
	b := map[string]any{"model": model, "messages": []map[string]any{{"role": "user", "content": "Say hello"}}, "max_tokens": 16}
	if stream {
		b["stream"], b["stream_options"] = true, map[string]any{"include_usage": true}
	}
	raw, _ := json.Marshal(b)
	return raw
}

// api calls the server's JSON API.
type api struct {
	tb  testing.TB
	url string
	hc  *http.Client
}

type obj map[string]any

func (o obj) str(path ...string) string {
	var v any = map[string]any(o)
	for _, p := range path {
		m, _ := v.(map[string]any)
		v = m[p]
	}
	s, _ := v.(string)
	return s
}

func (a *api) do(method, path, token string, body any, want int) obj {
	a.tb.Helper()
	var rd io.Reader
	if body != nil {
		raw, _ := json.Marshal(body)
		rd = bytes.NewReader(raw)
	}
	req, err := http.NewRequest(method, a.url+path, rd)
	if err != nil {
		a.tb.Fatal(err)
	}
	req.Header.Set("Content-Type", "application/json")
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	resp, err := a.hc.Do(req)
	if err != nil {
		a.tb.Fatalf("%s %s: %v", method, path, err)
	}
	defer resp.Body.Close()
	raw, _ := io.ReadAll(resp.Body)
	if resp.StatusCode != want {
		a.tb.Fatalf("%s %s: got %d, want %d: %s", method, path, resp.StatusCode, want, raw)
	}
	out := obj{}
	if len(raw) > 0 {
		if err := json.Unmarshal(raw, &out); err != nil {
			a.tb.Fatalf("%s %s: %v: %s", method, path, err, raw)
		}
	}
	return out
}

// fixture is a tenant ready to call the gateway: an API key, a priced
// platform channel to the mock, a large balance, unlimited entitlements.
type fixture struct {
	tenantID   string
	ownerToken string
	key        string
}

func setUp(tb testing.TB, s *server, up *mockUpstream) *fixture {
	tb.Helper()
	a := &api{tb: tb, url: s.url, hc: &http.Client{Timeout: 30 * time.Second}}
	op := a.do("POST", "/api/v1/auth/login", "", map[string]any{"email": operatorEmail, "password": operatorPassword}, 200).str("accessToken")
	r := a.do("POST", "/api/v1/tenants/signup", "", map[string]any{"slug": "loadco", "name": "Load Co", "ownerEmail": "owner@loadco.test",
		"ownerPassword": ownerPassword, "plan": "pro"}, 201)
	f := &fixture{tenantID: r.str("tenant", "id"), ownerToken: r.str("tokens", "accessToken")}
	a.do("PUT", "/api/v1/admin/tenants/"+f.tenantID+"/entitlements", op, map[string]any{"limits": map[string]int64{"requestsPerMinute": -1,
		"tokensPerMinute": -1, "apiCallsPerHour": -1, "monthlyTokens": -1, "monthlyMessages": -1}}, 200)
	f.key = a.do("POST", "/api/v1/api-keys", f.ownerToken, map[string]any{"name": "load"}, 201).str("secret")
	a.do("POST", "/api/v1/admin/channels", op, map[string]any{"name": "mock", "provider": "openai_compatible", "baseUrl": up.URL + "/v1",
		"keys": []string{upstreamKey}, "models": []string{model}}, 201)
	a.do("PUT", "/api/v1/admin/prices/"+model, op, map[string]any{"inputPerMTok": inputPerMTok, "outputPerMTok": outputPerMTok}, 200)
	a.do("POST", "/api/v1/admin/tenants/"+f.tenantID+"/topups", op, map[string]any{"amount": topUp, "idempotencyKey": "loadtest-seed"}, 201)
	if f.tenantID == "" || f.key == "" {
		tb.Fatal("setup returned no tenant id or key")
	}
	return f
}

// apiBalance reads the balance through the API (logging in again, so it
// also works against a restarted server).
func apiBalance(tb testing.TB, s *server) string {
	tb.Helper()
	a := &api{tb: tb, url: s.url, hc: &http.Client{Timeout: 15 * time.Second}}
	tok := a.do("POST", "/api/v1/auth/login", "", map[string]any{"email": "owner@loadco.test", "password": ownerPassword, "tenant": "loadco"}, 200).str("accessToken")
	return a.do("GET", "/api/v1/billing/balance", tok, nil, 200).str("balance")
}

// books is what the database says about one tenant's AI usage.
type books struct {
	logs, distinctIDs, distinctRequestIDs, ok200, chatOK int64
	logCost, logTokens                                   int64
	usageDebits, usageEntries, topUps, balance           int64
	meteredTokens, meteredMessages                       int64
	requestIDs                                           map[string]int   // request id → rows
	rowStatus                                            map[string]int   // request id → status of its (last) row
	rowCompletion                                        map[string]int64 // request id → completion tokens of its (last) row
	rowEstimated                                         map[string]bool
	orphanDebits                                         []string // usage entries whose batch's first log row does not exist
}

func readBooks(tb testing.TB, db *sql.DB, tenantID string) books {
	tb.Helper()
	if _, err := uuid.Parse(tenantID); err != nil {
		tb.Fatalf("tenant id %q: %v", tenantID, err)
	}
	t := "'" + tenantID + "'"
	var k books
	scan := func(q string, dst ...any) {
		tb.Helper()
		if err := db.QueryRow(q).Scan(dst...); err != nil {
			tb.Fatalf("%s: %v", q, err)
		}
	}
	sum := func(expr string) string { return "CAST(COALESCE(SUM(" + expr + "), 0) AS BIGINT)" }
	scan(`SELECT COUNT(*), COUNT(DISTINCT id), COUNT(DISTINCT request_id), `+sum("CASE WHEN status = 200 THEN 1 ELSE 0 END")+`, `+
		sum("CASE WHEN op = 'chat' AND status < 400 THEN 1 ELSE 0 END")+`, `+sum("cost_micros")+`, `+sum("prompt_tokens + completion_tokens")+
		` FROM ai_request_logs WHERE tenant_id = `+t, &k.logs, &k.distinctIDs, &k.distinctRequestIDs, &k.ok200, &k.chatOK, &k.logCost, &k.logTokens)
	scan(`SELECT `+sum("-amount_micros")+`, COUNT(*) FROM ledger_entries WHERE kind = 'usage' AND tenant_id = `+t, &k.usageDebits, &k.usageEntries)
	scan(`SELECT `+sum("amount_micros")+` FROM ledger_entries WHERE kind = 'topup' AND tenant_id = `+t, &k.topUps)
	scan(`SELECT balance_micros FROM billing_accounts WHERE tenant_id = `+t, &k.balance)
	scan(`SELECT `+sum("CASE WHEN meter = 'tokens' THEN value ELSE 0 END")+`, `+sum("CASE WHEN meter = 'messages' THEN value ELSE 0 END")+
		` FROM usage_counters WHERE tenant_id = `+t, &k.meteredTokens, &k.meteredMessages)

	ids := map[string]bool{}
	k.requestIDs, k.rowStatus, k.rowCompletion, k.rowEstimated = map[string]int{}, map[string]int{}, map[string]int64{}, map[string]bool{}
	rows, err := db.Query(`SELECT id, request_id, status, completion_tokens, estimated FROM ai_request_logs WHERE tenant_id = ` + t)
	if err != nil {
		tb.Fatal(err)
	}
	for rows.Next() {
		var id, rid string
		var status int
		var completion int64
		var estimated bool
		if err := rows.Scan(&id, &rid, &status, &completion, &estimated); err != nil {
			tb.Fatal(err)
		}
		ids[id] = true
		k.requestIDs[rid]++
		k.rowStatus[rid], k.rowCompletion[rid], k.rowEstimated[rid] = status, completion, estimated
	}
	if err := rows.Err(); err != nil {
		tb.Fatal(err)
	}
	rows.Close()
	rows, err = db.Query(`SELECT reference FROM ledger_entries WHERE kind = 'usage' AND tenant_id = ` + t)
	if err != nil {
		tb.Fatal(err)
	}
	for rows.Next() {
		var ref string
		if err := rows.Scan(&ref); err != nil {
			tb.Fatal(err)
		}
		if first, ok := strings.CutPrefix(ref, "batch:"); !ok || !ids[first] {
			k.orphanDebits = append(k.orphanDebits, ref)
		}
	}
	if err := rows.Err(); err != nil {
		tb.Fatal(err)
	}
	rows.Close()
	return k
}

// checkBooks applies the invariants that hold whatever happened: every row
// billed once, the ledger's usage equal to the logs' cost, the balance equal
// to top-ups minus usage (in the database and through the API), metered
// tokens and messages equal to the logs'.
func checkBooks(tb testing.TB, k books, balanceAPI string) {
	tb.Helper()
	if k.distinctIDs != k.logs {
		tb.Errorf("DOUBLE ROWS: %d log rows but %d distinct ids", k.logs, k.distinctIDs)
	}
	for rid, n := range k.requestIDs {
		if n > 1 {
			tb.Errorf("DOUBLE BILLING: request id %s has %d log rows", rid, n)
		}
	}
	if k.usageDebits != k.logCost {
		tb.Errorf("LEDGER != LOGS: ledger usage debits %d micros, sum of log cost_micros %d micros (diff %d)", k.usageDebits, k.logCost, k.usageDebits-k.logCost)
	}
	if len(k.orphanDebits) > 0 {
		tb.Errorf("DEBIT WITHOUT ROW: %d usage ledger entries reference no log row, e.g. %q", len(k.orphanDebits), k.orphanDebits[0])
	}
	if want := k.topUps - k.usageDebits; k.balance != want {
		tb.Errorf("BALANCE: billing_accounts.balance_micros %d, top-ups %d − usage %d = %d", k.balance, k.topUps, k.usageDebits, want)
	}
	if want := money.Micros(k.topUps - k.usageDebits).String(); balanceAPI != want {
		tb.Errorf("BALANCE (API): GET /api/v1/billing/balance says %s, top-ups − usage = %s", balanceAPI, want)
	}
	if k.meteredTokens != k.logTokens {
		tb.Errorf("METERED TOKENS: usage_counters tokens %d, sum of log tokens %d", k.meteredTokens, k.logTokens)
	}
	if k.meteredMessages != k.chatOK {
		tb.Errorf("METERED MESSAGES: usage_counters messages %d, successful chat log rows %d", k.meteredMessages, k.chatOK)
	}
}

// outcome is what a client saw of one chat call.
type outcome int

const (
	completed   outcome = iota // 200 and the whole answer ([DONE] for a stream)
	brokenOff                  // 200 but the body ended early or failed to read
	refused                    // no response at all (connect error, reset before headers)
	errorStatus                // a non-200 answer
)

// callChat sends one chat call and reads the whole answer.
func callChat(ctx context.Context, hc *http.Client, url, key, requestID string, body []byte, stream bool) (outcome, int, string) {
	o, status, detail, _ := callChatBody(ctx, hc, url, key, requestID, body, stream)
	return o, status, detail
}

// callChatBody is callChat that also returns what the client received.
func callChatBody(ctx context.Context, hc *http.Client, url, key, requestID string, body []byte, stream bool) (_ outcome, _ int, _ string, raw []byte) {
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, url, bytes.NewReader(body))
	if err != nil {
		return refused, 0, err.Error(), nil
	}
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("Authorization", "Bearer "+key)
	if requestID != "" {
		req.Header.Set("X-Request-ID", requestID)
	}
	resp, err := hc.Do(req)
	if err != nil {
		return refused, 0, err.Error(), nil
	}
	raw, err = io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return errorStatus, resp.StatusCode, truncate(string(raw), 160), raw
	}
	if err != nil {
		return brokenOff, resp.StatusCode, err.Error(), raw
	}
	if requestID != "" && resp.Header.Get("X-Request-ID") != requestID {
		return brokenOff, resp.StatusCode, "X-Request-ID " + resp.Header.Get("X-Request-ID") + ", sent " + requestID, raw
	}
	if stream {
		if !bytes.HasSuffix(raw, []byte("data: [DONE]\n\n")) {
			return brokenOff, resp.StatusCode, "stream without [DONE]: " + truncate(string(raw[max(0, len(raw)-160):]), 160), raw
		}
	} else if !bytes.Contains(raw, []byte(`"usage"`)) {
		return brokenOff, resp.StatusCode, "answer without usage: " + truncate(string(raw), 160), raw
	}
	return completed, resp.StatusCode, "", raw
}

func truncate(s string, n int) string {
	if len(s) > n {
		return s[:n] + "…"
	}
	return s
}

func newClient(conns int, timeout time.Duration) *http.Client {
	return &http.Client{Timeout: timeout, Transport: &http.Transport{
		Proxy: nil, MaxIdleConns: conns, MaxIdleConnsPerHost: conns, IdleConnTimeout: 90 * time.Second,
		DialContext: (&net.Dialer{Timeout: 5 * time.Second, KeepAlive: 30 * time.Second}).DialContext,
	}}
}
