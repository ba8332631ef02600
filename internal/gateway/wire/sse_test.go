package wire

import (
	"errors"
	"io"
	"strings"
	"testing"
	"testing/iotest"

	"github.com/google/go-cmp/cmp"
)

type ev struct{ Name, Data string }

func collect(t *testing.T, r io.Reader) []ev {
	t.Helper()
	var got []ev
	if err := ReadSSE(r, func(name string, data []byte) error {
		got = append(got, ev{name, string(data)})
		return nil
	}); err != nil {
		t.Fatalf("ReadSSE: %v", err)
	}
	return got
}

func TestReadSSE(t *testing.T) {
	for _, tc := range []struct {
		name, in string
		want     []ev
	}{
		{"openai", "data: {\"a\":1}\n\ndata: [DONE]\n\n", []ev{{"", `{"a":1}`}, {"", "[DONE]"}}},
		{"named events crlf", "event: message_start\r\ndata: {}\r\n\r\nevent: ping\r\ndata: {\"type\":\"ping\"}\r\n\r\n",
			[]ev{{"message_start", "{}"}, {"ping", `{"type":"ping"}`}}},
		{"multi-line data and comments", ": keep-alive\ndata: a\ndata: b\nid: 7\n\n", []ev{{"", "a\nb"}}},
		{"no space after colon, lone CR", "data:x\r\rdata:y\r\r", []ev{{"", "x"}, {"", "y"}}},
		{"last event without blank line", "data: tail", []ev{{"", "tail"}}},
		{"event without data is dropped", "event: x\n\n", nil},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if diff := cmp.Diff(tc.want, collect(t, strings.NewReader(tc.in))); diff != "" {
				t.Errorf("events (-want +got):\n%s", diff)
			}
			// The same events when the stream arrives a byte at a time.
			if diff := cmp.Diff(tc.want, collect(t, iotest.OneByteReader(strings.NewReader(tc.in)))); diff != "" {
				t.Errorf("one byte at a time (-want +got):\n%s", diff)
			}
		})
	}
}

func TestReadSSELongLineAndErrors(t *testing.T) {
	long := strings.Repeat("x", 100_000)
	if diff := cmp.Diff([]ev{{"", long}}, collect(t, strings.NewReader("data: "+long+"\n\n"))); diff != "" {
		t.Errorf("long line (-want +got):\n%s", diff)
	}
	stop := errors.New("stop")
	n := 0
	err := ReadSSE(strings.NewReader("data: 1\n\ndata: 2\n\n"), func(string, []byte) error { n++; return stop })
	if !errors.Is(err, stop) || n != 1 {
		t.Errorf("callback error: got %v after %d events, want stop after 1", err, n)
	}
	huge := "data: " + strings.Repeat("y", MaxEventBytes+10) + "\n\n"
	if err := ReadSSE(strings.NewReader(huge), func(string, []byte) error { return nil }); !errors.Is(err, ErrEventTooLarge) {
		t.Errorf("huge event: got %v, want ErrEventTooLarge", err)
	}
	if err := ReadSSE(iotest.ErrReader(io.ErrUnexpectedEOF), func(string, []byte) error { return nil }); !errors.Is(err, io.ErrUnexpectedEOF) {
		t.Errorf("read error: got %v", err)
	}
}
