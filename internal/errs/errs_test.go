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
