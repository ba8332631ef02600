package errs

import (
	"errors"
	"fmt"
	"testing"
)

func TestWrap(t *testing.T) {
	if Wrap(nil, "x") != nil {
		t.Error("Wrap(nil) is not nil")
	}
	refusal := Conflict("LAST_OWNER", "keep one")
	if got := Wrap(fmt.Errorf("in tx: %w", refusal), "update"); !Is(got, "LAST_OWNER") {
		t.Errorf("a wrapped refusal lost its code: %v", got)
	}
	cause := errors.New("connection reset")
	got, ok := As(Wrap(cause, "update the user"))
	if !ok || got.Kind != KindInternal || got.Msg != "update the user" || !errors.Is(got, cause) {
		t.Errorf("Wrap(cause) = %+v, want an internal error around the cause", got)
	}
}

func TestFieldsText(t *testing.T) {
	for _, tc := range []struct {
		name, in     string
		min, max     int
		want, detail string
	}{
		{"plain", "  Acme Inc  ", 1, 100, "Acme Inc", ""},
		{"accents count as one character each", "Ünïcödé GmbH", 1, 12, "Ünïcödé GmbH", ""},
		{"empty but required", "   ", 1, 100, "", "must be 1 to 100 characters"},
		{"empty and optional", "", 0, 100, "", ""},
		{"too long", "abcdef", 0, 5, "abcdef", "must be at most 5 characters"},
		{"newline", "Acme\nInc", 1, 100, "Acme\nInc", "must not contain control characters (line breaks, tabs, escape sequences, direction overrides)"},
		{"tab", "Acme\tInc", 1, 100, "Acme\tInc", "must not contain control characters (line breaks, tabs, escape sequences, direction overrides)"},
		{"escape", "Acme\x1b[31mInc", 1, 100, "Acme\x1b[31mInc", "must not contain control characters (line breaks, tabs, escape sequences, direction overrides)"},
		{"C1", "Acme\u0085Inc", 1, 100, "Acme\u0085Inc", "must not contain control characters (line breaks, tabs, escape sequences, direction overrides)"},
		{"line separator", "Acme\u2028Inc", 1, 100, "Acme\u2028Inc", "must not contain control characters (line breaks, tabs, escape sequences, direction overrides)"},
		{"right-to-left override", "Acme\u202eInc", 1, 100, "Acme\u202eInc", "must not contain control characters (line breaks, tabs, escape sequences, direction overrides)"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			f := Fields{}
			got := f.Text("name", tc.in, tc.min, tc.max)
			if got != tc.want || f["name"] != tc.detail {
				t.Errorf("got %q %q, want %q %q", got, f["name"], tc.want, tc.detail)
			}
		})
	}
}
