package loadtest

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os/exec"
	"sort"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/tenantgate/tenantgate/internal/store"
	"github.com/tenantgate/tenantgate/internal/store/storetest"
)

// TestGatewayKill9LosesNoUsage kill -9s the server while concurrent chat
// calls (streaming and not) are in flight, restarts it on the same data, and
// checks the books: every call the client saw complete has its log row, and
// so does every call cut off after its answer began (the usage journal bills
// it at the restart), no call has two, the ledger's usage equals the logs'
// cost, the balance equals top-ups minus usage, and no usage debit lacks its
// log row. Calls cut off before their answer began may or may not have a row.
func TestGatewayKill9LosesNoUsage(t *testing.T) {
	if testing.Short() {
		t.Skip("starts the server binary; not in -short")
	}
	storetest.Each(t, func(t *testing.T, d store.Dialect) {
		const (
			workers   = 24
			loadFor   = 2 * time.Second
			killAfter = time.Second
		)
		up := newMockUpstream(t, 8*time.Millisecond) // a stream takes ~40 ms: many are in flight at the kill
		be := newBackend(t, d)
		srv := startServer(t, be, "first")
		f := setUp(t, srv, up)

		type call struct {
			id      string
			stream  bool
			outcome outcome
			status  int
			detail  string
			start   time.Time
			end     time.Time
		}
		var (
			mu    sync.Mutex
			calls []call
			wg    sync.WaitGroup
		)
		hc := newClient(workers, 5*time.Second)
		ctx, cancel := context.WithTimeout(context.Background(), loadFor)
		defer cancel()
		for w := range workers {
			wg.Add(1)
			go func() {
				defer wg.Done()
				var mine []call
				for n := 0; ctx.Err() == nil; n++ {
					stream := (w+n)%2 == 0
					c := call{id: fmt.Sprintf("k9-%02d-%05d", w, n), stream: stream, start: time.Now()}
					c.outcome, c.status, c.detail = callChat(context.Background(), hc, srv.url+"/v1/chat/completions", f.key, c.id, chatBody(stream), stream)
					c.end = time.Now()
					mine = append(mine, c)
					if c.outcome == refused {
						time.Sleep(10 * time.Millisecond) // the server is gone: do not spin
					}
				}
				mu.Lock()
				calls = append(calls, mine...)
				mu.Unlock()
			}()
		}
		time.Sleep(killAfter)
		killedAt := time.Now()
		if err := syscall.Kill(srv.pid(), syscall.SIGKILL); err != nil {
			t.Fatal(err)
		}
		<-srv.exited
		wg.Wait()
		var ee *exec.ExitError
		if !errors.As(srv.waitErr, &ee) || ee.Sys().(syscall.WaitStatus).Signal() != syscall.SIGKILL {
			t.Fatalf("the server did not die of SIGKILL: %v", srv.waitErr)
		}

		// Restart on the same data and make one more call through it.
		srv2 := startServer(t, be, "second")
		after := call{id: "k9-after-restart", start: time.Now()}
		after.outcome, after.status, after.detail = callChat(context.Background(), hc, srv2.url+"/v1/chat/completions", f.key, after.id, chatBody(false), false)
		after.end = time.Now()
		if after.outcome != completed {
			t.Errorf("the restarted server did not serve a chat call: %d %s", after.status, after.detail)
		}
		calls = append(calls, after)

		// What the client saw.
		var done, doneBeforeKill, inFlight, refusedN, broken int
		unexpected := map[string]int{}
		for _, c := range calls {
			switch c.outcome {
			case completed:
				done++
				if c.end.Before(killedAt) {
					doneBeforeKill++
				}
			case refused:
				refusedN++
			case brokenOff:
				broken++
			}
			if c.start.Before(killedAt) && !c.end.Before(killedAt) && c.outcome != completed {
				inFlight++
			}
			if c.outcome != completed && c.end.Before(killedAt) {
				unexpected[fmt.Sprintf("outcome %d status %d: %s", c.outcome, c.status, c.detail)]++
			}
		}
		for msg, n := range unexpected {
			t.Errorf("GATEWAY ERROR UNDER LOAD before the kill (%d×): %s", n, msg)
		}
		if doneBeforeKill == 0 {
			t.Fatal("no call completed before the kill: the load did not run")
		}

		// What the database says after the restart.
		k := readBooks(t, be.open(t), f.tenantID)
		var lost, cutUnbilled []string
		var rowsForCut, rowsForCut200 int
		for _, c := range calls {
			n := k.requestIDs[c.id]
			switch {
			case c.outcome == completed && n == 0:
				lost = append(lost, c.id)
			case c.outcome == completed && k.rowStatus[c.id] != 200:
				t.Errorf("call %s completed for the client but its log row has status %d", c.id, k.rowStatus[c.id])
			case c.outcome == brokenOff && n == 0:
				// Its headers (and maybe some of its answer) reached the
				// client: the usage journal's start record was written first.
				cutUnbilled = append(cutUnbilled, c.id)
			case c.outcome != completed && n > 0:
				rowsForCut++
				if k.rowStatus[c.id] == 200 {
					rowsForCut200++
				}
			}
		}
		if len(lost) > 0 {
			sort.Strings(lost)
			t.Errorf("LOST USAGE: %d calls completed for the client but have no log row, e.g. %s", len(lost), strings.Join(lost[:min(5, len(lost))], ", "))
		}
		if len(cutUnbilled) > 0 {
			sort.Strings(cutUnbilled)
			t.Errorf("DELIVERED BUT UNBILLED: %d calls cut off after their answer began have no log row, e.g. %s", len(cutUnbilled),
				strings.Join(cutUnbilled[:min(5, len(cutUnbilled))], ", "))
		}
		var strays int
		sent := map[string]bool{}
		for _, c := range calls {
			sent[c.id] = true
		}
		for rid := range k.requestIDs {
			if !sent[rid] {
				strays++
			}
		}
		if strays > 0 {
			t.Errorf("%d log rows carry a request id no client sent", strays)
		}
		checkBooks(t, k, apiBalance(t, srv2))

		t.Logf("%s: %d calls in %v by %d workers (half streaming), SIGKILL at +%v", d, len(calls), loadFor, workers, killAfter)
		t.Logf("client: %d completed (%d before the kill), %d in flight at the kill and cut off, %d broken off after headers, %d refused (server down)",
			done, doneBeforeKill, inFlight, broken, refusedN)
		t.Logf("database after restart: %d log rows (%d with status 200), %d usage ledger entries; ledger usage %d micros = log cost %d micros; "+
			"balance %d = top-up %d − usage %d; metered tokens %d = log tokens %d", k.logs, k.ok200, k.usageEntries, k.usageDebits, k.logCost,
			k.balance, k.topUps, k.usageDebits, k.meteredTokens, k.logTokens)
		t.Logf("calls cut off by the kill that nevertheless have a row: %d (%d of them status 200, committed before the client read the end); lost: %d",
			rowsForCut, rowsForCut200, len(lost))
		if inFlight == 0 {
			t.Logf("note: no call was in flight at the kill this time, so the run proved less than it could")
		}
	})
}

// TestGatewayKill9BillsCutStreams kill -9s the server while slow streams
// (a content chunk every 150 ms, longer than the journal's 200 ms progress
// interval) are in flight, restarts it, and checks that every stream the
// kill cut off after its answer began is billed for what it delivered: one
// row, marked estimated, with no more completion tokens than the client
// received, and with some for each stream that had received its whole text
// more than one progress interval before the kill. The books balance as in
// TestGatewayKill9LosesNoUsage.
func TestGatewayKill9BillsCutStreams(t *testing.T) {
	if testing.Short() {
		t.Skip("starts the server binary; not in -short")
	}
	storetest.Each(t, func(t *testing.T, d store.Dialect) {
		const (
			workers    = 12
			chunkDelay = 150 * time.Millisecond
			killAfter  = 1500 * time.Millisecond
		)
		up := newMockUpstream(t, chunkDelay) // a stream takes ~600 ms
		be := newBackend(t, d)
		srv := startServer(t, be, "first")
		f := setUp(t, srv, up)

		type call struct {
			id      string
			outcome outcome
			raw     []byte
		}
		var (
			mu    sync.Mutex
			calls []call
			wg    sync.WaitGroup
		)
		hc := newClient(workers, 10*time.Second)
		for w := range workers {
			wg.Add(1)
			go func() {
				defer wg.Done()
				for n := 0; ; n++ {
					c := call{id: fmt.Sprintf("cut-%02d-%05d", w, n)}
					c.outcome, _, _, c.raw = callChatBody(context.Background(), hc, srv.url+"/v1/chat/completions", f.key, c.id, chatBody(true), true)
					mu.Lock()
					calls = append(calls, c)
					mu.Unlock()
					if c.outcome != completed {
						return // the server is gone
					}
				}
			}()
		}
		time.Sleep(killAfter)
		if err := syscall.Kill(srv.pid(), syscall.SIGKILL); err != nil {
			t.Fatal(err)
		}
		<-srv.exited
		wg.Wait()

		srv2 := startServer(t, be, "second")
		k := readBooks(t, be.open(t), f.tenantID)
		var cut, cutWhole int
		for _, c := range calls {
			if c.outcome != brokenOff {
				continue
			}
			cut++
			received := int64(bytes.Count(c.raw, []byte(`"delta":{"content"`)))
			whole := bytes.Contains(c.raw, []byte(`"finish_reason":"stop"`)) // all text, and 150 ms later the stop chunk
			if whole {
				cutWhole++
			}
			switch n := k.requestIDs[c.id]; {
			case n != 1:
				t.Errorf("DELIVERED BUT UNBILLED: stream %s was cut after %d content chunks and has %d log rows", c.id, received, n)
			case k.rowStatus[c.id] == 200:
				// committed before the kill: exact usage
			case !k.rowEstimated[c.id] || k.rowCompletion[c.id] > received:
				t.Errorf("stream %s: received %d content chunks, billed %d completion tokens (estimated %v): never more than delivered",
					c.id, received, k.rowCompletion[c.id], k.rowEstimated[c.id])
			case whole && k.rowCompletion[c.id] == 0:
				t.Errorf("stream %s received its whole text a progress interval before it was cut, but is billed no completion tokens", c.id)
			}
		}
		if cut == 0 {
			t.Fatal("the kill cut no stream after its answer began: the run proved nothing")
		}
		checkBooks(t, k, apiBalance(t, srv2))
		t.Logf("%s: %d streams, %d cut after their answer began (%d of them after all their text), all billed; %d log rows", d, len(calls), cut, cutWhole, k.logs)
	})
}
