package gateway

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"slices"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/tenantgate/tenantgate/internal/billing"
	"github.com/tenantgate/tenantgate/internal/egress"
	"github.com/tenantgate/tenantgate/internal/errs"
	"github.com/tenantgate/tenantgate/internal/gateway/wire"
	"github.com/tenantgate/tenantgate/internal/money"
)

// Caller is who calls the relay, as the HTTP pipeline resolved it (the
// entitlements come from its cache, so the relay reads none).
type Caller struct {
	TenantID        string
	Plan            string
	BYOK            bool  // the plan allows the tenant's own channels
	TokensPerMinute int64 // the plan's token rate (-1 or 0: none)
	UserID          string
	KeyID           string
	KeyModels       []string // the key's model allowlist (empty: any)
	KeyBudget       *int64   // the key's budget in micros (nil: none)
	KeyTPM          int      // the key's own token rate (0: none)
	RequestID       string
}

// streamWriteTimeout bounds one write to the client: a stream's chunk, or a
// finished answer.
const streamWriteTimeout = 60 * time.Second

// MaxRequestBytes bounds a relayed request body (images make them large).
const MaxRequestBytes = 32 << 20

// maxAnswerBytes bounds a non-streaming upstream answer.
const maxAnswerBytes = 64 << 20

// MaxUsageTokens bounds each token count an upstream reports for one call
// (10^9, far above any real call), so the sums of counts and their cost
// cannot overflow whatever an upstream (a tenant's own, too) claims.
const MaxUsageTokens = 1_000_000_000

// call is one relayed request in flight.
type call struct {
	wire.Call
	caller       Caller
	includeUsage bool // the client asked for the usage chunk
	completion   *completionRequest
	maxOut       int64
	choices      int // n: answers asked for (at least 1)
	estPrompt    int64
	priceModel   string // the model whose price the call pays (an alias may be priced by its upstream model)
}

// Serve relays one /v1 call. It answers an error it returns before anything
// was written (the HTTP layer writes it in OpenAI's shape); once a stream
// started, errors end the stream instead and Serve returns nil.
func (g *Service) Serve(w http.ResponseWriter, r *http.Request, op wire.Op, c Caller) error {
	start := g.now()
	body, err := io.ReadAll(http.MaxBytesReader(w, r.Body, MaxRequestBytes))
	if err != nil {
		var tooBig *http.MaxBytesError
		if errors.As(err, &tooBig) {
			return errs.E(errs.KindTooLarge, errs.CodePayloadTooLarge, "the request body is over %d MiB", MaxRequestBytes>>20)
		}
		return errs.Invalid("could not read the request body", nil)
	}
	cl, err := parseCall(op, body)
	if err != nil {
		return err
	}
	// Usage that could be recorded nowhere is not served.
	if err := g.refusing(); err != nil {
		return err
	}
	cl.caller = c
	if cl.maxOut == 0 && cl.Op == wire.OpChat {
		// No cap: reserve for a long answer, and cap the upstream there, so
		// no answer can settle above its hold.
		cl.OutputCap = g.opts.DefaultMaxOutput
	}
	set := g.settingsFor(c.TenantID)
	if len(c.KeyModels) > 0 && !slices.Contains(c.KeyModels, cl.Model) {
		return errs.Forbidden(CodeModelNotAllowed, "this API key may not use the model %q; it may use: %s", cl.Model, strings.Join(c.KeyModels, ", "))
	}
	cands, unhealthy := g.candidates(c.TenantID, c.Plan, cl.Model, c.BYOK, set)
	taken := slices.Clone(cands) // the trial slots candidates took, given back below
	defer func() {
		for _, c := range taken {
			c.endTrial()
		}
	}()
	if unhealthy {
		return &errs.Error{Kind: errs.KindUnavailable, Code: CodeNoHealthyChannel, RetryAfter: g.retryAfterUnhealthy(),
			Msg: fmt.Sprintf("every channel serving %q is failing its health checks; retry shortly", cl.Model)}
	}
	if len(cands) == 0 {
		return errs.NotFound(CodeModelNotFound, "the model %q does not exist or you do not have access to it", cl.Model)
	}
	if err := g.redact(&cl, set); err != nil {
		return err
	}
	cl.estPrompt = estimateTokens(cl.Body)
	if err := g.admit(r.Context(), &cl); err != nil {
		return err
	}
	// Platform channels are paid for from the balance: price the model,
	// reserve an estimate. The tenant's own channels cost nothing here.
	var hold *billing.Hold
	var price func(wire.Usage) (int64, error)
	if slices.ContainsFunc(cands, func(x candidate) bool { return !x.byok }) && g.opts.Billing != nil {
		out := cl.maxOut
		if out == 0 {
			out = cl.OutputCap // the cap the upstream is sent (0 for embeddings)
		}
		out, ok := money.Mul(out, int64(cl.choices)) // n answers cost n times
		if !ok {
			return badBody("n", "the output this call asks for is too large to price")
		}
		priceModel, est, priced, err := g.pricedAs(r.Context(), c.TenantID, cl.Model, &cands, cl.estPrompt, out)
		cl.priceModel = priceModel
		if err != nil {
			return err
		}
		switch {
		case priced:
			price = func(u wire.Usage) (int64, error) {
				m, _, err := g.opts.Billing.Cost(context.WithoutCancel(r.Context()), c.TenantID, priceModel, u.PromptTokens, u.CachedTokens, u.CompletionTokens)
				return int64(m), err
			}
			if hold, err = g.opts.Billing.Reserve(r.Context(), c.TenantID, c.KeyID, c.KeyBudget, est); err != nil {
				// The balance does not cover a platform channel; the tenant's own may still serve it.
				own := slices.DeleteFunc(slices.Clone(cands), func(x candidate) bool { return !x.byok })
				if len(own) == 0 {
					return err
				}
				cands, price = own, nil
			}
		case !set.AllowUnpriced:
			cands = slices.DeleteFunc(cands, func(x candidate) bool { return !x.byok })
			if len(cands) == 0 {
				return errs.Forbidden(CodeModelNotPriced, "the model %q has no price yet, so it cannot be billed; an operator sets one with PUT /api/v1/admin/prices/%s (or an operator allows unpriced models for this tenant)", cl.Model, cl.Model)
			}
		}
	}
	// Whatever happens, the hold goes back: a settled one is already done
	// (Release is idempotent), every other path must not keep it.
	defer func() { g.release(hold) }()

	l := &Log{TenantID: c.TenantID, ID: newID(), RequestID: c.RequestID, UserID: c.UserID, KeyID: c.KeyID, Op: string(op), Model: cl.Model,
		Stream: cl.Stream, CreatedAt: start}
	if set.StoreContent {
		p := truncate(promptText(&cl), 64<<10)
		l.Prompt = &p
	}
	// Trial slots are held only while their attempt runs: given back now
	// (those filtered out above too), taken again just before each attempt,
	// so a long call elsewhere does not keep another channel's trial.
	for _, c := range taken {
		c.endTrial()
	}
	var lastErr error
	for _, cand := range cands {
		if l.Attempts >= g.opts.MaxAttempts {
			break
		}
		h := cand.l.health
		if h.disabled.Load() && cand.trial == 0 {
			continue // disabled by another request meanwhile: never picked
		}
		if cand.trial != 0 && !h.trial.CompareAndSwap(0, cand.trial) {
			continue // another call is trying this channel right now
		}
		if !h.acquire(cand.l.ch.MaxConcurrency) {
			cand.endTrial()
			continue // at its concurrency limit
		}
		l.Attempts++
		done, err := g.attempt(w, r, &cl, cand, l, start, price, hold, set)
		h.inflight.Add(-1)
		cand.endTrial()
		if done {
			return err
		}
		lastErr = err
	}
	l.LatencyMs = int(g.now().Sub(start).Milliseconds())
	if lastErr == nil {
		lastErr = errs.E(errs.KindUnavailable, CodeChannelsBusy, "every channel for %q is at its concurrency limit; retry in a moment", cl.Model)
		if e, _ := errs.As(lastErr); e != nil {
			e.RetryAfter = 1
		}
	}
	if e, ok := errs.As(lastErr); ok {
		l.Status, l.Error = Status(e.Kind), truncate(e.Msg, 500)
	} else {
		l.Status, l.Error = http.StatusBadGateway, truncate(lastErr.Error(), 500)
	}
	g.logFailed(l)
	return lastErr
}

// shutDown ends a call whose answer had not arrived when the shutdown's
// grace ran out: not the channel's fault (no health failure, no other channel
// tried), nothing delivered so nothing billed, and a 503 the client may retry.
func (g *Service) shutDown(l *Log, lv *live, cand candidate, start time.Time) error {
	l.ChannelID, l.UpstreamModel, l.BYOK = lv.ch.ID, cand.upstream, cand.byok
	l.Status, l.Error, l.LatencyMs = http.StatusServiceUnavailable, "the server shut down before the answer", int(g.now().Sub(start).Milliseconds())
	g.logFailed(l)
	return &errs.Error{Kind: errs.KindUnavailable, Code: CodeServerShutdown, RetryAfter: 1,
		Msg: "the server is shutting down and this call had not been answered yet; retry it"}
}

// logFailed writes a failed call's row before the client hears of the
// failure, so a call the client saw answered is always in the request log
// (nothing to bill: a failure to write it is logged, not answered).
func (g *Service) logFailed(l *Log) {
	if err := g.writer.write(context.Background(), l); err != nil {
		g.log.Warn("could not write a failed call's request log row", "tenant", l.TenantID, "model", l.Model, "err", err)
	}
}

// pricedAs picks the price of a call to platform channels: the model's own
// (an alias may have one), else that of the upstream model the first platform
// channel maps it to (modelMapping), the first that has a price. When it is
// priced by an upstream model, platform channels that would forward another
// upstream model are dropped from cands, so what is priced is what is
// forwarded. est is the cost of prompt and out tokens at that price.
func (g *Service) pricedAs(ctx context.Context, tenantID, model string, cands *[]candidate, prompt, out int64) (string, money.Micros, bool, error) {
	est, priced, err := g.opts.Billing.Cost(ctx, tenantID, model, prompt, 0, out)
	if err != nil || priced {
		return model, est, priced, err
	}
	for _, c := range *cands {
		if c.byok || c.upstream == model {
			continue
		}
		if est, priced, err = g.opts.Billing.Cost(ctx, tenantID, c.upstream, prompt, 0, out); err != nil {
			return "", 0, false, err
		}
		if priced {
			up := c.upstream
			*cands = slices.DeleteFunc(*cands, func(x candidate) bool { return !x.byok && x.upstream != up })
			return up, est, true, nil
		}
	}
	return model, 0, false, nil
}

// attempt tries one channel. done reports that the call ended here (an
// answer, or the client's own error, was sent or returned); otherwise err
// says why the channel failed and the next may be tried.
func (g *Service) attempt(w http.ResponseWriter, r *http.Request, cl *call, cand candidate, l *Log, start time.Time,
	price func(wire.Usage) (int64, error), hold *billing.Hold, set *Settings) (done bool, err error) {
	lv := cand.l
	t := &wire.Target{BaseURL: lv.ch.BaseURL, Key: lv.key(), Model: cand.upstream, Headers: lv.headers, APIVersion: lv.ch.APIVersion}
	wc := cl.Call
	translated := false
	if cl.Op == wire.OpCompletion && !lv.provider.Supports(wire.OpCompletion) {
		if cl.Chat == nil {
			return true, badBody("prompt", "the "+lv.ch.Provider+" channel serving "+cl.Model+" takes one prompt string a request")
		}
		wc.Op, translated = wire.OpChat, true
	}
	if !lv.provider.Supports(wc.Op) {
		return false, errs.E(errs.KindInvalid, CodeUpstreamError, "the %s channel for %q does not serve %s calls", lv.ch.Provider, cl.Model, cl.Op)
	}
	if g.cutCtx.Err() != nil { // the shutdown's grace is over: no new upstream call
		return true, g.shutDown(l, lv, cand, start)
	}
	idle, total := lv.ch.deadlines()
	up, end := newUpstreamCall(r.Context(), total)
	defer end()
	defer context.AfterFunc(g.cutCtx, up.stop)() // shutdown's grace is over: end the upstream call
	req, err := lv.provider.NewRequest(up.ctx, t, &wc)
	if err != nil {
		// The request cannot be put to this provider: the client's to fix.
		return true, errs.Invalid(err.Error(), nil)
	}
	resp, err := lv.client.Do(req)
	if err != nil && g.cutCtx.Err() != nil {
		return true, g.shutDown(l, lv, cand, start)
	}
	if err != nil {
		if r.Context().Err() != nil { // the client went away before any answer: nothing to bill
			l.ChannelID, l.UpstreamModel, l.BYOK = lv.ch.ID, cand.upstream, cand.byok
			l.Status, l.Error, l.LatencyMs = 499, "the client closed the connection before the answer", int(g.now().Sub(start).Milliseconds())
			g.writer.enqueue(l)
			return true, errs.E(errs.KindInvalid, errs.CodeInvalidRequest, "the client went away")
		}
		if priv, ok := egress.IsInternalAddress(err); ok {
			g.fail(lv, priv.Error(), true)
			return false, errs.E(errs.KindUpstream, CodeUpstreamError, "%s", priv.Error())
		}
		g.fail(lv, "connect: "+up.reason(err), false)
		if isTimeout(err) || up.cutShort() != nil {
			return false, errs.E(errs.KindUpstream, CodeUpstreamTimeout, "the upstream for %q did not answer in time", cl.Model)
		}
		return false, errs.E(errs.KindUpstream, CodeUpstreamError, "the upstream for %q could not be reached", cl.Model)
	}
	resp.Body = up.watch(resp.Body, idle) // an answer that stops sending is ended after idle
	defer resp.Body.Close()
	l.ChannelID, l.UpstreamModel, l.BYOK = lv.ch.ID, cand.upstream, cand.byok
	if resp.StatusCode < 200 || resp.StatusCode > 299 {
		raw, _ := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
		msg := lv.provider.ErrorMessage(raw)
		shown := "" // what the tenant may read of the upstream's words: its own channel's, not the platform's
		if cand.byok {
			shown = ": " + msg
		}
		switch {
		case resp.StatusCode == http.StatusUnauthorized || resp.StatusCode == http.StatusForbidden:
			// 401 is a key the upstream does not know: disabled at once. 403
			// (a key without access) counts as a failure.
			g.fail(lv, fmt.Sprintf("the upstream refused the channel's key (%d): %s", resp.StatusCode, msg), resp.StatusCode == http.StatusUnauthorized)
			return false, errs.E(errs.KindUpstream, CodeUpstreamError, "the upstream for %q refused the channel's credentials", cl.Model)
		case resp.StatusCode == http.StatusTooManyRequests:
			// Busy, not broken: try the next channel, but do not count it
			// against the channel's health (one tenant's volume must not
			// disable a shared channel for everyone).
			g.log.Warn("an upstream is rate limiting a channel", "channel", lv.ch.ID, "message", msg)
			return false, errs.E(errs.KindUpstream, CodeUpstreamError, "the upstream for %q is rate limiting (429)%s", cl.Model, shown)
		case resp.StatusCode >= 500 || resp.StatusCode == http.StatusRequestTimeout:
			g.fail(lv, fmt.Sprintf("upstream answered %d: %s", resp.StatusCode, msg), false)
			return false, errs.E(errs.KindUpstream, CodeUpstreamError, "the upstream for %q answered %d%s", cl.Model, resp.StatusCode, shown)
		case resp.StatusCode < 400:
			g.fail(lv, fmt.Sprintf("upstream answered %d (a redirect, which the gateway does not follow): check the base URL", resp.StatusCode), false)
			return false, errs.E(errs.KindUpstream, CodeUpstreamError, "the upstream for %q answered %d", cl.Model, resp.StatusCode)
		}
		// The client's request is at fault: pass the answer on, try no other channel.
		g.ok(lv)
		body := raw
		if _, passthrough := lv.provider.(interface{ Passthrough() }); !passthrough || !json.Valid(raw) {
			body, _ = json.Marshal(openAIError{Error: openAIErrorDetail{Message: orDefault(msg, http.StatusText(resp.StatusCode)),
				Type: "invalid_request_error", Code: ptr("upstream_error")}})
		}
		l.Status, l.Error, l.LatencyMs = resp.StatusCode, truncate(msg, 500), int(g.now().Sub(start).Milliseconds())
		g.logFailed(l)
		g.release(hold)
		return true, &UpstreamReply{Status: resp.StatusCode, Body: body}
	}
	if cl.Stream {
		return true, g.relayStream(w, r, cl, cand, t, &wc, resp, l, start, price, hold, set, translated, up)
	}
	raw, err := io.ReadAll(io.LimitReader(resp.Body, maxAnswerBytes))
	if err != nil && g.cutCtx.Err() != nil {
		return true, g.shutDown(l, lv, cand, start)
	}
	if err != nil {
		g.fail(lv, "read the answer: "+up.reason(err), false)
		return false, errs.E(errs.KindUpstream, CodeUpstreamError, "the upstream for %q broke off its answer", cl.Model)
	}
	res, err := lv.provider.Decode(&wc, t, raw)
	if err != nil {
		g.fail(lv, "decode the answer: "+err.Error(), false)
		return false, errs.E(errs.KindUpstream, CodeUpstreamError, "the upstream for %q answered something unreadable", cl.Model)
	}
	g.ok(lv)
	out := res.Body
	if translated {
		if out, err = chatToCompletion(out); err != nil {
			return true, errs.Internal(err, "turn the chat answer into a completion")
		}
	}
	usage := g.settleText(cl, l, set, res.Usage, res.HasUsage, func() string { return answerText(wc.Op, res.Body) })
	if err := g.finish(r.Context(), l, usage, cand, price, hold, start, nil, http.StatusOK); err != nil {
		return true, err
	}
	_ = http.NewResponseController(w).SetWriteDeadline(time.Now().Add(streamWriteTimeout)) // a long answer outlasts the server's write timeout
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("X-Request-ID", cl.caller.RequestID)
	w.WriteHeader(http.StatusOK)
	_, _ = w.Write(out)
	return true, nil
}

// finish prices usage and makes the log row, the debit and the metered
// tokens durable before the client sees the end of its answer.
func (g *Service) finish(ctx context.Context, l *Log, u wire.Usage, cand candidate, price func(wire.Usage) (int64, error), hold *billing.Hold,
	start time.Time, ttft *time.Duration, status int) error {
	// An upstream's odd figures never fail a finished call, nor wrap a sum:
	// each count is kept within 0..MaxUsageTokens.
	u.PromptTokens, u.CompletionTokens = min(max(u.PromptTokens, 0), MaxUsageTokens), min(max(u.CompletionTokens, 0), MaxUsageTokens)
	u.CachedTokens = min(max(u.CachedTokens, 0), u.PromptTokens) // an upstream's odd figures never fail a finished call
	l.PromptTokens, l.CachedTokens, l.CompletionTokens = u.PromptTokens, u.CachedTokens, u.CompletionTokens
	l.Status, l.LatencyMs = status, int(g.now().Sub(start).Milliseconds())
	if ttft != nil {
		ms := int(ttft.Milliseconds())
		l.TTFTMs = &ms
	}
	if !cand.byok && price != nil {
		cost, err := price(u)
		if err != nil {
			if l.jc != nil { // a stream's start record: kept for an operator, so it holds no segment
				_ = g.journal.Reject(l.jc, mustJSON(recordOf(l)))
			}
			return err
		}
		l.CostMicros = cost
	}
	l.hold = hold
	g.journalFinal(l)
	err := g.writer.write(ctx, l)
	switch {
	case err == nil:
		return nil
	case errors.Is(err, errParked):
		// The database did not take it; the writer retries. The client gets
		// its answer once the journal's copy is fsynced (one fsync shared by
		// every call waiting), or at once when only memory holds it.
		if l.journaled {
			if serr := g.journal.Sync(); serr != nil {
				g.log.Error("could not fsync the usage journal; the call's usage is written but may not survive an OS crash", "err", serr)
			}
		} else {
			g.log.Error("an AI call's usage is kept in memory only (the database and the usage journal both fail); it is lost if the process dies first",
				"tenant", l.TenantID, "log", l.ID)
		}
		return nil
	case errors.Is(err, errWriterClosed):
		g.release(hold) // never queued: the journal's copy is billed at the next start
		if l.journaled {
			_ = g.journal.Sync()
			return nil
		}
	}
	return err
}

// relayStream passes the upstream's events to the client as they arrive.
func (g *Service) relayStream(w http.ResponseWriter, r *http.Request, cl *call, cand candidate, t *wire.Target, wc *wire.Call, resp *http.Response,
	l *Log, start time.Time, price func(wire.Usage) (int64, error), hold *billing.Hold, set *Settings, translated bool, up *upstreamCall) error {
	if err := g.journalStart(l, cl, price != nil && !cand.byok); err != nil {
		up.stop()
		return err
	}
	rc := http.NewResponseController(w)
	h := w.Header()
	h.Set("Content-Type", "text/event-stream")
	h.Set("Cache-Control", "no-cache")
	h.Set("X-Accel-Buffering", "no")
	h.Set("X-Request-ID", cl.caller.RequestID)
	w.WriteHeader(http.StatusOK)
	var (
		ttft      *time.Duration
		chunks    bytes.Buffer // what upstream produced, for local counting and content storage
		clientErr error
		head      []byte // the first chunk, whose id and model a synthesized usage chunk reuses
		prog      = progress{g: g, l: l, cl: cl, last: g.now()}
	)
	// Events are written as they come and flushed when the gateway is about
	// to wait for more from upstream (flushBeforeRead): events that arrived
	// together leave in one write instead of one syscall each, and none
	// waits in the buffer while the upstream is silent.
	unflushed := false
	flush := func() error {
		if clientErr != nil || !unflushed {
			return clientErr
		}
		// A stream may outlast the server's write timeout, but a client that
		// stops reading must not hold its reservation and the channel's slot.
		_ = rc.SetWriteDeadline(time.Now().Add(streamWriteTimeout))
		if err := rc.Flush(); err != nil {
			clientErr = err
			return err
		}
		unflushed = false
		prog.delivered(chunks.Bytes()) // what reached the client
		return nil
	}
	write := func(data []byte) error {
		if clientErr != nil {
			return clientErr
		}
		_ = rc.SetWriteDeadline(time.Now().Add(streamWriteTimeout))
		if _, err := fmt.Fprintf(w, "data: %s\n\n", data); err != nil {
			clientErr = err
			return err
		}
		unflushed = true
		return nil
	}
	emit := func(chunk []byte, usageOnly bool) error {
		if ttft == nil {
			d := g.now().Sub(start)
			ttft = &d
			head = chunk
		}
		if !usageOnly {
			chunks.Write(chunk)
			chunks.WriteByte('\n')
		}
		if usageOnly && !cl.includeUsage {
			return nil
		}
		if translated {
			var err error
			if chunk, err = chatChunkToCompletion(chunk); err != nil {
				return err
			}
		}
		return write(chunk)
	}
	usage, ok, err := cand.l.provider.Stream(wc, t, flushBeforeRead{resp.Body, flush}, emit)
	if ferr := flush(); err == nil && ferr != nil {
		err = ferr
	}
	status := http.StatusOK
	switch {
	case clientErr != nil || r.Context().Err() != nil:
		// The client went away: stop upstream and bill what it produced.
		up.stop()
		status, l.Error = 499, "the client closed the connection mid-stream"
		g.ok(cand.l)
	case err != nil && g.cutCtx.Err() != nil:
		// The server is shutting down and its grace period is over: not the
		// channel's fault; bill what was delivered and say why it ends.
		status, l.Error = http.StatusServiceUnavailable, "the server shut down mid-stream"
	case err != nil:
		// It broke off, stalled or ran too long: a failure of the channel;
		// what was delivered is billed.
		g.fail(cand.l, "the stream broke off: "+up.reason(err), false)
		status, l.Error = http.StatusBadGateway, "the upstream stream broke off"
		if c := up.cutShort(); c != nil {
			l.Error = "the upstream stream was ended: " + c.Error()
		} else if cand.byok {
			l.Error = truncate(l.Error+": "+err.Error(), 500)
		}
	default:
		g.ok(cand.l)
	}
	usage = g.settleText(cl, l, set, usage, ok, func() string { return streamText(chunks.Bytes()) })
	if !ok {
		if status == http.StatusOK && cl.includeUsage {
			if synth := usageChunk(head, usage); synth != nil {
				if translated {
					synth, _ = chatChunkToCompletion(synth)
				}
				_ = write(synth)
			}
		}
	}
	if ferr := g.finish(context.WithoutCancel(r.Context()), l, usage, cand, price, hold, start, ttft, status); ferr != nil {
		_ = write(mustJSON(openAIError{Error: openAIErrorDetail{Message: "the usage of this call could not be recorded",
			Type: "api_error", Code: ptr("internal_error")}}))
		return nil
	}
	if status == http.StatusBadGateway {
		_ = write(mustJSON(openAIError{Error: openAIErrorDetail{Message: l.Error, Type: "api_error", Code: ptr("upstream_error")}}))
		return nil
	}
	if status == http.StatusServiceUnavailable {
		_ = write(mustJSON(openAIError{Error: openAIErrorDetail{Message: "the server is shutting down: this answer was cut short, " +
			"and only what was delivered is billed; retry the call", Type: "api_error", Code: ptr(strings.ToLower(CodeServerShutdown))}}))
		return nil
	}
	_ = write([]byte("[DONE]"))
	return nil
}

// settleText decides a call's usage (upstream's when it reported some,
// else counted locally and marked estimated) and stores the answer when the
// tenant keeps content; the answer's text is gathered at most once.
func (g *Service) settleText(cl *call, l *Log, set *Settings, u wire.Usage, reported bool, answer func() string) wire.Usage {
	if reported && !set.StoreContent {
		return u
	}
	text := answer()
	if !reported {
		u, l.Estimated = g.countLocally(cl, text), true
	}
	if set.StoreContent {
		s := truncate(text, 64<<10)
		l.Completion = &s
	}
	return u
}

// usageChunk builds the usage-only chunk for a stream whose upstream
// reported none, from the first chunk's id, created and model.
func usageChunk(head []byte, u wire.Usage) []byte {
	var c wire.ChatChunk
	if json.Unmarshal(head, &c) != nil {
		return nil
	}
	c.Object, c.Choices, c.Usage = "chat.completion.chunk", []wire.ChunkChoice{}, u.Object()
	return mustJSON(c)
}

func (g *Service) release(h *billing.Hold) {
	if g.opts.Billing != nil && h != nil {
		g.opts.Billing.Release(h)
	}
}

// admit applies the token-rate and monthly limits before anything is sent.
func (g *Service) admit(ctx context.Context, cl *call) error {
	c := cl.caller
	// What the call may use: its prompt and every answer's cap (the one it
	// set, or the one the gateway sends an uncapped call).
	out := money.SatMul(max(cl.maxOut, cl.OutputCap), int64(max(cl.choices, 1)))
	n := int(min(money.SatAdd(cl.estPrompt, out), 1<<30))
	if g.opts.Limiter != nil {
		for _, lim := range []struct {
			key  string
			rate int64
			what string
		}{{"tenant:" + c.TenantID + ":tpm", c.TokensPerMinute, "this organisation's"}, {"tenant:" + c.TenantID + ":key:" + c.KeyID + ":tpm", int64(c.KeyTPM), "this API key's"}} {
			if lim.rate <= 0 || (lim.what != "this organisation's" && c.KeyID == "") {
				continue
			}
			ok, retry, err := g.opts.Limiter.AllowTokens(ctx, lim.key, int(lim.rate), min(n, int(lim.rate)))
			if err != nil {
				return err
			}
			if !ok {
				secs := int(retry.Seconds()) + 1
				return &errs.Error{Kind: errs.KindRateLimited, Code: errs.CodeRateLimited, RetryAfter: secs,
					Msg: fmt.Sprintf("%s limit of %d tokens a minute is reached; try again in %d seconds", lim.what, lim.rate, secs)}
			}
		}
	}
	if g.opts.Meter != nil {
		if err := g.opts.Meter.AllowsMetered(ctx, c.TenantID, "tokens", cl.estPrompt); err != nil {
			return err
		}
		if cl.Op == wire.OpChat {
			if err := g.opts.Meter.AllowsMetered(ctx, c.TenantID, "messages", 1); err != nil {
				return err
			}
		}
	}
	return nil
}

func isTimeout(err error) bool {
	var ne net.Error
	return errors.Is(err, os.ErrDeadlineExceeded) || errors.Is(err, context.DeadlineExceeded) || (errors.As(err, &ne) && ne.Timeout())
}

// truncate cuts s to at most n bytes on a character boundary, as valid
// UTF-8 without NUL (which PostgreSQL text refuses), so no stored string can
// fail a batch.
func truncate(s string, n int) string {
	if strings.IndexByte(s, 0) >= 0 || !utf8.ValidString(s) {
		s = strings.ReplaceAll(strings.ToValidUTF8(s, "\uFFFD"), "\x00", "")
	}
	if len(s) <= n {
		return s
	}
	for n > 0 && n < len(s) && s[n]&0xC0 == 0x80 {
		n--
	}
	return s[:n]
}

func orDefault(s, d string) string {
	if s == "" {
		return d
	}
	return s
}

func ptr[T any](v T) *T { return &v }

func mustJSON(v any) []byte {
	b, _ := json.Marshal(v)
	return b
}

// flushBeforeRead flushes what was written to the client before each read
// from the upstream, i.e. whenever the relay may have to wait for more.
type flushBeforeRead struct {
	r     io.Reader
	flush func() error
}

func (f flushBeforeRead) Read(p []byte) (int, error) {
	if err := f.flush(); err != nil {
		return 0, err
	}
	return f.r.Read(p)
}
