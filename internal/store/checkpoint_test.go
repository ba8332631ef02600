package store_test

import (
	"context"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/tenantgate/tenantgate/internal/store"
	"github.com/tenantgate/tenantgate/internal/store/storetest"
)

// No commit checkpoints SQLite's WAL on the request path (the automatic
// checkpoint is off on every connection); the store's background
// checkpointer copies the WAL into the database instead.
func TestSQLiteCheckpointsInTheBackground(t *testing.T) {
	db := storetest.New(t, store.SQLite)
	s, err := store.Open(context.Background(), store.Config{URL: db.URL})
	storetest.Must(t, err)
	defer s.Close()
	conn, err := s.SQL().Conn(context.Background())
	storetest.Must(t, err)
	var auto int
	storetest.Must(t, conn.QueryRowContext(context.Background(), "PRAGMA wal_autocheckpoint").Scan(&auto))
	conn.Close()
	if auto != 0 {
		t.Errorf("wal_autocheckpoint = %d on a pool connection, want 0 (commits must not checkpoint)", auto)
	}
	path := strings.TrimPrefix(db.URL, "sqlite:")
	size := func() int64 {
		fi, err := os.Stat(path)
		storetest.Must(t, err)
		return fi.Size()
	}
	_, err = s.SQL().Exec("CREATE TABLE ckpt (v BLOB)")
	storetest.Must(t, err)
	before := size()
	for range 50 {
		_, err = s.SQL().Exec("INSERT INTO ckpt VALUES (randomblob(20000))")
		storetest.Must(t, err)
	}
	// The rows are in the WAL; the database file grows once a checkpoint
	// copies them in (a condition, waited for: the checkpointer runs every second).
	for deadline := time.Now().Add(20 * time.Second); size() < before+50*20000; time.Sleep(50 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatalf("the database file is %d bytes 20 s after 1 MB was written (was %d): no background checkpoint", size(), before)
		}
	}
}
