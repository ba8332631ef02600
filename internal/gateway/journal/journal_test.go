package journal

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"

	"github.com/google/go-cmp/cmp"
)

func segments(t *testing.T, dir string) []string {
	t.Helper()
	m, err := filepath.Glob(filepath.Join(dir, segPrefix+"*"+segSuffix))
	if err != nil {
		t.Fatal(err)
	}
	return m
}

type got struct{ ID, Start, Progress, Final string }

func summary(rs []*Recovered) []got {
	var out []got
	for _, r := range rs {
		out = append(out, got{r.ID, string(r.Start), string(r.Progress), string(r.Final)})
	}
	return out
}

// TestReopenReturnsUnsettledCalls: what a process appended and never settled
// is there for the next one, as it was at the moment the process stopped
// (no Close: as after kill -9), and settled calls are not.
func TestReopenReturnsUnsettledCalls(t *testing.T) {
	dir := t.TempDir()
	j, rec, err := Open(dir, Options{})
	if err != nil {
		t.Fatal(err)
	}
	if len(rec) != 0 {
		t.Fatalf("a new journal recovered %v", rec)
	}
	a, err := j.Begin("a", Start, []byte(`start-a`))
	if err != nil {
		t.Fatal(err)
	}
	must(t, j.Append("a", Progress, []byte(`p1`)))
	must(t, j.Append("a", Progress, []byte(`p2`)))
	b, err := j.Begin("b", Final, []byte(`final-b`))
	if err != nil {
		t.Fatal(err)
	}
	c, err := j.Begin("c", Start, []byte(`start-c`))
	if err != nil {
		t.Fatal(err)
	}
	must(t, j.Append("c", Final, []byte(`final-c`)))
	j.Settled(b)
	_, _ = a, c
	// Simulate the death of the process: the lock goes with it, nothing else happens.
	j.closeOnce.Do(func() { close(j.stop) })
	<-j.done
	j.lock.Close()

	j2, rec, err := Open(dir, Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer j2.Close()
	want := []got{{"a", "start-a", "p2", ""}, {"b", "", "", "final-b"}, {"c", "start-c", "", "final-c"}}
	// b was settled, but its segment still held a and c: a journal only
	// forgets whole segments, and the database skips what it holds already.
	if diff := cmp.Diff(summary(rec), want); diff != "" {
		t.Errorf("recovered (-got +want):\n%s", diff)
	}
	for _, r := range rec {
		j2.Settled(r.Call)
	}
	if n := j2.Unsettled(); n != 0 {
		t.Errorf("%d unsettled after settling everything", n)
	}
	if segs := segments(t, dir); len(segs) != 1 {
		t.Errorf("segments after settling everything: %v", segs)
	}
}

// TestTornTailIsIgnored: a frame cut short by a crash ends the segment; the
// records before it are read.
func TestTornTailIsIgnored(t *testing.T) {
	for _, tc := range []struct {
		name  string
		spoil func([]byte) []byte
	}{
		{"torn", func(b []byte) []byte { return b[:len(b)-3] }},
		{"corrupt", func(b []byte) []byte { b[len(b)-1] ^= 0xff; return b }},
	} {
		t.Run(tc.name, func(t *testing.T) {
			dir := t.TempDir()
			j, _, err := Open(dir, Options{})
			must(t, err)
			_, err = j.Begin("a", Start, []byte(`start-a`))
			must(t, err)
			_, err = j.Begin("b", Start, []byte(`start-b`))
			must(t, err)
			must(t, j.Close())
			segs := segments(t, dir)
			if len(segs) != 1 {
				t.Fatalf("segments %v", segs)
			}
			raw, err := os.ReadFile(segs[0])
			must(t, err)
			must(t, os.WriteFile(segs[0], tc.spoil(raw), 0o600)) // b's frame
			j, rec, err := Open(dir, Options{})
			must(t, err)
			if diff := cmp.Diff(summary(rec), []got{{"a", "start-a", "", ""}}); diff != "" {
				t.Errorf("recovered (-got +want):\n%s", diff)
			}
			// Appends after reopening land in a new segment, never behind the spoilt frame.
			_, err = j.Begin("c", Start, []byte(`start-c`))
			must(t, err)
			j.closeOnce.Do(func() { close(j.stop) })
			<-j.done
			j.lock.Close()
			j, rec, err = Open(dir, Options{})
			must(t, err)
			defer j.Close()
			if diff := cmp.Diff(summary(rec), []got{{"a", "start-a", "", ""}, {"c", "start-c", "", ""}}); diff != "" {
				t.Errorf("reopened: recovered (-got +want):\n%s", diff)
			}
		})
	}
}

// TestSegmentsGoOnceSettled: old segments are deleted when every call that
// began in them (and in every older one) is settled, not before.
func TestSegmentsGoOnceSettled(t *testing.T) {
	dir := t.TempDir()
	j, _, err := Open(dir, Options{SegmentBytes: 100})
	must(t, err)
	defer j.Close()
	long, err := j.Begin("long", Start, []byte(strings.Repeat("s", 100))) // fills the first segment
	must(t, err)
	var calls []*Call
	for i := range 5 {
		c, err := j.Begin(string(rune('a'+i)), Final, []byte(strings.Repeat("f", 100)))
		must(t, err)
		calls = append(calls, c)
	}
	must(t, j.Append("long", Final, []byte(`end`)))
	if n := len(segments(t, dir)); n != 7 {
		t.Fatalf("%d segments, want 7 (one per record, and the next)", n)
	}
	for _, c := range calls {
		j.Settled(c)
	}
	if n := len(segments(t, dir)); n != 7 {
		t.Errorf("%d segments while the oldest still holds a call, want all 7 kept", n)
	}
	j.Settled(long)
	if n := len(segments(t, dir)); n != 1 {
		t.Errorf("%d segments once everything is settled, want 1", n)
	}
}

// TestFullJournalRefusesAndRecovers: past MaxBytes appends fail with
// ErrFull (the journal's disk-full) and Err says so; once settled calls free
// space, Probe finds the journal healthy again.
func TestFullJournalRefusesAndRecovers(t *testing.T) {
	dir := t.TempDir()
	j, _, err := Open(dir, Options{SegmentBytes: 200, MaxBytes: 600})
	must(t, err)
	defer j.Close()
	var calls []*Call
	for i := 0; ; i++ {
		c, err := j.Begin(string(rune('a'+i)), Final, []byte(strings.Repeat("f", 150)))
		if err != nil {
			if !errors.Is(err, ErrFull) || !errors.Is(j.Err(), ErrFull) {
				t.Fatalf("append %d: %v (Err %v), want ErrFull", i, err, j.Err())
			}
			break
		}
		calls = append(calls, c)
		if i > 10 {
			t.Fatal("MaxBytes is not enforced")
		}
	}
	if err := j.Probe(); !errors.Is(err, ErrFull) {
		t.Errorf("probe of a full journal: %v", err)
	}
	for _, c := range calls {
		j.Settled(c)
	}
	if err := j.Probe(); err != nil || j.Err() != nil {
		t.Errorf("probe after settling: %v, Err %v", err, j.Err())
	}
}

// TestOneProcessPerJournal: a second Open of the same directory fails.
func TestOneProcessPerJournal(t *testing.T) {
	dir := t.TempDir()
	j, _, err := Open(dir, Options{})
	must(t, err)
	defer j.Close()
	if _, _, err := Open(dir, Options{}); err == nil || !strings.Contains(err.Error(), "in use") {
		t.Errorf("second open: %v", err)
	}
}

// TestConcurrentAppendsAndSync: many goroutines append and sync at once;
// every record is read back whole.
func TestConcurrentAppendsAndSync(t *testing.T) {
	dir := t.TempDir()
	j, _, err := Open(dir, Options{SegmentBytes: 4096})
	must(t, err)
	var wg sync.WaitGroup
	for g := range 8 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range 50 {
				id := string(rune('A'+g)) + strings.Repeat("x", i)
				if _, err := j.Begin(id, Start, []byte(id)); err != nil {
					t.Error(err)
					return
				}
				if err := j.Append(id, Final, []byte(id)); err != nil {
					t.Error(err)
					return
				}
				if i%10 == 0 {
					if err := j.Sync(); err != nil {
						t.Error(err)
					}
				}
			}
		}()
	}
	wg.Wait()
	j.closeOnce.Do(func() { close(j.stop) })
	<-j.done
	j.lock.Close()
	_, rec, err := Open(dir, Options{})
	must(t, err)
	if len(rec) != 400 {
		t.Fatalf("recovered %d calls, want 400", len(rec))
	}
	for _, r := range rec {
		if string(r.Start) != r.ID || string(r.Final) != r.ID {
			t.Fatalf("call %s: start %q final %q", r.ID, r.Start, r.Final)
		}
	}
}

func must(t *testing.T, err error) {
	t.Helper()
	if err != nil {
		t.Fatal(err)
	}
}

// BenchmarkBeginFinal is the journal's cost for one finished call: a final
// record of a typical size (one write(2)), and its settlement.
func BenchmarkBeginFinal(b *testing.B) {
	j, _, err := Open(b.TempDir(), Options{})
	if err != nil {
		b.Fatal(err)
	}
	defer j.Close()
	data := []byte(strings.Repeat("x", 400))
	b.ReportAllocs()
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		c, err := j.Begin("01a233fd-4d85-77e5-baeb-61dc46653a4f", Final, data)
		if err != nil {
			b.Fatal(err)
		}
		j.Settled(c)
	}
}
