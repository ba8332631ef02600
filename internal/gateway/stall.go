package gateway

import (
	"context"
	"errors"
	"io"
	"time"
)

// Why an upstream call was ended by the gateway rather than by its upstream.
var (
	errStalled = errors.New("the upstream sent nothing for longer than the channel's idle timeout")
	errTooLong = errors.New("the call ran past the channel's total deadline")
)

// upstreamCall is one attempt's context: ended by the client going away, by
// a shutdown's end of grace, by the channel's total deadline, or by its
// answer stalling (watch).
type upstreamCall struct {
	ctx    context.Context
	cancel context.CancelCauseFunc
}

func newUpstreamCall(parent context.Context, total time.Duration) (*upstreamCall, func()) {
	ctx, cancel := context.WithCancelCause(parent)
	u := &upstreamCall{ctx: ctx, cancel: cancel}
	deadline := time.AfterFunc(total, func() { cancel(errTooLong) })
	return u, func() { deadline.Stop(); cancel(context.Canceled) }
}

// stop ends the call (the client went away, or it is done).
func (u *upstreamCall) stop() { u.cancel(context.Canceled) }

// cutShort reports why the gateway ended the call (a stall or the total
// deadline), or nil when it did not.
func (u *upstreamCall) cutShort() error {
	if c := context.Cause(u.ctx); errors.Is(c, errStalled) || errors.Is(c, errTooLong) {
		return c
	}
	return nil
}

// reason describes a failed read: the gateway's own reason when it ended the
// call, else err.
func (u *upstreamCall) reason(err error) string {
	if c := u.cutShort(); c != nil {
		return c.Error()
	}
	return err.Error()
}

// watch ends the call when its answer's body sends nothing for idle: every
// read that returns data resets the timer, so a stream that keeps sending is
// never cut, and one that stops holds nothing (reservation, concurrency
// slot, goroutine) past idle.
func (u *upstreamCall) watch(body io.ReadCloser, idle time.Duration) io.ReadCloser {
	return &idleBody{ReadCloser: body, idle: idle, timer: time.AfterFunc(idle, func() { u.cancel(errStalled) })}
}

type idleBody struct {
	io.ReadCloser
	idle  time.Duration
	timer *time.Timer
}

func (b *idleBody) Read(p []byte) (int, error) {
	n, err := b.ReadCloser.Read(p)
	if n > 0 {
		b.timer.Reset(b.idle)
	}
	return n, err
}

func (b *idleBody) Close() error {
	b.timer.Stop()
	return b.ReadCloser.Close()
}
