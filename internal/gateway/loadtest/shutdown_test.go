package loadtest

import (
	"bufio"
	"bytes"
	"fmt"
	"io"
	"net/http"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/tenantgate/tenantgate/internal/store"
	"github.com/tenantgate/tenantgate/internal/store/storetest"
)

// TestShutdownEndsStreamsAndBillsThem sends SIGTERM while streams are open
// and their upstream has gone quiet: after the grace period each stream ends
// with an error event (never a bare EOF), is billed for what it delivered,
// and the process exits 0.
func TestShutdownEndsStreamsAndBillsThem(t *testing.T) {
	if testing.Short() {
		t.Skip("starts the server binary; not in -short")
	}
	storetest.Each(t, func(t *testing.T, d store.Dialect) {
		const streams = 6
		up := newMockUpstream(t, time.Hour) // the first chunk, then silence until the call is cut
		be := newBackend(t, d)
		srv := startServer(t, be, "first", "TENANTGATE_SHUTDOWN_GRACE=1s")
		f := setUp(t, srv, up)

		type result struct {
			id, rest string
			err      error
		}
		results := make([]result, streams)
		var started, wg sync.WaitGroup
		hc := &http.Client{Timeout: 60 * time.Second}
		for i := range streams {
			started.Add(1)
			wg.Add(1)
			go func() {
				defer wg.Done()
				res := &results[i]
				res.id = fmt.Sprintf("term-%02d", i)
				req, _ := http.NewRequest(http.MethodPost, srv.url+"/v1/chat/completions", bytes.NewReader(chatBody(true)))
				req.Header.Set("Authorization", "Bearer "+f.key)
				req.Header.Set("X-Request-ID", res.id)
				resp, err := hc.Do(req)
				if err != nil {
					res.err = err
					started.Done()
					return
				}
				defer resp.Body.Close()
				br := bufio.NewReader(resp.Body)
				first, err := br.ReadString('\n')
				started.Done()
				if err != nil || !strings.Contains(first, "Hel") {
					res.err = fmt.Errorf("first chunk %q: %v", first, err)
					return
				}
				rest, err := io.ReadAll(br)
				res.rest, res.err = string(rest), err
			}()
		}
		started.Wait() // every stream has delivered its first chunk and waits for more
		if err := syscall.Kill(srv.pid(), syscall.SIGTERM); err != nil {
			t.Fatal(err)
		}
		select {
		case <-srv.exited:
		case <-time.After(30 * time.Second):
			t.Fatalf("the server did not exit within 30 s of SIGTERM (grace 1 s):\n%s", srv.logTail(20))
		}
		wg.Wait()
		if srv.waitErr != nil {
			t.Errorf("the server's exit after SIGTERM: %v, want status 0:\n%s", srv.waitErr, srv.logTail(20))
		}
		for _, r := range results {
			if r.err != nil {
				t.Errorf("stream %s: %v", r.id, r.err)
				continue
			}
			if !strings.Contains(r.rest, `"code":"server_shutdown"`) || strings.Contains(r.rest, "[DONE]") {
				t.Errorf("stream %s ended without a shutdown error event: %q", r.id, r.rest)
			}
		}

		srv2 := startServer(t, be, "second")
		k := readBooks(t, be.open(t), f.tenantID)
		for _, r := range results {
			if k.requestIDs[r.id] != 1 || k.rowStatus[r.id] != http.StatusServiceUnavailable {
				t.Errorf("stream %s: %d log rows, status %d; want one row with 503", r.id, k.requestIDs[r.id], k.rowStatus[r.id])
			}
		}
		if k.logCost <= 0 || k.logTokens <= 0 {
			t.Errorf("the cut streams were not billed for what they delivered: cost %d micros, %d tokens", k.logCost, k.logTokens)
		}
		checkBooks(t, k, apiBalance(t, srv2))
	})
}
