package gateway

import (
	"context"
	"fmt"
	"strings"
	"sync"
	"time"

	"github.com/google/uuid"
	"gorm.io/gorm"

	"github.com/tenantgate/tenantgate/internal/actor"
	"github.com/tenantgate/tenantgate/internal/billing"
	"github.com/tenantgate/tenantgate/internal/errs"
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

	hold *billing.Hold // released or settled with the row
	done chan error    // the writer's answer
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
// transaction per tenant per batch), so usage is never lost and never
// billed twice, and the batch shares one commit.
type writer struct {
	g       *Service
	in      chan *Log
	closeMu sync.RWMutex
	closed  bool
}

func newWriter(g *Service) *writer { return &writer{g: g, in: make(chan *Log, 4096)} }

// errWriterClosed is returned for records offered after shutdown began.
var errWriterClosed = errs.E(errs.KindUnavailable, errs.CodeServiceUnavailable, "the server is shutting down; try again")

// write queues l and waits until it is durable.
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

// run writes batches until the queue is closed and drained.
func (w *writer) run() {
	last := 0
	for first := range w.in {
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
	}
}

func (w *writer) flush(batch []*Log) {
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
		for _, l := range logs {
			if err != nil && len(logs) > 1 {
				// One bad row must not cancel the others' usage: write them one by one.
				l.done <- w.g.persist(ctx, t, []*Log{l})
			} else {
				l.done <- err
			}
		}
	}
}

// persist writes one tenant's finished calls in one transaction: the log
// rows, the ledger debit (with each key's spend) and the metered tokens and
// messages. The ledger's usage entries therefore always equal the logs' cost.
func (g *Service) persist(ctx context.Context, tenantID string, logs []*Log) error {
	var after func()
	charges := make([]billing.Charge, 0, len(logs))
	var tokens, messages int64
	for _, l := range logs {
		if l.hold != nil || l.CostMicros > 0 {
			charges = append(charges, billing.Charge{Hold: l.hold, KeyID: l.KeyID, Amount: money.Micros(l.CostMicros)})
		}
		tokens = money.SatAdd(tokens, money.SatAdd(l.PromptTokens, l.CompletionTokens))
		if l.Op == "chat" && l.Status < 400 {
			messages++
		}
	}
	ctx = store.WithTenant(ctx, tenantID) // audit events and notifications written below belong to the tenant
	if g.opts.Meter != nil {
		if err := g.opts.Meter.Warm(ctx, tenantID); err != nil { // never a second transaction inside the one below
			return errs.Wrap(err, "record usage")
		}
	}
	err := g.store.Tx(ctx, func(tx *gorm.DB) error {
		if err := insertLogs(tx, logs); err != nil {
			return err
		}
		if len(charges) > 0 && g.opts.Billing != nil {
			var err error
			if after, err = g.opts.Billing.SettleTx(ctx, tx, tenantID, charges, "batch:"+logs[0].ID); err != nil {
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
		if len(logs) == 1 { // a batch is retried row by row; a single row's hold goes back now
			for _, c := range charges {
				g.release(c.Hold)
			}
		}
		return errs.Internal(err, "record usage")
	}
	if after != nil {
		after()
	}
	return nil
}

const logColumns = 24

// insertLogs writes rows with multi-row INSERTs.
func insertLogs(tx *gorm.DB, logs []*Log) error {
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
		if err := tx.Exec(sb.String(), args...).Error; err != nil {
			return err
		}
	}
	return nil
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
