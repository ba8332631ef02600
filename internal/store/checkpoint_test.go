package store_test

import (
	"context"
	"os"
	"strings"
	"testing"
	"time"

	"gorm.io/gorm"

	"github.com/tenantgate/tenantgate/internal/store"
	"github.com/tenantgate/tenantgate/internal/store/storetest"
)

// Between transactions the store checkpoints SQLite's WAL in the background,
// so the commit that passes SQLite's own threshold (1,000 pages) rarely has
// to: 1 MB written, far below that threshold, still reaches the database file.
func TestSQLiteCheckpointsInTheBackground(t *testing.T) {
	db := storetest.New(t, store.SQLite)
	s, err := store.Open(context.Background(), store.Config{URL: db.URL})
	storetest.Must(t, err)
	defer s.Close()
	path := strings.TrimPrefix(db.URL, "sqlite:")
	size := func() int64 {
		fi, err := os.Stat(path)
		storetest.Must(t, err)
		return fi.Size()
	}
	_, err = s.SQL().Exec("CREATE TABLE ckpt (v BLOB)")
	storetest.Must(t, err)
	before := size()
	for range 50 { // through Tx, as every write of the server is
		storetest.Must(t, s.Tx(context.Background(), func(tx *gorm.DB) error {
			return tx.Exec("INSERT INTO ckpt VALUES (randomblob(20000))").Error
		}))
	}
	// The rows are in the WAL; the database file grows once a checkpoint
	// copies them in (a condition, waited for: the checkpointer runs when the
	// store is idle, which it is once the inserts are done).
	for deadline := time.Now().Add(20 * time.Second); size() < before+50*20000; time.Sleep(50 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatalf("the database file is %d bytes 20 s after 1 MB was written (was %d): no background checkpoint", size(), before)
		}
	}
}
