package store

import (
	"context"
	"os"
	"sync"
	"sync/atomic"
	"time"
)

// SQLite checkpoints its WAL when a commit passes 1,000 pages (about 4 MB),
// on that commit's request: about 20 ms for one call in ~44. The store also
// checkpoints in the background whenever the database has been idle for a
// moment, so at low and moderate load the WAL rarely reaches that threshold
// and no request pays for a checkpoint; under sustained load SQLite's own
// threshold still bounds the WAL. (A background checkpointer alone, with the
// automatic one off, was measured worse at 500 calls/s: it competes with the
// commits for the two cores instead of running between them.)
const (
	checkpointTick = 20 * time.Millisecond // how often the checkpointer looks
	checkpointIdle = 2 * time.Millisecond  // how long no transaction may have begun
	// WALLimit is the WAL file size past which a checkpoint also truncates
	// it, so a WAL that grew under load is given back.
	WALLimit = 64 << 20
)

// checkpointer runs until stop is closed.
type checkpointer struct {
	stop     chan struct{}
	done     sync.WaitGroup
	lastTx   atomic.Int64 // when a transaction last began (unix ns)
	lastCkpt atomic.Int64 // when the checkpointer last checkpointed (unix ns)
}

// touch records that a transaction begins.
func (c *checkpointer) touch() {
	if c != nil {
		c.lastTx.Store(time.Now().UnixNano())
	}
}

func (s *Store) startCheckpointer(walPath string) {
	c := &checkpointer{stop: make(chan struct{})}
	s.checkpoints = c
	c.done.Add(1)
	go func() {
		defer c.done.Done()
		t := time.NewTicker(checkpointTick)
		defer t.Stop()
		for {
			select {
			case <-c.stop:
				return
			case <-t.C:
				last := c.lastTx.Load()
				if last <= c.lastCkpt.Load() || time.Since(time.Unix(0, last)) < checkpointIdle {
					continue // nothing written since the last checkpoint, or busy right now
				}
				mode := "PASSIVE"
				if fi, err := os.Stat(walPath); err == nil && fi.Size() > WALLimit {
					mode = "TRUNCATE"
				}
				c.lastCkpt.Store(time.Now().UnixNano())
				ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
				if _, err := s.sqlDB.ExecContext(ctx, "PRAGMA wal_checkpoint("+mode+")"); err != nil {
					s.log.Warn("the SQLite checkpoint failed; will retry", "mode", mode, "err", err)
				}
				cancel()
			}
		}
	}()
}

func (c *checkpointer) close() {
	if c != nil {
		close(c.stop)
		c.done.Wait()
	}
}
