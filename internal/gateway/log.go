package gateway

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/google/uuid"
	"gorm.io/gorm"

	"github.com/tenantgate/tenantgate/internal/actor"
	"github.com/tenantgate/tenantgate/internal/billing"
	"github.com/tenantgate/tenantgate/internal/errs"
	"github.com/tenantgate/tenantgate/internal/gateway/journal"
	"github.com/tenantgate/tenantgate/internal/money"
	"github.com/tenantgate/tenantgate/internal/store"
)

// Log is one relayed call in the request log.
type Log struct {
	TenantID         string    `gorm:"primaryKey" json:"tenantId"`
	ID               string    `gorm:"primaryKey" json:"id"`
	RequestID        string    `json:"requestId"`
	UserID           string    `json:"userId"`
	KeyID            string    `json:"keyId"`
	ChannelID        string    `json:"channelId"`
	BYOK             bool      `gorm:"column:byok" json:"byok"`
	Op               string    `json:"op"`
	Model            string    `json:"model"`
	UpstreamModel    string    `json:"upstreamModel"`
	PromptTokens     int64     `json:"promptTokens"`
	CachedTokens     int64     `json:"cachedTokens"`
	CompletionTokens int64     `json:"completionTokens"`
	CostMicros       int64     `json:"-"`
	Cost             string    `gorm:"-" json:"cost"`
	LatencyMs        int       `json:"latencyMs"`
	TTFTMs           *int      `gorm:"column:ttft_ms" json:"ttftMs"`
	Status           int       `json:"status"`
	Error            string    `json:"error,omitempty"`
	Stream           bool      `json:"stream"`
	Estimated        bool      `json:"estimated"`
	Attempts         int       `json:"attempts"`
	Prompt           *string   `json:"prompt,omitempty"`
	Completion       *string   `json:"completion,omitempty"`
	CreatedAt        time.Time `json:"createdAt"`
	TotalTokens      int64     `gorm:"-" json:"totalTokens"`

	hold      *billing.Hold // released or settled with the row
	done      chan error    // the writer's answer
	jc        *journal.Call // the call's place in the usage journal (nil: not in it)
	journaled bool          // the journal holds the call's usage (its final record, or a stream's start)
	strikes   int           // retries refused while the database took other calls
}

// TableName maps logs to ai_request_logs.
func (Log) TableName() string { return "ai_request_logs" }

// TenantOwned marks logs as tenant data.
func (Log) TenantOwned() {}

func (l *Log) fill() *Log {
	l.Cost = money.Micros(l.CostMicros).String()
	l.TotalTokens = money.SatAdd(l.PromptTokens, l.CompletionTokens)
	return l
}

// writer makes finished calls durable in batches: every call waits until
// its log row, its ledger debit and its metered usage are committed (one
// transaction per tenant per batch), so usage is never billed twice, and the
// batch shares one commit. When the database cannot take a batch, its calls
// are parked: kept (in memory, and in the usage journal, which already holds
// them) and retried until the database takes them; their clients need not
// wait for that.
type writer struct {
	g       *Service
	in      chan *Log
	closeMu sync.RWMutex
	closed  bool

	// dbDown is set when the database took none of a batch's calls and
	// cleared when it takes one again: meanwhile finished calls are parked
	// at once instead of waiting on a failing database.
	dbDown  atomic.Bool
	pending []*Log // parked calls (only the run goroutine touches it)
	backoff time.Duration
	took    bool // the database took a call since the last retry round
}

func newWriter(g *Service) *writer { return &writer{g: g, in: make(chan *Log, 4096)} }

// errWriterClosed is returned for records offered after shutdown began.
var errWriterClosed = errs.E(errs.KindUnavailable, errs.CodeServiceUnavailable, "the server is shutting down; try again")

// errParked says the database did not take the call yet; it is kept and
// retried (the journal holds it if l.journaled).
var errParked = errors.New("usage parked until the database takes it")

// errUnrecorded refuses a call whose answer was not delivered and whose
// usage neither the database nor the journal could take: it is not served.
func errUnrecorded() error {
	e := errs.E(errs.KindUnavailable, errs.CodeServiceUnavailable, "usage cannot be recorded right now (the database and the usage journal both fail); try again shortly")
	if x, ok := errs.As(e); ok {
		x.RetryAfter = 2
	}
	return e
}

// write queues l and waits until it is committed (nil), parked (errParked)
// or refused.
func (w *writer) write(ctx context.Context, l *Log) error {
	l.done = make(chan error, 1)
	w.closeMu.RLock()
	if w.closed {
		w.closeMu.RUnlock()
		return errWriterClosed
	}
	w.in <- l
	w.closeMu.RUnlock()
	return <-l.done // not ctx: once queued, the record is written whatever the client does
}

func (w *writer) close() {
	w.closeMu.Lock()
	if !w.closed {
		w.closed = true
		close(w.in)
	}
	w.closeMu.Unlock()
}

// run writes batches until the queue is closed and drained, and retries
// parked calls (and probes a failed journal or database) meanwhile. At the
// end it tries the parked calls once more; what is still parked stays in
// the journal for the next start.
func (w *writer) run() {
	last := 0
	retry := time.NewTimer(time.Hour)
	retry.Stop()
	armed := false
	arm := func() {
		if armed || (len(w.pending) == 0 && !w.dbDown.Load() && !w.journalFailed()) {
			return
		}
		if w.backoff == 0 {
			w.backoff = 100 * time.Millisecond
		}
		retry.Reset(w.backoff)
		armed = true
	}
	for {
		arm()
		select {
		case first, ok := <-w.in:
			if !ok {
				if len(w.pending) > 0 {
					w.retryPending()
				}
				if n := len(w.pending); n > 0 {
					w.g.log.Error("shutting down with AI usage the database has not taken; the usage journal keeps it for the next start", "calls", n, "journal", w.g.journal != nil)
				}
				return
			}
			batch := []*Log{first}
			// Under load (the last batch had company) wait a moment for more, so
			// calls share commits; a lone call is written at once.
			if last > 1 && w.g.opts.FlushEvery > 0 {
				time.Sleep(w.g.opts.FlushEvery)
			}
		more:
			for len(batch) < 500 {
				select {
				case l, ok := <-w.in:
					if !ok {
						break more
					}
					batch = append(batch, l)
				default:
					break more
				}
			}
			last = len(batch)
			w.flush(batch)
		case <-retry.C:
			armed = false
			w.retryPending()
		}
	}
}

func (w *writer) journalFailed() bool { return w.g.journal != nil && w.g.journal.Err() != nil }

// flush commits a batch; what the database does not take is parked.
func (w *writer) flush(batch []*Log) {
	if w.dbDown.Load() {
		for _, l := range batch {
			w.park(l)
		}
		return
	}
	ok, failed := w.commit(batch)
	for _, l := range ok {
		l.done <- nil
	}
	w.took = w.took || len(ok) > 0
	if len(failed) > 0 && len(ok) == 0 {
		w.dbDown.Store(true)
	}
	for _, l := range failed {
		w.park(l)
	}
}

// park keeps a call the database did not take, or drops it when that is
// safe and nothing else would keep it: an answer not yet delivered whose
// usage the journal does not hold is refused, not served.
func (w *writer) park(l *Log) {
	if !l.Stream && !l.journaled && l.Status < 400 {
		w.g.release(l.hold)
		l.done <- errUnrecorded()
		return
	}
	if l.done != nil {
		l.done <- errParked
	}
	w.pending = append(w.pending, l)
}

// retryPending offers parked calls to the database again, probes a failed
// journal, and backs off while the database keeps failing.
func (w *writer) retryPending() {
	if w.journalFailed() {
		if err := w.g.journal.Probe(); err == nil {
			w.g.log.Info("the usage journal takes writes again")
		}
	}
	if len(w.pending) == 0 {
		if w.dbDown.Load() {
			ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
			if w.g.store.Ping(ctx) == nil {
				w.dbDown.Store(false)
			}
			cancel()
		}
		w.next(!w.dbDown.Load())
		return
	}
	n := min(len(w.pending), 500)
	batch := w.pending[:n:n]
	ok, failed := w.commit(batch)
	rest := slices.Clone(w.pending[n:])
	for _, l := range ok {
		l.strikes = 0
	}
	took := w.took || len(ok) > 0
	w.took = false
	var kept []*Log
	for _, l := range failed {
		// Refused while the database took other calls (in this round or
		// since the last): this call, not the database, is at fault. After a
		// few such rounds it is set aside.
		if took {
			l.strikes++
		}
		if l.strikes >= 5 {
			w.reject(l)
			continue
		}
		kept = append(kept, l)
	}
	w.pending = append(kept, rest...)
	if len(ok) > 0 {
		w.g.log.Info("the database took parked AI usage", "calls", len(ok), "stillParked", len(w.pending))
	}
	w.dbDown.Store(!took && len(failed) > 0)
	w.next(len(ok) > 0)
}

// next sets the wait before the next retry: short after progress, doubling
// (to 2 s) while nothing moves.
func (w *writer) next(progress bool) {
	if progress {
		w.backoff = 100 * time.Millisecond
		return
	}
	w.backoff = min(max(w.backoff*2, 100*time.Millisecond), 2*time.Second)
}

// reject sets aside a call the database refuses for good (kept in the
// journal directory's rejected.jsonl for an operator).
func (w *writer) reject(l *Log) {
	w.g.log.Error("the database refuses an AI call's usage again and again; it is set aside in the usage journal's rejected.jsonl",
		"tenant", l.TenantID, "log", l.ID, "requestId", l.RequestID)
	w.g.release(l.hold)
	if w.g.journal != nil && l.jc != nil {
		if err := w.g.journal.Reject(l.jc, mustJSON(recordOf(l))); err != nil {
			w.g.log.Error("could not set aside a rejected AI call; it stays in the usage journal", "log", l.ID, "err", err)
		}
	}
}

// commit writes calls per tenant: each tenant's in one transaction, or, when
// that fails, one by one so one bad row cannot cancel the others' usage.
// Committed calls are settled in the journal.
func (w *writer) commit(batch []*Log) (ok, failed []*Log) {
	byTenant := map[string][]*Log{}
	var order []string
	for _, l := range batch {
		if _, ok := byTenant[l.TenantID]; !ok {
			order = append(order, l.TenantID)
		}
		byTenant[l.TenantID] = append(byTenant[l.TenantID], l)
	}
	ctx := actor.With(context.Background(), actor.System("gateway metering"))
	for _, t := range order {
		logs := byTenant[t]
		err := w.g.persist(ctx, t, logs)
		if err != nil && len(logs) > 1 {
			for _, l := range logs {
				if w.g.persist(ctx, t, []*Log{l}) != nil {
					failed = append(failed, l)
				} else {
					ok = append(ok, l)
				}
			}
			continue
		}
		if err != nil {
			failed = append(failed, logs...)
		} else {
			ok = append(ok, logs...)
		}
	}
	if w.g.journal != nil {
		for _, l := range ok {
			w.g.journal.Settled(l.jc)
		}
	}
	return ok, failed
}

// persist writes one tenant's finished calls in one transaction: the log
// rows, the ledger debit (with each key's spend) and the metered tokens and
// messages. The ledger's usage entries therefore always equal the logs' cost.
// It is idempotent: a call whose row exists (the log id is the key) was
// settled before and is neither logged, charged nor metered again, so a
// retry after a commit whose answer was lost, or the journal's replay, bills
// once.
func (g *Service) persist(ctx context.Context, tenantID string, logs []*Log) error {
	ctx = store.WithTenant(ctx, tenantID) // audit events and notifications written below belong to the tenant
	if g.opts.Meter != nil {
		if err := g.opts.Meter.Warm(ctx, tenantID); err != nil { // never a second transaction inside the one below
			return errs.Wrap(err, "record usage")
		}
	}
	ctx, cancel := context.WithTimeout(ctx, 30*time.Second) // a hung database must not hold the writer for ever
	defer cancel()
	var after func()
	var dup []*Log
	err := g.store.Tx(ctx, func(tx *gorm.DB) error {
		after, dup = nil, nil
		inserted, err := insertLogs(tx, logs)
		if err != nil {
			return err
		}
		charges := make([]billing.Charge, 0, len(logs))
		var tokens, messages int64
		first := ""
		for _, l := range logs {
			if !inserted[l.ID] {
				dup = append(dup, l)
				continue
			}
			if first == "" {
				first = l.ID
			}
			if l.hold != nil || l.CostMicros > 0 {
				charges = append(charges, billing.Charge{Hold: l.hold, KeyID: l.KeyID, Amount: money.Micros(l.CostMicros)})
			}
			tokens = money.SatAdd(tokens, money.SatAdd(l.PromptTokens, l.CompletionTokens))
			if l.Op == "chat" && l.Status < 400 {
				messages++
			}
		}
		if len(charges) > 0 && g.opts.Billing != nil {
			// The batch's reference is its first new row's id: new rows are
			// written once, so a reference is never used twice.
			if after, err = g.opts.Billing.SettleTx(ctx, tx, tenantID, charges, "batch:"+first); err != nil {
				return err
			}
		}
		if g.opts.Meter != nil && (tokens > 0 || messages > 0) {
			vals := map[string]int64{}
			if tokens > 0 {
				vals["tokens"] = tokens
			}
			if messages > 0 {
				vals["messages"] = messages
			}
			return g.opts.Meter.AddMeteredTx(ctx, tx, tenantID, vals)
		}
		return nil
	})
	if err != nil {
		g.log.Error("could not record AI usage", "tenant", tenantID, "calls", len(logs), "err", err)
		return errs.Internal(err, "record usage")
	}
	if after != nil {
		after()
	}
	for _, l := range dup {
		g.log.Warn("an AI call's usage was recorded before; not billed again", "tenant", tenantID, "log", l.ID)
		g.release(l.hold)
	}
	return nil
}

const logColumns = 24

// insertLogs writes rows with multi-row INSERTs and returns the ids of
// those it wrote: a row whose id exists is skipped.
func insertLogs(tx *gorm.DB, logs []*Log) (map[string]bool, error) {
	inserted := make(map[string]bool, len(logs))
	for start := 0; start < len(logs); start += 100 {
		chunk := logs[start:min(start+100, len(logs))]
		var sb strings.Builder
		sb.WriteString(`INSERT INTO ai_request_logs (tenant_id, id, request_id, user_id, key_id, channel_id, byok, op, model, upstream_model,
			prompt_tokens, cached_tokens, completion_tokens, cost_micros, latency_ms, ttft_ms, status, error, stream, estimated, attempts,
			prompt, completion, created_at) VALUES `)
		args := make([]any, 0, len(chunk)*logColumns)
		for i, l := range chunk {
			if i > 0 {
				sb.WriteString(", ")
			}
			sb.WriteString("(?" + strings.Repeat(", ?", logColumns-1) + ")")
			args = append(args, l.TenantID, l.ID, l.RequestID, l.UserID, l.KeyID, l.ChannelID, l.BYOK, l.Op, l.Model, l.UpstreamModel,
				l.PromptTokens, l.CachedTokens, l.CompletionTokens, l.CostMicros, l.LatencyMs, l.TTFTMs, l.Status, l.Error, l.Stream,
				l.Estimated, l.Attempts, l.Prompt, l.Completion, l.CreatedAt)
		}
		sb.WriteString(" ON CONFLICT (tenant_id, id) DO NOTHING RETURNING id")
		var ids []string
		if err := tx.Raw(sb.String(), args...).Scan(&ids).Error; err != nil {
			return nil, err
		}
		for _, id := range ids {
			inserted[id] = true
		}
	}
	return inserted, nil
}

// LogFilter narrows the request log.
type LogFilter struct {
	Model     string
	KeyID     string
	UserID    string
	ChannelID string
	Status    string // ok | error | a status code
	From, To  time.Time
	Query     string // a request id, or part of a model name or an error
}

// Logs lists the tenant's request log, newest first.
func (g *Service) Logs(ctx context.Context, tenantID string, f LogFilter, p store.Page) ([]*Log, *string, error) {
	var out []*Log
	err := g.store.Tx(store.WithTenant(ctx, tenantID), func(tx *gorm.DB) error {
		q := tx.Model(&Log{})
		for col, v := range map[string]string{"model": f.Model, "key_id": f.KeyID, "user_id": f.UserID, "channel_id": f.ChannelID} {
			if v != "" {
				q = q.Where(col+" = ?", v)
			}
		}
		switch f.Status {
		case "":
		case "ok":
			q = q.Where("status < 400")
		case "error":
			q = q.Where("status >= 400")
		default:
			var code int
			if _, err := fmt.Sscan(f.Status, &code); err != nil || code < 100 || code > 599 {
				return errs.Invalid("bad status filter", map[string]string{"status": "must be ok, error or an HTTP status code"})
			}
			q = q.Where("status = ?", code)
		}
		if f.Query != "" {
			like := "%" + strings.NewReplacer(`\`, `\\`, "%", `\%`, "_", `\_`).Replace(f.Query) + "%"
			q = q.Where(`request_id = ? OR model LIKE ? ESCAPE '\' OR error LIKE ? ESCAPE '\'`, f.Query, like, like)
		}
		if !f.From.IsZero() {
			q = q.Where("created_at >= ?", f.From.UTC())
		}
		if !f.To.IsZero() {
			q = q.Where("created_at < ?", f.To.UTC())
		}
		return p.Apply(q, "id").Find(&out).Error
	})
	if err != nil {
		return nil, nil, errs.Wrap(err, "list the request log")
	}
	for _, l := range out {
		l.fill()
	}
	items, next := store.Trim(out, p, func(l *Log) string { return l.ID })
	return items, next, nil
}

// PruneLogs applies each tenant's log retention (the default to tenants
// that never set one) and returns the rows removed.
func (g *Service) PruneLogs(ctx context.Context) (int64, error) {
	now := g.now()
	var n int64
	err := g.store.Tx(store.WithPlatform(ctx, "request log retention"), func(tx *gorm.DB) error {
		r := tx.Where("created_at < ? AND tenant_id NOT IN (SELECT tenant_id FROM ai_settings)", now.AddDate(0, 0, -DefaultLogRetentionDays)).Delete(&Log{})
		if r.Error != nil {
			return r.Error
		}
		n += r.RowsAffected
		var sets []Settings
		if err := tx.Where("log_retention_days > 0").Find(&sets).Error; err != nil {
			return err
		}
		for _, s := range sets {
			r := tx.Where("tenant_id = ? AND created_at < ?", s.TenantID, now.AddDate(0, 0, -s.LogRetentionDays)).Delete(&Log{})
			if r.Error != nil {
				return r.Error
			}
			n += r.RowsAffected
		}
		return nil
	})
	return n, err
}

func newID() string { return uuid.Must(uuid.NewV7()).String() }
