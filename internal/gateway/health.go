package gateway

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"time"

	"gorm.io/gorm"

	"github.com/tenantgate/tenantgate/internal/actor"
	"github.com/tenantgate/tenantgate/internal/audit"
	"github.com/tenantgate/tenantgate/internal/errs"
	"github.com/tenantgate/tenantgate/internal/gateway/wire"
	"github.com/tenantgate/tenantgate/internal/store"
)

// retryAfterUnhealthy is the Retry-After (seconds) for a model whose
// channels are all disabled by the health check and busy with trial calls:
// the next probe or trial may bring one back.
func (g *Service) retryAfterUnhealthy() int {
	return int(max(g.opts.ProbeFirst, time.Second) / time.Second)
}

// ok records a healthy answer of the channel; a disabled channel that
// answered (a trial call while its model had no other) is enabled again.
func (g *Service) ok(l *live) {
	l.health.record(g.opts.HealthWindow, false)
	if l.down() {
		g.revive(l, "a call through it succeeded")
	}
}

// revive enables an automatically disabled channel again, at once in this
// process and then in the database (audited) and every process's table.
func (g *Service) revive(l *live, why string) {
	if !l.health.reviving.CompareAndSwap(false, true) {
		return // already on its way back
	}
	l.health.reset()
	go func() {
		defer l.health.reviving.Store(false)
		ctx := actor.With(context.Background(), actor.System("gateway health"))
		if g.reenable(ctx, l, why) {
			_ = g.Reload(ctx)
		}
	}()
}

// reenable records that an automatically disabled channel serves again
// (status enabled, audited); every process takes it back at its next reload.
func (g *Service) reenable(ctx context.Context, l *live, why string) bool {
	if err := g.setStatus(ctx, l.ch.TenantID, l.ch.ID, StatusEnabled, why, "ai_channel.re_enabled", StatusAutoDisabled); err != nil {
		g.log.Error("could not re-enable the channel", "channel", l.ch.ID, "err", err)
		return false
	}
	g.log.Info("an AI channel answers again and was re-enabled", "channel", l.ch.ID, "name", l.ch.Name, "why", why)
	return true
}

// fail records a failure; the channel is disabled at once when its key was
// refused, or when HealthFailures of its last HealthWindow requests failed.
// A disabled channel that fails again (a trial call) waits longer before
// its next probe.
func (g *Service) fail(l *live, reason string, invalidKey bool) {
	n := l.health.record(g.opts.HealthWindow, true)
	if l.health.disabled.Load() {
		g.backOff(l)
		return
	}
	if invalidKey || n >= g.opts.HealthFailures {
		if !invalidKey {
			reason = fmt.Sprintf("%d of its last %d requests failed; the last: %s", n, g.opts.HealthWindow, reason)
		}
		g.autoDisable(l, truncate(reason, 500))
	}
}

// autoDisable takes the channel out of routing at once (in this process),
// and records it (status auto_disabled, audited in its owner's log) so every
// process stops using it at its next reload.
func (g *Service) autoDisable(l *live, reason string) {
	if !l.health.disabled.CompareAndSwap(false, true) {
		return
	}
	now := g.now().UnixNano()
	l.health.disabledAt.Store(now)
	l.health.backoff.Store(int64(g.opts.ProbeFirst))
	l.health.probeAt.Store(now + int64(g.opts.ProbeFirst))
	g.log.Warn("an AI channel was disabled automatically; the probe re-enables it once it answers", "channel", l.ch.ID,
		"name", l.ch.Name, "owner", l.ch.TenantID, "reason", reason)
	ctx := actor.With(context.Background(), actor.System("gateway health"))
	if err := g.setStatus(ctx, l.ch.TenantID, l.ch.ID, StatusAutoDisabled, reason, "ai_channel.auto_disabled", StatusEnabled); err != nil {
		g.log.Error("could not record the channel's disablement", "channel", l.ch.ID, "err", err)
	}
}

// setStatus changes a channel's status if it is still from, with an audit event.
func (g *Service) setStatus(ctx context.Context, owner, id, status, reason, event, from string) error {
	now := g.now()
	return g.store.Tx(store.WithTenant(ctx, owner), func(tx *gorm.DB) error {
		r := tx.Model(&Channel{}).Where("id = ? AND status = ?", id, from).
			Updates(map[string]any{"status": status, "status_reason": reason, "status_at": now, "updated_at": now})
		if r.Error != nil || r.RowsAffected == 0 {
			return r.Error
		}
		return audit.Record(ctx, tx, audit.Entry{TenantID: owner, EventType: event, Resource: "ai_channel", ResourceID: id, Action: "update",
			Metadata: map[string]any{"status": status, "reason": reason}})
	})
}

// backOff doubles a disabled channel's wait before its next probe, up to
// ProbeEvery.
func (g *Service) backOff(l *live) {
	b := min(max(2*l.health.backoff.Load(), int64(g.opts.ProbeFirst)), int64(g.opts.ProbeEvery))
	l.health.backoff.Store(b)
	l.health.probeAt.Store(g.now().UnixNano() + b)
}

// ProbeDisabled sends a minimal request through every automatically
// disabled channel whose backoff is over (1 s after it was disabled, then
// doubling up to ProbeEvery) and re-enables those that answer.
func (g *Service) ProbeDisabled(ctx context.Context) {
	now := g.now().UnixNano()
	g.mu.RLock()
	var down []*live
	for _, ls := range g.byOwner {
		for _, l := range ls {
			if l.down() && now >= l.health.probeAt.Load() {
				down = append(down, l)
			}
		}
	}
	g.mu.RUnlock()
	changed := false
	for _, l := range down {
		res := g.probe(ctx, l, "")
		if !res.OK {
			g.backOff(l)
			continue
		}
		if g.reenable(actor.With(ctx, actor.System("gateway probe")), l, "the probe answered") {
			l.health.reset()
			changed = true
		}
	}
	if changed {
		g.Reload(ctx)
	}
}

// TestResult is what testing a channel found.
type TestResult struct {
	OK        bool   `json:"ok"`
	Model     string `json:"model"`
	Status    int    `json:"status"`
	LatencyMs int    `json:"latencyMs"`
	Error     string `json:"error,omitempty"`
}

// TestChannel sends one minimal chat request ("ping", one output token)
// through one of owner's channels, with the given model or its first.
func (g *Service) TestChannel(ctx context.Context, owner, id, model string) (*TestResult, error) {
	c, err := g.Channel(ctx, owner, id)
	if err != nil {
		return nil, err
	}
	if model != "" && !c.Serves(model) {
		return nil, errs.Invalid("the channel does not serve that model", map[string]string{"model": "must be one the channel serves"})
	}
	l, err := g.prepare(c)
	if err != nil {
		return nil, errs.Internal(err, "open the channel's keys")
	}
	l.health = &health{}
	return g.probe(ctx, l, model), nil
}

// probe sends "ping" for one output token through l.
func (g *Service) probe(ctx context.Context, l *live, model string) *TestResult {
	if model == "" {
		for _, m := range l.ch.Models {
			if m != "*" {
				model = m
				break
			}
		}
		for alias := range l.ch.ModelMapping {
			if model == "" {
				model = alias
			}
		}
	}
	res := &TestResult{Model: model}
	if model == "" {
		res.Error = `the channel lists only "*": name a model to test`
		return res
	}
	one := int64(1)
	body := mustJSON(map[string]any{"model": model, "messages": []map[string]string{{"role": "user", "content": "ping"}}, "max_tokens": 1})
	wc := &wire.Call{Op: wire.OpChat, Model: model, Body: body,
		Chat: &wire.ChatRequest{Model: model, Messages: []wire.Message{{Role: "user", Content: wire.TextContent("ping")}}, MaxTokens: &one}}
	t := &wire.Target{BaseURL: l.ch.BaseURL, Key: l.key(), Model: l.ch.UpstreamModel(model), Headers: l.headers, APIVersion: l.ch.APIVersion}
	ctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	start := time.Now()
	req, err := l.provider.NewRequest(ctx, t, wc)
	if err != nil {
		res.Error = err.Error()
		return res
	}
	resp, err := l.client.Do(req)
	res.LatencyMs = int(time.Since(start).Milliseconds())
	if err != nil {
		res.Error = "could not reach the upstream: " + err.Error()
		return res
	}
	defer resp.Body.Close()
	raw, _ := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
	res.Status = resp.StatusCode
	if resp.StatusCode != http.StatusOK {
		res.Error = fmt.Sprintf("the upstream answered %d: %s", resp.StatusCode, orDefault(l.provider.ErrorMessage(raw), http.StatusText(resp.StatusCode)))
		return res
	}
	if _, err := l.provider.Decode(wc, t, raw); err != nil {
		res.Error = "the upstream's answer could not be read: " + err.Error()
		return res
	}
	res.OK = true
	return res
}

// enqueue queues a record without waiting (a call whose client went away:
// nothing to bill and nobody to answer).
func (w *writer) enqueue(l *Log) {
	l.done = make(chan error, 1)
	w.closeMu.RLock()
	defer w.closeMu.RUnlock()
	if w.closed {
		return
	}
	select {
	case w.in <- l:
	default:
		w.g.log.Warn("the request log queue is full; a failed call's row is dropped", "tenant", l.TenantID, "model", l.Model)
	}
}
