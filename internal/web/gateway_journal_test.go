package web

import (
	"bufio"
	"context"
	"database/sql"
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"gorm.io/gorm"

	"github.com/tenantgate/tenantgate/internal/gateway"
	"github.com/tenantgate/tenantgate/internal/gateway/journal"
	"github.com/tenantgate/tenantgate/internal/store"
	"github.com/tenantgate/tenantgate/internal/store/storetest"
)

// faultyDB is a migrated database whose request-log inserts can be made to
// fail on demand (a trigger, set by the schema owner): the usage commit then
// fails as it does when the database is down or its disk is full.
type faultyDB struct {
	t       *testing.T
	dialect store.Dialect
	owner   *sql.DB
	app     *store.Store
}

func newFaultyDB(t *testing.T, d store.Dialect) *faultyDB {
	db := storetest.New(t, d)
	app, err := store.Open(context.Background(), store.Config{URL: db.URL, PlatformURL: db.PlatformURL})
	storetest.Must(t, err)
	t.Cleanup(func() { app.Close() })
	f := &faultyDB{t: t, dialect: d, app: app}
	if d == store.Postgres {
		f.owner, err = sql.Open("pgx", db.OwnerURL)
		storetest.Must(t, err)
		t.Cleanup(func() { f.owner.Close() })
		f.exec(`CREATE FUNCTION tg_test_fault() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN RAISE EXCEPTION 'injected fault: the database takes no writes'; END $$`)
	} else {
		f.owner = app.SQL()
	}
	return f
}

func (f *faultyDB) exec(q string) {
	f.t.Helper()
	if _, err := f.owner.Exec(q); err != nil {
		f.t.Fatalf("%s: %v", q, err)
	}
}

// gateway builds the server over the database with a usage journal in dir,
// and a tenant with a key and a priced platform channel to a fake upstream.
func (f *faultyDB) gateway(dir string, o journal.Options) (*gw, *journal.Journal, *fakeOpenAI) {
	f.t.Helper()
	j, _, err := journal.Open(dir, o)
	storetest.Must(f.t, err)
	f.t.Cleanup(func() { _ = j.Close() })
	a := newAPIWith(f.t, f.app, nil, func(o *gateway.Options) { o.Journal = j })
	up := newFakeOpenAI(f.t, "sk-upstream")
	return newGWOn(f.t, a, up), j, up
}

// fail makes every insert into ai_request_logs fail (on) or work (off).
func (f *faultyDB) fail(on bool) {
	f.t.Helper()
	switch {
	case on && f.dialect == store.Postgres:
		f.exec(`CREATE TRIGGER tg_test_fault BEFORE INSERT ON ai_request_logs FOR EACH STATEMENT EXECUTE FUNCTION tg_test_fault()`)
	case on:
		f.exec(`CREATE TRIGGER tg_test_fault BEFORE INSERT ON ai_request_logs BEGIN SELECT RAISE(ABORT, 'injected fault: the database takes no writes'); END`)
	case f.dialect == store.Postgres:
		f.exec(`DROP TRIGGER tg_test_fault ON ai_request_logs`)
	default:
		f.exec(`DROP TRIGGER tg_test_fault`)
	}
}

// usageRows counts the tenant's log rows and their cost.
func (g *gw) usageRows(t *testing.T) (rows, cost int64) {
	t.Helper()
	storetest.Must(t, g.a.store.Tx(store.WithTenant(context.Background(), g.org.ID), func(tx *gorm.DB) error {
		if err := tx.Table("ai_request_logs").Count(&rows).Error; err != nil {
			return err
		}
		return tx.Table("ai_request_logs").Select("COALESCE(SUM(cost_micros), 0)").Scan(&cost).Error
	}))
	return rows, cost
}

// waitFor polls cond for up to 15 s.
func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(15 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("gave up waiting: %s", what)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// copyDir copies the journal's files as they are at this moment: what a
// kill -9 at this moment would leave on disk.
func copyDir(t *testing.T, src string) string {
	t.Helper()
	dst := t.TempDir()
	ents, err := os.ReadDir(src)
	storetest.Must(t, err)
	for _, e := range ents {
		if !strings.HasSuffix(e.Name(), ".journal") {
			continue
		}
		raw, err := os.ReadFile(filepath.Join(src, e.Name()))
		storetest.Must(t, err)
		storetest.Must(t, os.WriteFile(filepath.Join(dst, e.Name()), raw, 0o600))
	}
	return dst
}

// TestGatewayUsageSurvivesAFailingDatabase: the usage commit fails after a
// stream delivered its whole answer (and after a plain answer was ready);
// both clients get their answers in full, and both calls are billed exactly
// once when the database takes writes again: ledger = logs = balance. A
// replay of the journal as it was during the outage bills nothing twice.
func TestGatewayUsageSurvivesAFailingDatabase(t *testing.T) {
	storetest.Each(t, func(t *testing.T, d store.Dialect) {
		fdb := newFaultyDB(t, d)
		dir := t.TempDir()
		g, j, _ := fdb.gateway(dir, journal.Options{})

		fdb.fail(true)
		events := sse(t, g.post(t, "/v1/chat/completions", g.key, chat("gpt-test", map[string]any{"stream": true})))
		if len(events) != 5 || events[len(events)-1] != "[DONE]" || strings.Contains(strings.Join(events, ""), `"error"`) {
			t.Errorf("stream while the database fails: %q", events)
		}
		r := g.post(t, "/v1/chat/completions", g.key, chat("gpt-test", nil))
		if body := readAll(t, r); r.StatusCode != 200 || !strings.Contains(body, "Hello there") {
			t.Errorf("chat while the database fails: %d %s", r.StatusCode, body)
		}
		if rows, _ := g.usageRows(t); rows != 0 {
			t.Fatalf("%d log rows while inserts fail: the fault is not in place", rows)
		}
		if n := j.Unsettled(); n != 2 {
			t.Errorf("the journal holds %d unsettled calls during the outage, want 2", n)
		}
		snapshot := copyDir(t, dir) // the journal during the outage

		fdb.fail(false)
		waitFor(t, "the parked calls to be billed", func() bool { rows, _ := g.usageRows(t); return rows == 2 })
		waitFor(t, "the journal to settle", func() bool { return j.Unsettled() == 0 })
		g.wantBalance(t, 2)
		g.ledgerEqualsLogs(t)

		// Replaying the journal as it stood during the outage (as after a
		// crash that came before the settlement was known) bills nothing again.
		j2, rec, err := journal.Open(snapshot, journal.Options{})
		storetest.Must(t, err)
		defer j2.Close()
		if len(rec) != 2 || rec[0].Final == nil || rec[1].Final == nil {
			t.Fatalf("the snapshot holds %d calls", len(rec))
		}
		g2 := gateway.New(g.a.store, gateway.Options{Billing: g.a.billing, Meter: g.a.quota, Journal: j2})
		settled, parked, err := g2.Recover(context.Background(), rec)
		if err != nil || settled != 2 || parked != 0 {
			t.Errorf("replay: settled %d parked %d err %v", settled, parked, err)
		}
		if rows, cost := g.usageRows(t); rows != 2 || cost != 2*callMicros {
			t.Errorf("after the replay: %d rows costing %d micros, want 2 costing %d", rows, cost, 2*callMicros)
		}
		g.wantBalance(t, 2)
		g.ledgerEqualsLogs(t)
	})
}

// TestGatewayRefusesCallsNothingCanRecord: with the journal full (its disk
// full) and the database refusing writes, a finished answer is not served
// (503), and new calls are refused with 503, Retry-After and OpenAI's error
// shape before they reach the upstream; nothing is served free. When the
// database takes writes again, calls are served and billed again.
func TestGatewayRefusesCallsNothingCanRecord(t *testing.T) {
	storetest.Each(t, func(t *testing.T, d store.Dialect) {
		fdb := newFaultyDB(t, d)
		g, _, up := fdb.gateway(t.TempDir(), journal.Options{MaxBytes: 64}) // no call fits

		fdb.fail(true)
		r := g.post(t, "/v1/chat/completions", g.key, chat("gpt-test", nil))
		if body := readAll(t, r); r.StatusCode != 503 || strings.Contains(body, "Hello there") {
			t.Errorf("an answer whose usage can be recorded nowhere: %d %s", r.StatusCode, body)
		}
		upCalls := up.calls.Load()
		for _, stream := range []bool{false, true} {
			r := g.post(t, "/v1/chat/completions", g.key, chat("gpt-test", map[string]any{"stream": stream}))
			status, typ, code, msg := openAIErr(t, r)
			if status != 503 || typ == "" || code == "" || r.Header.Get("Retry-After") == "" || !strings.Contains(msg, "journal") {
				t.Errorf("stream=%v while nothing can record usage: %d %q %q %q, Retry-After %q", stream, status, typ, code, msg, r.Header.Get("Retry-After"))
			}
		}
		if n := up.calls.Load() - upCalls; n != 0 {
			t.Errorf("refused calls reached the upstream %d times", n)
		}

		fdb.fail(false)
		waitFor(t, "calls to be served again", func() bool {
			r := g.post(t, "/v1/chat/completions", g.key, chat("gpt-test", nil))
			return r.StatusCode == 200 && strings.Contains(readAll(t, r), "Hello there")
		})
		if rows, _ := g.usageRows(t); rows != 1 {
			t.Errorf("%d log rows, want 1: the one call served", rows)
		}
		g.wantBalance(t, 1) // the refused calls cost nothing, the served one its price
		g.ledgerEqualsLogs(t)
	})
}

// TestGatewayJournalBillsAStreamCutByACrash: a stream is cut off mid-way by
// the death of the process (its journal as it was on disk at that moment,
// copied while the stream hangs), and the next start bills it for what it
// delivered by its last progress record, marked estimated, before serving.
// The call's own late commit (which a dead process never makes) is then not
// billed twice.
func TestGatewayJournalBillsAStreamCutByACrash(t *testing.T) {
	// An alias priced by its upstream model (no price of its own) is billed
	// at that price after a crash too, not 0.
	for _, model := range []string{"gpt-test", "fast-alias"} {
		t.Run(model, func(t *testing.T) { testJournalBillsACutStream(t, model) })
	}
}

func testJournalBillsACutStream(t *testing.T, model string) {
	storetest.Each(t, func(t *testing.T, d store.Dialect) {
		dir := t.TempDir()
		j, _, err := journal.Open(dir, journal.Options{})
		storetest.Must(t, err)
		t.Cleanup(func() { _ = j.Close() })
		a := newAPIWith(t, storetest.Open(t, d), nil, func(o *gateway.Options) { o.Journal, o.ProgressEvery = j, time.Nanosecond })
		up := newFakeOpenAI(t, "sk-upstream")
		up.hold = make(chan struct{})
		released := false
		release := func() {
			if !released {
				released = true
				close(up.hold)
			}
		}
		t.Cleanup(release)
		g := newGWOn(t, a, up)
		a.want(a.do("PATCH", "/api/v1/admin/channels/"+g.chanID, g.op, map[string]any{"modelMapping": map[string]string{"fast-alias": "gpt-test"}}, nil), 200, "")

		r := g.post(t, "/v1/chat/completions", g.key, chat(model, map[string]any{"stream": true}))
		defer r.Body.Close()
		line, err := bufio.NewReader(r.Body).ReadString('\n')
		if err != nil || !strings.Contains(line, "Hel") {
			t.Fatalf("first chunk: %q %v", line, err)
		}
		// The crash: what is on disk once the first chunk's progress is written.
		var rec []*journal.Recovered
		var j2 *journal.Journal
		waitFor(t, "the first chunk's progress record", func() bool {
			if j2 != nil {
				_ = j2.Close()
			}
			j2, rec, err = journal.Open(copyDir(t, dir), journal.Options{})
			storetest.Must(t, err)
			return len(rec) == 1 && rec[0].Start != nil && rec[0].Progress != nil
		})
		defer j2.Close()
		if rec[0].Final != nil {
			t.Fatal("the stream has a final record while it hangs")
		}

		// The next start.
		g2 := gateway.New(a.store, gateway.Options{Billing: a.billing, Meter: a.quota, Journal: j2})
		if settled, parked, err := g2.Recover(context.Background(), rec); err != nil || settled != 1 || parked != 0 {
			t.Fatalf("recover: settled %d parked %d err %v", settled, parked, err)
		}
		l := g.a.want(g.a.do("GET", "/api/v1/logs", g.org.OwnerToken, nil, nil), 200, "").items()
		if len(l) != 1 {
			t.Fatalf("log rows after the restart: %v", l)
		}
		row := l[0]
		// "Hel" is one token: delivered and billed; the prompt is counted locally.
		if row["status"].(float64) != 500 || row["estimated"] != true || row["completionTokens"].(float64) != 1 ||
			row["promptTokens"].(float64) < 3 || row["stream"] != true || !strings.Contains(row["error"].(string), "mid-stream") {
			t.Errorf("the cut stream's row: %v", row)
		}
		if row["cost"] == "0.00" {
			t.Errorf("the cut stream was not billed: %v", row)
		}
		_, cost := g.usageRows(t)
		g.wantSpent(t, cost)
		g.ledgerEqualsLogs(t)

		// The first process finishing the call after all must not bill it again.
		release()
		_, _ = io.Copy(io.Discard, r.Body)
		waitFor(t, "the first process to settle its call", func() bool { return j.Unsettled() == 0 })
		if rows, after := g.usageRows(t); rows != 1 || after != cost {
			t.Errorf("after the late commit: %d rows costing %d micros, want 1 costing %d", rows, after, cost)
		}
		g.wantSpent(t, cost)
		g.ledgerEqualsLogs(t)
	})
}

// TestGatewayRowTheDatabaseAlwaysRefusesIsSetAside: a call whose row the
// database refuses for good (here a trigger refuses its model; in life, say,
// a counter that would overflow) while it takes every other call neither
// wedges the writer nor holds the journal for ever: the other calls are
// billed, and after five refused rounds the call is set aside in
// rejected.jsonl for an operator.
func TestGatewayRowTheDatabaseAlwaysRefusesIsSetAside(t *testing.T) {
	storetest.Each(t, func(t *testing.T, d store.Dialect) {
		fdb := newFaultyDB(t, d)
		dir := t.TempDir()
		g, j, up := fdb.gateway(dir, journal.Options{})
		a := g.a
		a.want(a.do("POST", "/api/v1/admin/channels", g.op, map[string]any{"name": "poison", "provider": "openai",
			"baseUrl": up.URL + "/v1", "keys": []string{up.key}, "models": []string{"gpt-poison"}}, nil), 201, "")
		a.want(a.do("PUT", "/api/v1/admin/prices/gpt-poison", g.op, map[string]any{"inputPerMTok": "2.00", "outputPerMTok": "8.00"}, nil), 200, "")
		if d == store.Postgres {
			fdb.exec(`CREATE TRIGGER tg_test_poison BEFORE INSERT ON ai_request_logs FOR EACH ROW WHEN (NEW.model = 'gpt-poison') EXECUTE FUNCTION tg_test_fault()`)
		} else {
			fdb.exec(`CREATE TRIGGER tg_test_poison BEFORE INSERT ON ai_request_logs WHEN NEW.model = 'gpt-poison' BEGIN SELECT RAISE(ABORT, 'poison'); END`)
		}

		r := g.post(t, "/v1/chat/completions", g.key, chat("gpt-poison", nil))
		if body := readAll(t, r); r.StatusCode != 200 {
			t.Fatalf("the poisoned call: %d %s", r.StatusCode, body) // its usage is journaled: served
		}
		rejected := filepath.Join(dir, "rejected.jsonl")
		calls := 0
		waitFor(t, "the poisoned call to be set aside", func() bool {
			calls++
			r := g.post(t, "/v1/chat/completions", g.key, chat("gpt-test", nil))
			if body := readAll(t, r); r.StatusCode != 200 {
				t.Fatalf("call %d beside the poisoned one: %d %s", calls, r.StatusCode, body)
			}
			_, err := os.Stat(rejected)
			return err == nil
		})
		waitFor(t, "the calls beside the poisoned one to be billed", func() bool { rows, _ := g.usageRows(t); return rows == int64(calls) })
		raw, err := os.ReadFile(rejected)
		storetest.Must(t, err)
		if !strings.Contains(string(raw), `"m":"gpt-poison"`) || strings.Count(string(raw), "\n") != 1 {
			t.Errorf("rejected.jsonl: %s", raw)
		}
		waitFor(t, "the journal to hold nothing", func() bool { return j.Unsettled() == 0 })
		rows, _ := g.usageRows(t)
		g.wantBalance(t, int(rows)) // every other call billed; the set-aside one not (an operator's to settle)
		g.ledgerEqualsLogs(t)
	})
}
