package gateway

import (
	"cmp"
	"context"
	"encoding/json"
	"fmt"
	"time"

	"github.com/tenantgate/tenantgate/internal/errs"
	"github.com/tenantgate/tenantgate/internal/gateway/journal"
)

// usageRecord is what the usage journal keeps of a call: at its start the
// call and what is needed to price it, in progress records what it has
// delivered, at its end the whole log row but its content.
type usageRecord struct {
	TenantID      string `json:"t"`
	RequestID     string `json:"r,omitempty"`
	UserID        string `json:"u,omitempty"`
	KeyID         string `json:"k,omitempty"`
	ChannelID     string `json:"c,omitempty"`
	BYOK          bool   `json:"b,omitempty"`
	Priced        bool   `json:"$,omitempty"`  // start: the call is paid from the balance
	PriceModel    string `json:"pm,omitempty"` // start: the model whose price it pays, when not Model (an alias priced by its upstream model)
	Op            string `json:"o,omitempty"`
	Model         string `json:"m,omitempty"`
	UpstreamModel string `json:"um,omitempty"`
	Prompt        int64  `json:"p,omitempty"`
	Cached        int64  `json:"pc,omitempty"`
	Completion    int64  `json:"x,omitempty"`
	CostMicros    int64  `json:"cost,omitempty"`
	LatencyMs     int    `json:"lat,omitempty"`
	TTFTMs        *int   `json:"ttft,omitempty"`
	Status        int    `json:"s,omitempty"`
	Error         string `json:"e,omitempty"`
	Stream        bool   `json:"st,omitempty"`
	Estimated     bool   `json:"est,omitempty"`
	Attempts      int    `json:"a,omitempty"`
	At            int64  `json:"at"` // unix microseconds: the call's start, or a progress record's time
}

func recordOf(l *Log) usageRecord {
	return usageRecord{TenantID: l.TenantID, RequestID: l.RequestID, UserID: l.UserID, KeyID: l.KeyID, ChannelID: l.ChannelID, BYOK: l.BYOK,
		Op: l.Op, Model: l.Model, UpstreamModel: l.UpstreamModel, Prompt: l.PromptTokens, Cached: l.CachedTokens, Completion: l.CompletionTokens,
		CostMicros: l.CostMicros, LatencyMs: l.LatencyMs, TTFTMs: l.TTFTMs, Status: l.Status, Error: l.Error, Stream: l.Stream,
		Estimated: l.Estimated, Attempts: l.Attempts, At: l.CreatedAt.UnixMicro()}
}

func (r usageRecord) log(id string) *Log {
	return &Log{TenantID: r.TenantID, ID: id, RequestID: r.RequestID, UserID: r.UserID, KeyID: r.KeyID, ChannelID: r.ChannelID, BYOK: r.BYOK,
		Op: r.Op, Model: r.Model, UpstreamModel: r.UpstreamModel, PromptTokens: r.Prompt, CachedTokens: r.Cached, CompletionTokens: r.Completion,
		CostMicros: r.CostMicros, LatencyMs: r.LatencyMs, TTFTMs: r.TTFTMs, Status: r.Status, Error: r.Error, Stream: r.Stream,
		Estimated: r.Estimated, Attempts: r.Attempts, CreatedAt: time.UnixMicro(r.At).UTC()}
}

// progressRecord is what a stream delivered by a time: the prompt counted
// locally and the completion tokens of the chunks written to the client.
type progressRecord struct {
	Prompt     int64 `json:"p"`
	Completion int64 `json:"x"`
	At         int64 `json:"at"`
}

// cutError is the log row's error for a call the gateway stopped mid-stream.
const cutError = "the gateway stopped mid-stream (a crash or a shutdown); billed for what was delivered, estimated from the usage journal"

// refusing reports why new calls are refused: the database failed its last
// write and the usage journal cannot take one either (or there is none), so
// a call's usage could be recorded nowhere.
func (g *Service) refusing() error {
	if !g.writer.dbDown.Load() {
		return nil
	}
	if g.journal != nil && g.journal.Err() == nil {
		return nil
	}
	return errUnrecorded()
}

// journalStart writes a stream's start record before its first byte goes to
// the client. When the journal cannot take it and the database failed too,
// the call is refused (nothing was sent yet).
func (g *Service) journalStart(l *Log, cl *call, priced bool) error {
	if g.journal == nil {
		return g.refusing()
	}
	r := recordOf(l)
	r.Priced, r.Prompt = priced, cl.estPrompt
	if cl.priceModel != cl.Model {
		r.PriceModel = cl.priceModel
	}
	jc, err := g.journal.Begin(l.ID, journal.Start, mustJSON(r))
	if err != nil {
		if g.writer.dbDown.Load() {
			return errUnrecorded()
		}
		g.log.Warn("the usage journal cannot take a stream's start; the stream runs on the database alone", "err", err)
		return nil
	}
	l.jc, l.journaled = jc, true
	return nil
}

// progress tracks what a stream delivered and journals it at most every
// ProgressEvery (the gap a crash can cost a stream).
type progress struct {
	g          *Service
	l          *Log
	cl         *call
	last       time.Time
	off        int // the part of the chunks already counted
	prompt     int64
	completion int64
}

// delivered is called after chunks up to len(chunks) reached the client.
func (p *progress) delivered(chunks []byte) {
	if p.l.jc == nil {
		return
	}
	now := p.g.now()
	if now.Sub(p.last) < p.g.opts.ProgressEvery {
		return
	}
	p.last = now
	if p.prompt == 0 {
		p.prompt = p.g.countLocally(p.cl, "").PromptTokens
	}
	p.completion += p.g.tokens.count(streamText(chunks[p.off:]))
	p.off = len(chunks)
	if err := p.g.journal.Append(p.l.ID, journal.Progress, mustJSON(progressRecord{Prompt: p.prompt, Completion: p.completion, At: now.UnixMicro()})); err != nil {
		p.g.log.Warn("the usage journal cannot take a stream's progress", "err", err)
	}
}

// journalFinal writes a call's final record before the database is asked
// for it, so its exact usage survives a failing commit or a crash.
func (g *Service) journalFinal(l *Log) {
	if g.journal == nil {
		return
	}
	data := mustJSON(recordOf(l))
	if l.jc != nil {
		if err := g.journal.Append(l.ID, journal.Final, data); err != nil {
			g.log.Warn("the usage journal cannot take a call's final usage", "err", err)
		}
		return // the start record keeps the call either way
	}
	jc, err := g.journal.Begin(l.ID, journal.Final, data)
	if err != nil {
		g.log.Warn("the usage journal cannot take a call's usage", "err", err)
		return
	}
	l.jc, l.journaled = jc, true
}

// Recover settles the calls the usage journal held when it was opened (rs,
// from journal.Open): finished calls the database had not taken are billed
// as they were recorded, and calls cut off by a crash or a shutdown are
// billed for what they delivered by their last progress record, marked
// estimated (status 500). Calls the database already holds are not billed
// again. Call it once, before Run and before /v1 is served; calls the
// database refuses now stay parked and are retried by Run.
func (g *Service) Recover(ctx context.Context, rs []*journal.Recovered) (settled, parked int, err error) {
	if g.journal == nil || len(rs) == 0 {
		return 0, 0, nil
	}
	var logs []*Log
	for _, r := range rs {
		var l *Log
		switch {
		case r.Final != nil:
			var f usageRecord
			if err := json.Unmarshal(r.Final, &f); err != nil {
				g.log.Error("an unreadable final record in the usage journal is skipped", "log", r.ID, "err", err)
				g.journal.Settled(r.Call)
				continue
			}
			l = f.log(r.ID)
		case r.Start != nil:
			var s usageRecord
			if err := json.Unmarshal(r.Start, &s); err != nil {
				g.log.Error("an unreadable start record in the usage journal is skipped", "log", r.ID, "err", err)
				g.journal.Settled(r.Call)
				continue
			}
			l = s.log(r.ID)
			l.Status, l.Error, l.Estimated = 500, cutError, true
			var p progressRecord
			if r.Progress != nil && json.Unmarshal(r.Progress, &p) == nil {
				if p.Prompt > 0 {
					l.PromptTokens = p.Prompt
				}
				l.CompletionTokens = max(p.Completion, 0)
				l.LatencyMs = int(max(p.At-s.At, 0) / 1000)
			}
			if s.Priced && !s.BYOK && g.opts.Billing != nil {
				model := cmp.Or(s.PriceModel, l.Model)
				cost, priced, err := g.opts.Billing.Cost(ctx, l.TenantID, model, l.PromptTokens, 0, l.CompletionTokens)
				if err == nil && !priced { // its price was removed since: never billed 0 in silence
					err = fmt.Errorf("the model %q has no price any more", model)
				}
				if err != nil {
					// Never a reason not to start: kept for an operator instead.
					g.log.Error("a call cut off mid-stream cannot be priced; it is set aside in the usage journal's rejected.jsonl", "log", r.ID, "err", err)
					if rerr := g.journal.Reject(r.Call, r.Start); rerr != nil {
						return settled, parked, errs.Wrap(rerr, "set aside a call the journal cannot price")
					}
					continue
				}
				l.CostMicros = int64(cost)
			}
		default:
			g.journal.Settled(r.Call) // only progress: its start was settled and deleted before
			continue
		}
		l.jc, l.journaled = r.Call, true
		logs = append(logs, l)
	}
	for start := 0; start < len(logs); start += 500 {
		ok, failed := g.writer.commit(logs[start:min(start+500, len(logs))])
		settled += len(ok)
		parked += len(failed)
		g.writer.pending = append(g.writer.pending, failed...)
		if len(failed) > 0 && len(ok) == 0 {
			g.writer.dbDown.Store(true)
		}
	}
	if settled+parked > 0 {
		g.log.Info("settled AI usage from the usage journal", "settled", settled, "parked", parked)
	}
	return settled, parked, nil
}
