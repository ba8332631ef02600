package quota

import (
	"context"
	"fmt"
	"github.com/tenantgate/tenantgate/internal/notify"
	"regexp"
	"slices"
	"strings"
	"time"

	"gorm.io/gorm"

	"github.com/tenantgate/tenantgate/internal/audit"
	"github.com/tenantgate/tenantgate/internal/errs"
	"github.com/tenantgate/tenantgate/internal/money"
	"github.com/tenantgate/tenantgate/internal/store"
)

// Event is one metered usage event (CloudEvents-style).
type Event struct {
	TenantID   string     `gorm:"primaryKey" json:"tenant,omitempty"`
	ID         string     `gorm:"primaryKey" json:"id"`
	Meter      string     `json:"meter"`
	Value      int64      `json:"value"`
	OccurredAt time.Time  `gorm:"column:occurred_at" json:"time"`
	Attributes store.JSON `gorm:"column:attributes" json:"attributes,omitempty"`
	ReceivedAt time.Time  `json:"-"`
}

// TableName maps events to usage_events.
func (Event) TableName() string { return "usage_events" }

// TenantOwned marks events as tenant data.
func (Event) TenantOwned() {}

type counter struct {
	TenantID    string    `gorm:"primaryKey"`
	Meter       string    `gorm:"primaryKey"`
	Period      string    `gorm:"primaryKey"`
	PeriodStart time.Time `gorm:"primaryKey"`
	Value       int64
}

func (counter) TableName() string { return "usage_counters" }
func (counter) TenantOwned()      {}

// MeteredLimit ties a meter to the plan limit that bounds it per period.
type MeteredLimit struct {
	Limit  string
	Period string // hour | month
}

// MeteredLimits are the meters with a plan limit.
var MeteredLimits = map[string]MeteredLimit{
	"tokens":    {"monthlyTokens", "month"},
	"messages":  {"monthlyMessages", "month"},
	"api_calls": {"apiCallsPerHour", "hour"},
}

// PeriodStart returns the start of the period containing t (UTC).
func PeriodStart(period string, t time.Time) time.Time {
	t = t.UTC()
	if period == "hour" {
		return t.Truncate(time.Hour)
	}
	return time.Date(t.Year(), t.Month(), 1, 0, 0, 0, 0, time.UTC)
}

func periodEnd(period string, start time.Time) time.Time {
	if period == "hour" {
		return start.Add(time.Hour)
	}
	return start.AddDate(0, 1, 0)
}

var (
	meterRe   = regexp.MustCompile(`^[a-z][a-z0-9_.-]{0,63}$`)
	eventIDRe = regexp.MustCompile(`^[A-Za-z0-9._:-]{1,200}$`)
)

// MaxBatch is the most events one request may carry.
const MaxBatch = 1000

// MaxEventValue is the largest value one usage event may carry (10^15), and
// the largest amount /internal/quota/check asks about. A batch adds at most
// MaxBatch times it to a counter, which fits in 64 bits; the counters
// saturate at math.MaxInt64 rather than wrap, so many batches cannot wrap
// them either.
const MaxEventValue int64 = 1_000_000_000_000_000

// Validate reports the problems of events, field names prefixed by index.
func (s *Service) validateEvents(evs []Event) error {
	f := errs.Fields{}
	if len(evs) == 0 || len(evs) > MaxBatch {
		f.Add("events", fmt.Sprintf("send 1 to %d events", MaxBatch))
	}
	now := s.now()
	seen := map[string]bool{}
	for i, e := range evs {
		p := fmt.Sprintf("events[%d].", i)
		if len(evs) == 1 {
			p = ""
		}
		if !eventIDRe.MatchString(e.ID) {
			f.Add(p+"id", "is required: 1-200 characters of A-Z a-z 0-9 . _ : - (it makes the event idempotent)")
		} else if seen[e.ID] {
			f.Add(p+"id", "appears twice in this batch")
		}
		seen[e.ID] = true
		if !meterRe.MatchString(e.Meter) {
			f.Add(p+"meter", "must be 1-64 characters of a-z 0-9 _ . - starting with a letter")
		}
		if e.Value < 0 || e.Value > MaxEventValue {
			f.Add(p+"value", fmt.Sprintf("must be from 0 to %d", MaxEventValue))
		}
		if e.OccurredAt.After(now.Add(5 * time.Minute)) {
			f.Add(p+"time", "is in the future")
		}
		if len(e.Attributes) > 4096 {
			f.Add(p+"attributes", "must be at most 4096 bytes")
		} else if len(e.Attributes) > 0 && e.Attributes[0] != '{' {
			f.Add(p+"attributes", "must be an object")
		}
	}
	return f.Err()
}

// IngestResult says what an ingestion did.
type IngestResult struct {
	Accepted   int `json:"accepted"`
	Duplicates int `json:"duplicates"`
}

// Ingest records events for the tenant in ctx, once each: an event whose
// (tenant, id) was seen before is a duplicate and counts nothing. Metered
// events add to their period counter, and crossing 80 % or 100 % of the
// limit writes an audit event and a notification record.
func (s *Service) Ingest(ctx context.Context, evs []Event) (*IngestResult, error) {
	if err := s.validateEvents(evs); err != nil {
		return nil, err
	}
	tenantID := store.TenantFrom(ctx)
	res := &IngestResult{}
	now := s.now()
	if err := s.Warm(ctx, tenantID); err != nil {
		return nil, err
	}
	err := s.store.Tx(ctx, func(tx *gorm.DB) error {
		adds := map[[2]string]int64{} // meter, period start → added
		starts := map[[2]string]time.Time{}
		for i := range evs {
			ev := &evs[i]
			ev.TenantID, ev.ReceivedAt = tenantID, now
			if ev.OccurredAt.IsZero() {
				ev.OccurredAt = now
			}
			ev.OccurredAt = ev.OccurredAt.UTC()
			if len(ev.Attributes) == 0 {
				ev.Attributes = store.JSON("{}")
			}
		}
		// One multi-row insert a batch: the ids it returns are the events not
		// seen before, so duplicates are exact even between concurrent batches.
		inserted := map[string]bool{}
		for chunk := range slices.Chunk(evs, 200) {
			var sb strings.Builder
			args := make([]any, 0, len(chunk)*7)
			sb.WriteString("INSERT INTO usage_events (tenant_id, id, meter, value, occurred_at, attributes, received_at) VALUES ")
			for i, ev := range chunk {
				if i > 0 {
					sb.WriteString(", ")
				}
				sb.WriteString("(?, ?, ?, ?, ?, ?, ?)")
				args = append(args, tenantID, ev.ID, ev.Meter, ev.Value, ev.OccurredAt, string(ev.Attributes), now)
			}
			sb.WriteString(" ON CONFLICT DO NOTHING RETURNING id")
			var ids []string
			if err := tx.Raw(sb.String(), args...).Scan(&ids).Error; err != nil {
				return err
			}
			for _, id := range ids {
				inserted[id] = true
			}
		}
		for _, ev := range evs {
			if !inserted[ev.ID] {
				res.Duplicates++
				continue
			}
			res.Accepted++
			if m, ok := MeteredLimits[ev.Meter]; ok && ev.Value > 0 {
				start := PeriodStart(m.Period, ev.OccurredAt)
				k := [2]string{ev.Meter, start.Format(time.RFC3339)}
				adds[k] = money.SatAdd(adds[k], ev.Value)
				starts[k] = start
			}
		}
		return s.addCountersTx(ctx, tx, tenantID, adds, starts)
	})
	if err != nil {
		return nil, errs.Wrap(err, "record usage")
	}
	return res, nil
}

// cachedInTx returns the tenant's entitlements for work inside an open
// transaction: from the cache even if it just expired, since opening a
// second transaction there would wait on the first (SQLite holds its one
// write lock from BEGIN). Callers warm the cache before they begin.
func (s *Service) cachedInTx(ctx context.Context, tx *gorm.DB, tenantID string) (*Entitlements, error) {
	s.mu.Lock()
	c, ok := s.ents[tenantID]
	s.mu.Unlock()
	if ok {
		return c.e, nil
	}
	return s.EntitlementsTx(ctx, tx, tenantID) // not warmed: read through the open transaction
}

// Warm loads the tenant's entitlements into the cache, so metering inside
// a transaction that follows need not read them.
func (s *Service) Warm(ctx context.Context, tenantID string) error {
	_, err := s.Cached(ctx, tenantID)
	return err
}

// addCountersTx adds to the tenant's period counters (keyed by meter and
// period start) and records the thresholds each addition crosses.
func (s *Service) addCountersTx(ctx context.Context, tx *gorm.DB, tenantID string, adds map[[2]string]int64, starts map[[2]string]time.Time) error {
	if len(adds) == 0 {
		return nil
	}
	keys := make([][2]string, 0, len(adds))
	for k := range adds {
		keys = append(keys, k)
	}
	slices.SortFunc(keys, func(a, b [2]string) int { return strings.Compare(a[0]+a[1], b[0]+b[1]) })
	// One statement per group of counters with distinct meters (usually all
	// of them): add, and read back the new totals.
	var groups [][][2]string
	for _, k := range keys {
		placed := false
		for i, g := range groups {
			if !slices.ContainsFunc(g, func(o [2]string) bool { return o[0] == k[0] }) {
				groups[i], placed = append(g, k), true
				break
			}
		}
		if !placed {
			groups = append(groups, [][2]string{k})
		}
	}
	totals := map[[2]string]int64{}
	for _, g := range groups {
		var sb strings.Builder
		args := make([]any, 0, len(g)*5)
		sb.WriteString("INSERT INTO usage_counters (tenant_id, meter, period, period_start, value) VALUES ")
		for i, k := range g {
			if i > 0 {
				sb.WriteString(", ")
			}
			sb.WriteString("(?, ?, ?, ?, ?)")
			args = append(args, tenantID, k[0], MeteredLimits[k[0]].Period, starts[k], adds[k])
		}
		// Saturate rather than overflow (bigint out of range on PostgreSQL, a
		// REAL on SQLite): a counter at the cap is over every limit anyway.
		sb.WriteString(" ON CONFLICT (tenant_id, meter, period, period_start) DO UPDATE SET value = CASE WHEN usage_counters.value > " +
			maxCounterSQL + " - excluded.value THEN " + maxCounterSQL + " ELSE usage_counters.value + excluded.value END RETURNING meter, value")
		var rows []struct {
			Meter string
			Value int64
		}
		if err := tx.Raw(sb.String(), args...).Scan(&rows).Error; err != nil {
			return err
		}
		for _, r := range rows {
			for _, k := range g {
				if k[0] == r.Meter {
					totals[k] = r.Value
				}
			}
		}
	}
	var e *Entitlements
	for _, k := range keys {
		total, add := totals[k], adds[k]
		if e == nil {
			var err error
			if e, err = s.cachedInTx(ctx, tx, tenantID); err != nil {
				return err
			}
		}
		if err := s.thresholds(ctx, tx, e, k[0], MeteredLimits[k[0]], starts[k], max(total-add, 0), total); err != nil {
			return err
		}
	}
	return nil
}

// maxCounterSQL is math.MaxInt64, where the period counters stop.
const maxCounterSQL = "9223372036854775807"

// thresholds records crossing 80 % and 100 % of a metered limit.
func (s *Service) thresholds(ctx context.Context, tx *gorm.DB, e *Entitlements, meter string, m MeteredLimit, start time.Time, before, after int64) error {
	limit := e.Limit(m.Limit)
	if limit <= 0 {
		return nil
	}
	for _, pct := range []int64{80, 100} {
		at := money.SatAdd(money.SatMul(limit, pct), 99) / 100
		if before >= at || after < at {
			continue
		}
		meta := map[string]any{"limit": m.Limit, "meter": meter, "percent": pct, "used": after, "max": limit,
			"periodStart": start.Format(time.RFC3339), "resetsAt": periodEnd(m.Period, start).Format(time.RFC3339)}
		if err := audit.Record(ctx, tx, audit.Entry{EventType: "usage.threshold_reached", Resource: "usage", ResourceID: m.Limit,
			Action: "threshold", Metadata: meta}); err != nil {
			return err
		}
		priority := "high"
		if pct == 100 {
			priority = "urgent"
		}
		if err := notify.RecordTx(tx, notify.Message{TenantID: e.TenantID, Priority: priority, Metadata: meta,
			Subject: fmt.Sprintf("You have used %d%% of your %s", pct, m.Limit),
			Content: fmt.Sprintf("Your organisation has used %d of %d %s this %s. It resets at %s.", after, limit, m.Limit, m.Period,
				periodEnd(m.Period, start).Format(time.RFC1123))}, s.now()); err != nil {
			return err
		}
	}
	return nil
}

// PeriodUse is a metered limit's state in the current period.
type PeriodUse struct {
	Meter    string    `json:"meter"`
	Limit    string    `json:"limit"`
	Max      int64     `json:"max"`
	Used     int64     `json:"used"`
	ResetsAt time.Time `json:"resetsAt"`
}

// CurrentPeriods returns every metered limit's use in its current period.
func (s *Service) CurrentPeriods(ctx context.Context, tenantID string) ([]PeriodUse, error) {
	e, err := s.Cached(ctx, tenantID)
	if err != nil {
		return nil, err
	}
	now := s.now()
	var out []PeriodUse
	err = s.store.Tx(store.WithTenant(ctx, tenantID), func(tx *gorm.DB) error {
		for meter, m := range MeteredLimits {
			start := PeriodStart(m.Period, now)
			var used int64 // one row (the key is tenant, meter, period, start): MAX stays bigint where SUM would be numeric
			if err := tx.Model(&counter{}).Select("COALESCE(MAX(value), 0)").Where("meter = ? AND period = ? AND period_start = ?", meter, m.Period, start).
				Scan(&used).Error; err != nil {
				return err
			}
			out = append(out, PeriodUse{Meter: meter, Limit: m.Limit, Max: e.Limit(m.Limit), Used: used, ResetsAt: periodEnd(m.Period, start)})
		}
		return nil
	})
	if err != nil {
		return nil, errs.Internal(err, "read usage counters")
	}
	return out, nil
}

// CheckPeriod says whether amount more of a metered usage fits the current
// period; when it does not, the error is 429 TENANT_QUOTA_EXCEEDED with the
// limit, the use and when the period resets.
func (s *Service) CheckPeriod(ctx context.Context, tenantID, meter string, amount int64) (*PeriodUse, error) {
	m, ok := MeteredLimits[meter]
	if !ok {
		return nil, errs.Invalid("unknown meter", map[string]string{"meter": "has no plan limit; metered limits are tokens, messages, api_calls"})
	}
	uses, err := s.CurrentPeriods(ctx, tenantID)
	if err != nil {
		return nil, err
	}
	for _, u := range uses {
		if u.Meter != meter {
			continue
		}
		if u.Max != Unlimited && money.Exceeds(u.Used, amount, u.Max) {
			return &u, exceeded(m, u, amount)
		}
		return &u, nil
	}
	return nil, errs.Internal(fmt.Errorf("meter %s has no period", meter), "check usage")
}

// Bucket is one step of an aggregation.
type Bucket struct {
	Start time.Time `json:"start"`
	Value int64     `json:"value"`
}

// Aggregate sums a meter's events by hour or day between from and to.
func (s *Service) Aggregate(ctx context.Context, meter string, from, to time.Time, groupBy string) ([]Bucket, int64, error) {
	f := errs.Fields{}
	if !meterRe.MatchString(meter) {
		f.Add("meter", "is required: the meter to aggregate")
	}
	if groupBy != "hour" && groupBy != "day" {
		f.Add("groupBy", "must be hour or day")
	}
	if !to.After(from) {
		f.Add("to", "must be after from")
	}
	if maxSpan := map[string]time.Duration{"hour": 31 * 24 * time.Hour, "day": 400 * 24 * time.Hour}[groupBy]; to.Sub(from) > maxSpan && maxSpan > 0 {
		f.Add("from", fmt.Sprintf("the span is at most %d days for groupBy=%s", int(maxSpan.Hours()/24), groupBy))
	}
	if err := f.Err(); err != nil {
		return nil, 0, err
	}
	var bucketExpr string
	if s.store.Dialect() == store.Postgres {
		bucketExpr = fmt.Sprintf("to_char(date_trunc('%s', occurred_at AT TIME ZONE 'UTC'), 'YYYY-MM-DD\"T\"HH24:MI:SS\"Z\"')", groupBy)
	} else {
		bucketExpr = map[string]string{"hour": "strftime('%Y-%m-%dT%H:00:00Z', occurred_at)", "day": "strftime('%Y-%m-%dT00:00:00Z', occurred_at)"}[groupBy]
	}
	// The sum in two parts, so that it cannot overflow in the database
	// (SQLite's SUM fails with "integer overflow"; PostgreSQL's is numeric,
	// which does not scan into int64 past its range): each part stays far
	// below 2^63 for any number of events, and Go joins them saturating.
	type row struct {
		B  string
		Hi int64
		Lo int64
	}
	var rows []row
	err := s.store.Tx(ctx, func(tx *gorm.DB) error {
		return tx.Model(&Event{}).Select(bucketExpr+" AS b, SUM(value / 1000000000) AS hi, SUM(value % 1000000000) AS lo").
			Where("meter = ? AND occurred_at >= ? AND occurred_at < ?", meter, from.UTC(), to.UTC()).
			Group("b").Order("b").Scan(&rows).Error
	})
	if err != nil {
		return nil, 0, errs.Internal(err, "aggregate usage")
	}
	out := make([]Bucket, 0, len(rows))
	var total int64
	for _, r := range rows {
		t, err := time.Parse(time.RFC3339, r.B)
		if err != nil {
			return nil, 0, errs.Internal(err, "aggregate usage")
		}
		v := money.SatAdd(money.SatMul(r.Hi, 1_000_000_000), r.Lo)
		out = append(out, Bucket{Start: t, Value: v})
		total = money.SatAdd(total, v)
	}
	return out, total, nil
}

// CountAPICall notes one request of the tenant toward its api_calls meter.
// It only adds to memory; FlushAPICalls writes the sums to the period
// counters, so the hot path does no database work.
func (s *Service) CountAPICall(tenantID string) {
	k := callKey{tenantID, PeriodStart("hour", s.now())}
	s.callsMu.Lock()
	s.calls[k]++
	s.callsMu.Unlock()
}

// FlushAPICalls adds the API calls counted since the last flush to each
// tenant's hourly api_calls counter (recording the 80 % and 100 % thresholds
// as reported events do) and returns how many it wrote. Calls whose write
// fails are kept for the next flush.
func (s *Service) FlushAPICalls(ctx context.Context) (int64, error) {
	s.callsMu.Lock()
	pending := s.calls
	s.calls = map[callKey]int64{}
	s.callsMu.Unlock()
	var written int64
	var firstErr error
	for k, n := range pending {
		key := [2]string{"api_calls", k.hour.Format(time.RFC3339)}
		err := s.Warm(ctx, k.tenantID)
		if err == nil {
			err = s.store.Tx(store.WithTenant(ctx, k.tenantID), func(tx *gorm.DB) error {
				return s.addCountersTx(ctx, tx, k.tenantID, map[[2]string]int64{key: n}, map[[2]string]time.Time{key: k.hour})
			})
		}
		if errs.Is(err, errs.CodeTenantNotFound) {
			continue // purged meanwhile: nothing to count against
		}
		if err != nil {
			if firstErr == nil {
				firstErr = err
			}
			s.callsMu.Lock()
			s.calls[k] = money.SatAdd(s.calls[k], n)
			s.callsMu.Unlock()
			continue
		}
		written = money.SatAdd(written, n)
	}
	return written, firstErr
}

// RunAPICallFlusher flushes counted API calls every interval until ctx
// ends, and once more then, so a clean shutdown loses none.
func (s *Service) RunAPICallFlusher(ctx context.Context, every time.Duration, log interface{ Error(string, ...any) }) {
	t := time.NewTicker(every)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			if _, err := s.FlushAPICalls(context.WithoutCancel(ctx)); err != nil {
				log.Error("could not write the last API-call counts", "err", err)
			}
			return
		case <-t.C:
			if _, err := s.FlushAPICalls(ctx); err != nil {
				log.Error("could not write API-call counts; they are kept for the next try", "err", err)
			}
		}
	}
}

// Counter retention: the period counters enforce limits only in their own
// period, so old ones are kept for reports for a while and then removed.
const (
	HourCounterRetention  = 35 * 24 * time.Hour // five weeks of hourly counters
	MonthCounterRetention = 13                  // months of monthly counters
)

// PruneCounters removes hourly counters older than HourCounterRetention and
// monthly ones older than MonthCounterRetention months, for every tenant.
// The events themselves stay (data retention governs them).
func (s *Service) PruneCounters(ctx context.Context) (int64, error) {
	now := s.now()
	var n int64
	err := s.store.Tx(store.WithPlatform(ctx, "usage counter pruning"), func(tx *gorm.DB) error {
		r := tx.Where("(period = ? AND period_start < ?) OR (period = ? AND period_start < ?)",
			"hour", PeriodStart("hour", now.Add(-HourCounterRetention)),
			"month", PeriodStart("month", now).AddDate(0, -MonthCounterRetention, 0)).Delete(&counter{})
		n = r.RowsAffected
		return r.Error
	})
	return n, err
}

// periodCacheTTL bounds how stale the AI gateway's view of the current
// periods may be; the counters themselves are exact.
const periodCacheTTL = 5 * time.Second

// AddMeteredTx adds values (meter → amount) to the tenant's counters of the
// current period inside tx, recording thresholds, and adds them to the cached
// view so this process sees its own use at once.
func (s *Service) AddMeteredTx(ctx context.Context, tx *gorm.DB, tenantID string, values map[string]int64) error {
	now := s.now()
	adds, starts := map[[2]string]int64{}, map[[2]string]time.Time{}
	for meter, v := range values {
		m, ok := MeteredLimits[meter]
		if !ok || v <= 0 {
			continue
		}
		start := PeriodStart(m.Period, now)
		k := [2]string{meter, start.Format(time.RFC3339)}
		adds[k], starts[k] = v, start
	}
	if err := s.addCountersTx(ctx, tx, tenantID, adds, starts); err != nil {
		return err
	}
	s.periodsMu.Lock()
	if c, ok := s.periods[tenantID]; ok {
		for i := range c.uses {
			if v := values[c.uses[i].Meter]; v > 0 {
				c.uses[i].Used = money.SatAdd(c.uses[i].Used, v)
			}
		}
	}
	s.periodsMu.Unlock()
	return nil
}

// AllowsMetered refuses (429 TENANT_QUOTA_EXCEEDED) when amount more of
// meter does not fit the current period. It reads the periods from a cache
// of at most periodCacheTTL, so the hot path rarely touches the database.
func (s *Service) AllowsMetered(ctx context.Context, tenantID, meter string, amount int64) error {
	s.periodsMu.Lock()
	c, ok := s.periods[tenantID]
	s.periodsMu.Unlock()
	if !ok || s.now().After(c.exp) {
		// One read per tenant when the cache runs out, however many calls wait for it.
		v, err, _ := s.periodsSF.Do(tenantID, func() (any, error) {
			uses, err := s.CurrentPeriods(context.WithoutCancel(ctx), tenantID) // shared: one caller leaving must not fail the others
			if err != nil {
				return nil, err
			}
			s.periodsMu.Lock()
			c := cachedPeriods{uses: uses, exp: s.now().Add(s.periodTTL)}
			s.periods[tenantID] = c
			s.periodsMu.Unlock()
			return c, nil
		})
		if err != nil {
			return err
		}
		c = v.(cachedPeriods)
	}
	// The limit comes from the entitlements (cached, and dropped at once when
	// an operator changes them), not from the cached periods.
	e, err := s.Cached(ctx, tenantID)
	if err != nil {
		return err
	}
	m := MeteredLimits[meter]
	s.periodsMu.Lock()
	defer s.periodsMu.Unlock()
	for _, u := range c.uses {
		if u.Meter != meter {
			continue
		}
		u.Max = e.Limit(m.Limit)
		if u.Max != Unlimited && money.Exceeds(u.Used, amount, u.Max) {
			return exceeded(m, u, amount)
		}
	}
	return nil
}

// exceeded is the 429 TENANT_QUOTA_EXCEEDED of a period that cannot take
// amount more. It says what is true: used up, or asking for more than remains.
func exceeded(m MeteredLimit, u PeriodUse, amount int64) error {
	secs := int(time.Until(u.ResetsAt).Seconds()) + 1
	resets := u.ResetsAt.Format(time.RFC3339)
	msg := fmt.Sprintf("the %s limit of %d this %s is used up (%d used); it resets at %s", m.Limit, u.Max, m.Period, u.Used, resets)
	if u.Used < u.Max {
		msg = fmt.Sprintf("this asks for %d but only %d of the %s limit of %d remain this %s; it resets at %s",
			amount, u.Max-u.Used, m.Limit, u.Max, m.Period, resets)
	}
	return &errs.Error{Kind: errs.KindRateLimited, Code: CodeQuotaExceeded, RetryAfter: secs, Msg: msg,
		Fields: map[string]string{"limit": fmt.Sprint(u.Max), "used": fmt.Sprint(u.Used), "requested": fmt.Sprint(amount), "resetsAt": resets}}
}
