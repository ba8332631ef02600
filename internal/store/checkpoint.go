package store

import (
	"context"
	"os"
	"sync"
	"time"
)

// SQLite's WAL is checkpointed here, in the background, not by the commit
// that happens to pass the WAL's automatic threshold (wal_autocheckpoint is
// 0 on every connection): that commit used to copy the WAL into the database
// on the request path, about 20 ms for one call in every ~44.
const (
	// CheckpointEvery is how often a passive checkpoint runs: it copies what
	// it can without waiting for readers or writers, so no request waits for it.
	CheckpointEvery = time.Second
	// WALLimit is the WAL size past which the checkpointer truncates it
	// (waiting briefly for readers), so a WAL that passive checkpoints could
	// not reset does not grow without bound.
	WALLimit = 64 << 20
)

// checkpointer runs until stop is closed.
type checkpointer struct {
	stop chan struct{}
	done sync.WaitGroup
}

func (s *Store) startCheckpointer(walPath string) {
	c := &checkpointer{stop: make(chan struct{})}
	s.checkpoints = c
	c.done.Add(1)
	go func() {
		defer c.done.Done()
		t := time.NewTicker(CheckpointEvery)
		defer t.Stop()
		for {
			select {
			case <-c.stop:
				return
			case <-t.C:
				mode := "PASSIVE"
				if fi, err := os.Stat(walPath); err == nil && fi.Size() > WALLimit {
					mode = "TRUNCATE"
				}
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
