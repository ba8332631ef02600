package wire

import (
	"bufio"
	"bytes"
	"errors"
	"io"
)

// MaxEventBytes bounds one server-sent event; a longer one is an error
// rather than unbounded memory.
const MaxEventBytes = 8 << 20

// ErrEventTooLarge is returned by ReadSSE for an event over MaxEventBytes.
var ErrEventTooLarge = errors.New("upstream sent a server-sent event over 8 MiB")

// ReadSSE calls fn for every event of a server-sent-events stream as soon
// as its blank line arrives: name is the event field ("" when absent), data
// the event's data lines joined by "\n" (the slice is reused: copy it to
// keep it). Comments and id/retry fields are skipped; "\n", "\r\n" and "\r"
// line ends are accepted. It returns nil at the end of the stream (a last
// event without its blank line is still delivered), and fn's error as is.
func ReadSSE(r io.Reader, fn func(name string, data []byte) error) error {
	br := bufio.NewReaderSize(r, 16<<10)
	var (
		name    []byte
		data    []byte
		hasData bool
		line    []byte
	)
	dispatch := func() error {
		defer func() { name, data, hasData = name[:0], data[:0], false }()
		if !hasData {
			return nil
		}
		return fn(string(name), data)
	}
	for {
		line = line[:0]
		var err error
		for {
			var frag []byte
			frag, err = br.ReadSlice('\n')
			line = append(line, frag...)
			if len(line) > MaxEventBytes {
				return ErrEventTooLarge
			}
			if err != bufio.ErrBufferFull {
				break
			}
		}
		if err != nil && err != io.EOF {
			return err
		}
		eof := err == io.EOF
		// A lone "\r" also ends a line: split what was read on it.
		for len(line) > 0 {
			var l []byte
			if i := bytes.IndexAny(line, "\r\n"); i >= 0 {
				l = line[:i]
				if line[i] == '\r' && i+1 < len(line) && line[i+1] == '\n' {
					line = line[i+2:]
				} else {
					line = line[i+1:]
				}
			} else {
				l, line = line, nil
			}
			if e := field(l, &name, &data, &hasData); e != nil {
				return e
			}
			if len(l) == 0 {
				if e := dispatch(); e != nil {
					return e
				}
			}
			if len(data) > MaxEventBytes {
				return ErrEventTooLarge
			}
		}
		if eof {
			return dispatch()
		}
	}
}

func field(l []byte, name, data *[]byte, hasData *bool) error {
	if len(l) == 0 || l[0] == ':' {
		return nil
	}
	key, val, _ := bytes.Cut(l, []byte(":"))
	if len(val) > 0 && val[0] == ' ' {
		val = val[1:]
	}
	switch string(key) {
	case "data":
		if *hasData {
			*data = append(*data, '\n')
		}
		*data = append(*data, val...)
		*hasData = true
	case "event":
		*name = append((*name)[:0], val...)
	}
	return nil
}
