// Package journal is the gateway's local usage journal: an append-only log
// of AI calls in segment files under one directory, so that a call's usage
// survives what the database does not (an outage, a full disk) and what the
// process does not (kill -9).
//
// Every call is written as a start record (before its stream's first byte
// reaches the client), progress records while it streams, and a final record
// with its exact usage. Each record reaches the file with one write(2) as it
// is appended, so it survives the death of the process at once; fsync runs
// in groups (every SyncEvery, and for whoever calls Sync, all waiters sharing
// one fsync), so an operating-system crash can lose what was appended since
// the last fsync. Once the database holds a call (Settled), the journal
// forgets it: a segment is deleted when it and every older segment hold no
// unsettled call.
//
// Records are framed as [length u32][crc32c u32][kind u8][id length u8][id]
// [data]; a frame that is cut short or fails its checksum ends its segment
// (a torn write at a crash).
package journal

import (
	"encoding/binary"
	"errors"
	"fmt"
	"hash/crc32"
	"io"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"
)

// Kind is a record's kind.
type Kind uint8

// The record kinds.
const (
	Start    Kind = 1 // a call began delivering to its client
	Progress Kind = 2 // what a call has delivered so far
	Final    Kind = 3 // a call's exact usage
	probe    Kind = 4 // written to find out whether the journal can take writes again
)

// Options configure a journal.
type Options struct {
	// SegmentBytes is the size after which a new segment begins (default 8 MiB).
	SegmentBytes int64
	// MaxBytes bounds the journal's total size (default 1 GiB): past it, the
	// journal refuses appends as if the disk were full.
	MaxBytes int64
	// SyncEvery is how often appended records are fsynced (default 100 ms).
	SyncEvery time.Duration
}

// ErrFull is returned when the journal holds MaxBytes.
var ErrFull = errors.New("the usage journal is full")

// Journal is an open journal. It is safe for concurrent use.
type Journal struct {
	dir  string
	opts Options
	lock *os.File // flock: one process per journal

	mu      sync.Mutex
	segs    []*segment // oldest first; the last is the one appended to
	f       *os.File   // the last segment's file
	total   int64      // bytes in every segment
	buf     []byte
	written uint64 // appends that reached the file
	err     error  // the last append's error (nil: healthy)
	rotate  bool   // the current file may end in a torn frame: begin a new one
	closed  bool

	syncMu sync.Mutex // held by the one fsync in progress; waiters queue here
	synced uint64

	stop      chan struct{}
	done      chan struct{}
	closeOnce sync.Once
}

type segment struct {
	n    uint64
	path string
	size int64
	open int // calls whose first record is here and that are not settled
}

// Call is one call's place in the journal.
type Call struct {
	seg     *segment
	settled bool
}

// Recovered is a call found in the journal at Open that was never settled:
// its records' data (nil when absent), newest progress only.
type Recovered struct {
	ID                     string
	Start, Progress, Final []byte
	Call                   *Call
}

const (
	frameHead = 10
	maxFrame  = 4 << 20
	segPrefix = "usage-"
	segSuffix = ".journal"
)

var crcTable = crc32.MakeTable(crc32.Castagnoli)

// Open opens (creating) the journal in dir and returns the calls it holds
// that were never settled, in the order they began. Settle them (Settled)
// once the database has them; their segments go when every call in them is.
func Open(dir string, o Options) (*Journal, []*Recovered, error) {
	if o.SegmentBytes <= 0 {
		o.SegmentBytes = 8 << 20
	}
	if o.MaxBytes <= 0 {
		o.MaxBytes = 1 << 30
	}
	if o.SyncEvery <= 0 {
		o.SyncEvery = 100 * time.Millisecond
	}
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, nil, fmt.Errorf("create the usage journal directory %s: %w", dir, err)
	}
	lock, err := os.OpenFile(filepath.Join(dir, "LOCK"), os.O_CREATE|os.O_RDWR, 0o600)
	if err != nil {
		return nil, nil, fmt.Errorf("open the usage journal %s: %w", dir, err)
	}
	if err := syscall.Flock(int(lock.Fd()), syscall.LOCK_EX|syscall.LOCK_NB); err != nil {
		lock.Close()
		return nil, nil, fmt.Errorf("the usage journal %s is in use by another process (each server needs its own data directory): %w", dir, err)
	}
	j := &Journal{dir: dir, opts: o, lock: lock, stop: make(chan struct{}), done: make(chan struct{})}
	rec, err := j.load()
	if err != nil {
		lock.Close()
		return nil, nil, err
	}
	if err := j.newSegment(); err != nil {
		lock.Close()
		return nil, nil, err
	}
	j.mu.Lock()
	j.collect()
	j.mu.Unlock()
	go j.syncLoop()
	return j, rec, nil
}

// load reads every segment, oldest first.
func (j *Journal) load() ([]*Recovered, error) {
	names, err := os.ReadDir(j.dir)
	if err != nil {
		return nil, fmt.Errorf("read the usage journal %s: %w", j.dir, err)
	}
	for _, e := range names {
		num, ok := strings.CutPrefix(e.Name(), segPrefix)
		if !ok {
			continue
		}
		num, ok = strings.CutSuffix(num, segSuffix)
		n, err := strconv.ParseUint(num, 10, 64)
		if !ok || err != nil {
			continue
		}
		j.segs = append(j.segs, &segment{n: n, path: filepath.Join(j.dir, e.Name())})
	}
	slices.SortFunc(j.segs, func(a, b *segment) int { return cmpU(a.n, b.n) })
	byID := map[string]*Recovered{}
	var order []*Recovered
	for _, s := range j.segs {
		raw, err := os.ReadFile(s.path)
		if err != nil {
			return nil, fmt.Errorf("read the usage journal segment %s: %w", s.path, err)
		}
		s.size = int64(len(raw))
		j.total += s.size
		for off := 0; ; {
			kind, id, data, n := parseFrame(raw[off:])
			if n == 0 {
				break // the end, or a torn write at a crash
			}
			off += n
			if kind == probe {
				continue
			}
			r := byID[id]
			if r == nil {
				r = &Recovered{ID: id, Call: &Call{seg: s}}
				s.open++
				byID[id] = r
				order = append(order, r)
			}
			data = slices.Clone(data)
			switch kind {
			case Start:
				r.Start = data
			case Progress:
				r.Progress = data
			case Final:
				r.Final = data
			}
		}
	}
	return order, nil
}

func cmpU(a, b uint64) int {
	switch {
	case a < b:
		return -1
	case a > b:
		return 1
	}
	return 0
}

// parseFrame reads one frame; n is 0 when there is none (or it is torn).
func parseFrame(b []byte) (kind Kind, id string, data []byte, n int) {
	if len(b) < frameHead {
		return 0, "", nil, 0
	}
	size := int(binary.LittleEndian.Uint32(b))
	if size < 2 || size > maxFrame || len(b) < 8+size {
		return 0, "", nil, 0
	}
	body := b[8 : 8+size]
	if crc32.Checksum(body, crcTable) != binary.LittleEndian.Uint32(b[4:]) {
		return 0, "", nil, 0
	}
	idLen := int(body[1])
	if len(body) < 2+idLen {
		return 0, "", nil, 0
	}
	return Kind(body[0]), string(body[2 : 2+idLen]), body[2+idLen:], 8 + size
}

// newSegment starts the next segment file. Call with mu held (or before the
// journal is shared).
func (j *Journal) newSegment() error {
	var n uint64 = 1
	if len(j.segs) > 0 {
		n = j.segs[len(j.segs)-1].n + 1
	}
	path := filepath.Join(j.dir, fmt.Sprintf("%s%020d%s", segPrefix, n, segSuffix))
	f, err := os.OpenFile(path, os.O_CREATE|os.O_EXCL|os.O_WRONLY|os.O_APPEND, 0o600)
	if err != nil {
		return fmt.Errorf("create a usage journal segment: %w", err)
	}
	if j.f != nil {
		// The old file is fsynced before it is closed, so a Sync that took
		// it before the rotation loses nothing when it finds it closed.
		_ = j.f.Sync()
		_ = j.f.Close()
	}
	syncDir(j.dir)
	j.f = f
	j.segs = append(j.segs, &segment{n: n, path: path})
	j.rotate = false
	return nil
}

func syncDir(dir string) {
	if d, err := os.Open(dir); err == nil {
		_ = d.Sync()
		_ = d.Close()
	}
}

// Begin appends the first record of the call id (Start, or Final for a call
// that delivered nothing before it finished).
func (j *Journal) Begin(id string, kind Kind, data []byte) (*Call, error) {
	j.mu.Lock()
	defer j.mu.Unlock()
	if err := j.appendLocked(kind, id, data); err != nil {
		return nil, err
	}
	s := j.segs[len(j.segs)-1]
	s.open++
	return &Call{seg: s}, nil
}

// Append appends another record of the call id, begun with Begin.
func (j *Journal) Append(id string, kind Kind, data []byte) error {
	j.mu.Lock()
	defer j.mu.Unlock()
	return j.appendLocked(kind, id, data)
}

func (j *Journal) appendLocked(kind Kind, id string, data []byte) error {
	if j.closed {
		return errors.New("the usage journal is closed")
	}
	if len(id) > 255 || len(data)+2+len(id) > maxFrame {
		return fmt.Errorf("a usage journal record is too large (%d bytes)", len(data))
	}
	size := 2 + len(id) + len(data)
	if j.total+int64(8+size) > j.opts.MaxBytes {
		j.err = ErrFull
		return ErrFull
	}
	if j.rotate || j.segs[len(j.segs)-1].size >= j.opts.SegmentBytes {
		if err := j.newSegment(); err != nil {
			j.err = err
			return err
		}
	}
	b := j.buf[:0]
	b = binary.LittleEndian.AppendUint32(b, uint32(size))
	b = append(b, 0, 0, 0, 0, byte(kind), byte(len(id)))
	b = append(b, id...)
	b = append(b, data...)
	binary.LittleEndian.PutUint32(b[4:], crc32.Checksum(b[8:], crcTable))
	j.buf = b
	s := j.segs[len(j.segs)-1]
	n, err := j.f.Write(b)
	if err != nil {
		// A partial frame must not stay in front of later ones: cut it off,
		// or start a new segment with the next append.
		if n > 0 {
			if terr := j.f.Truncate(s.size); terr != nil {
				j.rotate = true
			}
		}
		j.err = fmt.Errorf("write the usage journal: %w", err)
		return j.err
	}
	s.size += int64(n)
	j.total += int64(n)
	j.written++
	j.err = nil
	return nil
}

// Err is nil when the last append succeeded, else why it failed: the journal
// cannot take writes until an append (or Probe) succeeds again.
func (j *Journal) Err() error {
	j.mu.Lock()
	defer j.mu.Unlock()
	return j.err
}

// Probe tries a small write and an fsync, so a journal that failed can be
// found healthy again without a call risking it.
func (j *Journal) Probe() error {
	j.mu.Lock()
	// Room for a few calls, not just the probe's own few bytes.
	if room := min(16<<10, j.opts.MaxBytes/4); j.total+room > j.opts.MaxBytes {
		j.err = ErrFull
		j.mu.Unlock()
		return ErrFull
	}
	err := j.appendLocked(probe, "", nil)
	j.mu.Unlock()
	if err != nil {
		return err
	}
	return j.Sync()
}

// Sync returns once every record appended before it was called is fsynced.
// Concurrent callers share one fsync.
func (j *Journal) Sync() error {
	j.mu.Lock()
	target := j.written
	j.mu.Unlock()
	j.syncMu.Lock()
	defer j.syncMu.Unlock()
	if j.synced >= target {
		return nil
	}
	j.mu.Lock()
	target, f := j.written, j.f
	j.mu.Unlock()
	err := f.Sync()
	if errors.Is(err, os.ErrClosed) {
		err = nil // rotated meanwhile: fsynced before it was closed
	}
	if err != nil {
		j.mu.Lock()
		j.err = fmt.Errorf("fsync the usage journal: %w", err)
		j.mu.Unlock()
		return err
	}
	j.synced = target
	return nil
}

func (j *Journal) syncLoop() {
	defer close(j.done)
	t := time.NewTicker(j.opts.SyncEvery)
	defer t.Stop()
	for {
		select {
		case <-j.stop:
			return
		case <-t.C:
			_ = j.Sync()
		}
	}
}

// Settled tells the journal the database holds the call: it is forgotten,
// and segments that hold nothing unsettled any more are deleted.
func (j *Journal) Settled(c *Call) {
	if c == nil {
		return
	}
	j.mu.Lock()
	defer j.mu.Unlock()
	if c.settled {
		return
	}
	c.settled = true
	c.seg.open--
	j.collect()
}

// collect deletes the oldest segments while they hold no unsettled call. The
// segment being appended to is started afresh when it is settled and large.
func (j *Journal) collect() {
	if cur := j.segs[len(j.segs)-1]; cur.open == 0 && cur.size >= 1<<20 && !j.closed {
		_ = j.newSegment()
	}
	for len(j.segs) > 1 && j.segs[0].open == 0 {
		if err := os.Remove(j.segs[0].path); err != nil && !errors.Is(err, os.ErrNotExist) {
			return
		}
		j.total -= j.segs[0].size
		j.segs = j.segs[1:]
	}
}

// Unsettled counts the calls the journal holds.
func (j *Journal) Unsettled() int {
	j.mu.Lock()
	defer j.mu.Unlock()
	n := 0
	for _, s := range j.segs {
		n += s.open
	}
	return n
}

// Dir is the journal's directory.
func (j *Journal) Dir() string { return j.dir }

// Reject keeps a call the database refuses for good in rejected.jsonl (one
// line of data) and settles it, so it no longer holds its segment.
func (j *Journal) Reject(c *Call, line []byte) error {
	f, err := os.OpenFile(filepath.Join(j.dir, "rejected.jsonl"), os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o600)
	if err != nil {
		return err
	}
	if _, err := f.Write(append(slices.Clone(line), '\n')); err != nil {
		f.Close()
		return err
	}
	if err := f.Sync(); err != nil {
		f.Close()
		return err
	}
	if err := f.Close(); err != nil {
		return err
	}
	j.Settled(c)
	return nil
}

// Close fsyncs and closes the journal; segments holding unsettled calls stay
// for the next Open. If every call is settled, nothing stays.
func (j *Journal) Close() error {
	j.closeOnce.Do(func() { close(j.stop) })
	<-j.done
	err := j.Sync()
	j.mu.Lock()
	defer j.mu.Unlock()
	if j.closed {
		return nil
	}
	j.closed = true
	if cerr := j.f.Close(); err == nil {
		err = cerr
	}
	if len(j.segs) > 0 && j.segs[len(j.segs)-1].open == 0 {
		j.collect()
		if last := j.segs[len(j.segs)-1]; len(j.segs) == 1 && last.open == 0 {
			_ = os.Remove(last.path)
		}
	}
	_ = j.lock.Close()
	return err
}

var _ io.Closer = (*Journal)(nil)
