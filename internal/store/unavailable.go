package store

import (
	"context"
	"database/sql/driver"
	"errors"
	"io"
	"net"
	"sync/atomic"
	"time"

	"github.com/jackc/pgx/v5/pgconn"
)

// IsUnavailable reports whether err says the database cannot serve right now
// (unreachable, shutting down, out of disk or connections, read-only, an I/O
// error, locked past the busy timeout) rather than that the request or the
// code is wrong. Such failures are answered 503 with Retry-After: retrying
// later can succeed.
func IsUnavailable(err error) bool {
	if err == nil || errors.Is(err, context.Canceled) {
		return false
	}
	var pg *pgconn.PgError
	if errors.As(err, &pg) {
		switch {
		case len(pg.Code) == 5 && (pg.Code[:2] == "08" || pg.Code[:2] == "53" || pg.Code[:2] == "58"):
			return true // connection exception, insufficient resources (disk full, memory, connections), system error
		case pg.Code == "57P01" || pg.Code == "57P02" || pg.Code == "57P03" || pg.Code == "25006":
			return true // shutting down, crashed, not accepting connections yet; a read-only server
		}
		return false
	}
	var connect *pgconn.ConnectError
	var netErr net.Error
	if errors.As(err, &connect) || errors.As(err, &netErr) || errors.Is(err, driver.ErrBadConn) ||
		errors.Is(err, io.ErrUnexpectedEOF) || errors.Is(err, context.DeadlineExceeded) || pgconn.SafeToRetry(err) {
		return true
	}
	var lite interface{ Code() int }
	if errors.As(err, &lite) {
		switch lite.Code() & 0xff { // the primary result code
		case 5, 6, 8, 10, 13, 14: // BUSY, LOCKED, READONLY, IOERR, FULL, CANTOPEN
			return true
		}
	}
	return false
}

// availability remembers when a transaction last failed because the
// database was unavailable, for readiness.
type availability struct {
	failedAt atomic.Int64 // unix ns
}

func (a *availability) note(err error) {
	if IsUnavailable(err) {
		a.failedAt.Store(time.Now().UnixNano())
	}
}

// UnavailableWithin is how long after a transaction failed for the database
// being unavailable the store reports itself unavailable (readiness): long
// enough that a load balancer notices, short enough to come back by itself.
const UnavailableWithin = 10 * time.Second

// Available reports whether no transaction failed for the database being
// unavailable within UnavailableWithin (reads may still work while writes
// fail: a full disk).
func (s *Store) Available() bool {
	at := s.avail.failedAt.Load()
	return at == 0 || time.Since(time.Unix(0, at)) > UnavailableWithin
}
