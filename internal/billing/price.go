package billing

import (
	"context"
	"encoding/json"
	"fmt"
	"math"
	"math/bits"
	"regexp"
	"sort"
	"time"

	"gorm.io/gorm"

	"github.com/tenantgate/tenantgate/internal/audit"
	"github.com/tenantgate/tenantgate/internal/errs"
	"github.com/tenantgate/tenantgate/internal/money"
	"github.com/tenantgate/tenantgate/internal/store"
)

// Price is what a model costs per million tokens. Platform prices are kept
// under store.PlatformTenantID; a tenant's overrides under its own id.
type Price struct {
	TenantID           string        `gorm:"primaryKey"`
	Model              string        `gorm:"primaryKey"`
	InputPerMTok       money.Micros  `gorm:"column:input_per_mtok_micros"`
	CachedInputPerMTok *money.Micros `gorm:"column:cached_input_per_mtok_micros"` // nil: the input price
	OutputPerMTok      money.Micros  `gorm:"column:output_per_mtok_micros"`
	UpdatedAt          time.Time
}

// TableName maps prices to model_prices.
func (Price) TableName() string { return "model_prices" }

// TenantOwned marks prices as tenant data (platform prices under the zero id).
func (Price) TenantOwned() {}

// Source is "platform" for a platform price, "tenant" for an override.
func (p Price) Source() string {
	if p.TenantID == store.PlatformTenantID {
		return "platform"
	}
	return "tenant"
}

// MarshalJSON shows prices as decimal strings.
func (p Price) MarshalJSON() ([]byte, error) {
	return json.Marshal(struct {
		Model              string    `json:"model"`
		InputPerMTok       string    `json:"inputPerMTok"`
		CachedInputPerMTok *string   `json:"cachedInputPerMTok"`
		OutputPerMTok      string    `json:"outputPerMTok"`
		Source             string    `json:"source"`
		UpdatedAt          time.Time `json:"updatedAt"`
	}{p.Model, p.InputPerMTok.String(), amountPtr(p.CachedInputPerMTok), p.OutputPerMTok.String(), p.Source(), p.UpdatedAt})
}

// PriceInput is a price to set.
type PriceInput struct {
	InputPerMTok       money.Micros
	CachedInputPerMTok *money.Micros // nil: charge cached input at the input price
	OutputPerMTok      money.Micros
}

var modelRe = regexp.MustCompile(`^[A-Za-z0-9._:/@-]{1,200}$`)

// ValidModel reports whether s can name a model: 1-200 characters of
// A-Z a-z 0-9 . _ : / @ -.
func ValidModel(s string) bool { return modelRe.MatchString(s) }

// priceTable is every price, by tenant id and then model.
type priceTable struct {
	at       time.Time
	byTenant map[string]map[string]Price
}

func (t *priceTable) lookup(tenantID, model string) (Price, bool) {
	if p, ok := t.byTenant[tenantID][model]; ok {
		return p, true
	}
	p, ok := t.byTenant[store.PlatformTenantID][model]
	return p, ok
}

// priceTable returns the in-memory prices, reading them when older than
// PriceCacheTTL (one caller reads; the others meanwhile use the older table).
func (s *Service) priceTable(ctx context.Context) (*priceTable, error) {
	pt := s.prices.Load()
	if pt != nil && s.now().Sub(pt.at) < time.Duration(s.priceTTL.Load()) {
		return pt, nil
	}
	if pt != nil {
		if !s.pricesMu.TryLock() {
			return pt, nil
		}
	} else {
		s.pricesMu.Lock()
	}
	defer s.pricesMu.Unlock()
	if cur := s.prices.Load(); cur != nil && s.now().Sub(cur.at) < time.Duration(s.priceTTL.Load()) {
		return cur, nil
	}
	fresh, err := s.readPrices(ctx)
	if err != nil {
		if pt != nil {
			s.log.Warn("billing: reload the prices; using the cached ones", "err", err)
			return pt, nil
		}
		return nil, errs.Internal(err, "read the model prices")
	}
	return fresh, nil
}

// readPrices reads every price (platform scope: the table holds every
// tenant's overrides) and installs the table.
func (s *Service) readPrices(ctx context.Context) (*priceTable, error) {
	at := s.now()
	var list []Price
	err := s.store.Tx(store.WithPlatform(ctx, "billing: load the model prices"), func(tx *gorm.DB) error {
		return tx.Find(&list).Error
	})
	if err != nil {
		return nil, err
	}
	pt := &priceTable{at: at, byTenant: map[string]map[string]Price{}}
	for _, p := range list {
		m := pt.byTenant[p.TenantID]
		if m == nil {
			m = map[string]Price{}
			pt.byTenant[p.TenantID] = m
		}
		m[p.Model] = p
	}
	s.prices.Store(pt)
	return pt, nil
}

// reloadPrices reads the prices at once, after a change on this process.
func (s *Service) reloadPrices(ctx context.Context) {
	s.pricesMu.Lock()
	defer s.pricesMu.Unlock()
	if _, err := s.readPrices(context.WithoutCancel(ctx)); err != nil {
		s.log.Warn("billing: reload the prices after a change", "err", err)
		if pt := s.prices.Load(); pt != nil {
			s.prices.Store(&priceTable{byTenant: pt.byTenant}) // stale: the next Cost reads again
		}
	}
}

// Cost prices usage of model for the tenant: its override first, then the
// platform price. ok is false when the model has no price. The cost is
// ceil(((prompt-cached)*input + cached*cachedInput + completion*output) / 1e6)
// micros, in exact integer arithmetic.
func (s *Service) Cost(ctx context.Context, tenantID, model string, prompt, cached, completion int64) (money.Micros, bool, error) {
	if prompt < 0 || cached < 0 || completion < 0 || cached > prompt {
		return 0, false, errs.Invalid("bad token counts", map[string]string{"tokens": "must be 0 or more, with cached at most prompt"})
	}
	pt, err := s.priceTable(ctx)
	if err != nil {
		return 0, false, err
	}
	p, ok := pt.lookup(tenantID, model)
	if !ok {
		return 0, false, nil
	}
	c, err := cost(p, prompt, cached, completion)
	return c, err == nil, err
}

// cost is the price arithmetic, in 128 bits so no product can overflow.
func cost(p Price, prompt, cached, completion int64) (money.Micros, error) {
	cachedRate := p.InputPerMTok
	if p.CachedInputPerMTok != nil {
		cachedRate = *p.CachedInputPerMTok
	}
	var hi, lo uint64
	over := false
	add := func(tokens int64, rate money.Micros) {
		if tokens < 0 || rate < 0 {
			over = true
			return
		}
		h, l := bits.Mul64(uint64(tokens), uint64(rate))
		var c uint64
		lo, c = bits.Add64(lo, l, 0)
		hi, c = bits.Add64(hi, h, c)
		over = over || c != 0
	}
	add(prompt-cached, p.InputPerMTok)
	add(cached, cachedRate)
	add(completion, p.OutputPerMTok)
	add(1, 999_999) // round up
	const perM = 1_000_000
	if over || hi >= perM {
		return 0, errs.Invalid("the usage is too large to price", map[string]string{"tokens": "the cost does not fit"})
	}
	q, _ := bits.Div64(hi, lo, perM)
	if q > math.MaxInt64 {
		return 0, errs.Invalid("the usage is too large to price", map[string]string{"tokens": "the cost does not fit"})
	}
	return money.Micros(q), nil
}

// priceScope returns the context a price change of tenantID runs in.
func priceScope(ctx context.Context, tenantID string) context.Context {
	if tenantID == store.PlatformTenantID {
		return store.WithPlatform(ctx, "billing: platform prices")
	}
	return store.WithTenant(ctx, tenantID)
}

func priceTenant(tenantID string) (string, error) {
	if tenantID == "" {
		return store.PlatformTenantID, nil
	}
	if !store.ValidID(tenantID) {
		return "", invalid("tenantId", "must be a tenant id")
	}
	return tenantID, nil
}

func checkModel(f errs.Fields, model string) {
	if !ValidModel(model) {
		f.Add("model", "must be 1-200 characters of A-Z a-z 0-9 . _ : / @ -")
	}
}

// SetPrice creates or replaces a model's price: the platform's when
// tenantID is "" (or the platform id), else that tenant's override.
func (s *Service) SetPrice(ctx context.Context, tenantID, model string, in PriceInput) (*Price, error) {
	tid, err := priceTenant(tenantID)
	if err != nil {
		return nil, err
	}
	f := errs.Fields{}
	checkModel(f, model)
	for name, v := range map[string]*money.Micros{"inputPerMTok": &in.InputPerMTok, "cachedInputPerMTok": in.CachedInputPerMTok, "outputPerMTok": &in.OutputPerMTok} {
		if v != nil && (*v < 0 || *v > MaxPricePerMTok) {
			f.Add(name, fmt.Sprintf("must be from 0 to %s per million tokens", MaxPricePerMTok))
		}
	}
	if err := f.Err(); err != nil {
		return nil, err
	}
	p := Price{TenantID: tid, Model: model, InputPerMTok: in.InputPerMTok, CachedInputPerMTok: in.CachedInputPerMTok,
		OutputPerMTok: in.OutputPerMTok, UpdatedAt: s.now()}
	var cached *int64
	if in.CachedInputPerMTok != nil {
		v := int64(*in.CachedInputPerMTok)
		cached = &v
	}
	err = s.store.Tx(priceScope(ctx, tid), func(tx *gorm.DB) error {
		var before *Price
		var old Price
		if err := tx.Where("tenant_id = ? AND model = ?", tid, model).Take(&old).Error; err == nil {
			before = &old
		} else if !store.IsNotFound(err) {
			return err
		}
		if err := tx.Exec(`INSERT INTO model_prices (tenant_id, model, input_per_mtok_micros, cached_input_per_mtok_micros, output_per_mtok_micros, updated_at)
			VALUES (?, ?, ?, ?, ?, ?)
			ON CONFLICT (tenant_id, model) DO UPDATE SET input_per_mtok_micros = excluded.input_per_mtok_micros,
				cached_input_per_mtok_micros = excluded.cached_input_per_mtok_micros, output_per_mtok_micros = excluded.output_per_mtok_micros,
				updated_at = excluded.updated_at`,
			tid, model, int64(in.InputPerMTok), cached, int64(in.OutputPerMTok), p.UpdatedAt).Error; err != nil {
			return err
		}
		var b any
		if before != nil {
			b = before
		}
		return audit.Record(ctx, tx, audit.Entry{TenantID: tid, EventType: "billing.price_set", Resource: "model_price", ResourceID: model,
			Action: "update", Before: b, After: p})
	})
	if err != nil {
		return nil, errs.Wrap(err, "save the price")
	}
	s.reloadPrices(ctx)
	return &p, nil
}

// DeletePrice removes a platform price ("" tenant) or a tenant's override.
func (s *Service) DeletePrice(ctx context.Context, tenantID, model string) error {
	tid, err := priceTenant(tenantID)
	if err != nil {
		return err
	}
	err = s.store.Tx(priceScope(ctx, tid), func(tx *gorm.DB) error {
		var old Price
		if err := tx.Where("tenant_id = ? AND model = ?", tid, model).Take(&old).Error; err != nil {
			if store.IsNotFound(err) {
				return priceNotFound(tid, model)
			}
			return err
		}
		if err := tx.Where("tenant_id = ? AND model = ?", tid, model).Delete(&Price{}).Error; err != nil {
			return err
		}
		return audit.Record(ctx, tx, audit.Entry{TenantID: tid, EventType: "billing.price_deleted", Resource: "model_price", ResourceID: model,
			Action: "delete", Before: old})
	})
	if err != nil {
		return errs.Wrap(err, "delete the price")
	}
	s.reloadPrices(ctx)
	return nil
}

func priceNotFound(tenantID, model string) error {
	if tenantID == store.PlatformTenantID {
		return errs.NotFound(CodePriceNotFound, "no platform price for the model %q", model)
	}
	return errs.NotFound(CodePriceNotFound, "this tenant has no price override for the model %q", model)
}

// PlatformPrices lists the platform's prices by model.
func (s *Service) PlatformPrices(ctx context.Context) ([]Price, error) {
	var list []Price
	err := s.store.Tx(store.WithPlatform(ctx, "billing: platform prices"), func(tx *gorm.DB) error {
		return tx.Where("tenant_id = ?", store.PlatformTenantID).Order("model").Find(&list).Error
	})
	if err != nil {
		return nil, errs.Internal(err, "read the prices")
	}
	return list, nil
}

// PlatformPrice returns one platform price.
func (s *Service) PlatformPrice(ctx context.Context, model string) (*Price, error) {
	var p Price
	err := s.store.Tx(store.WithPlatform(ctx, "billing: platform prices"), func(tx *gorm.DB) error {
		return tx.Where("tenant_id = ? AND model = ?", store.PlatformTenantID, model).Take(&p).Error
	})
	if store.IsNotFound(err) {
		return nil, priceNotFound(store.PlatformTenantID, model)
	}
	if err != nil {
		return nil, errs.Internal(err, "read the price")
	}
	return &p, nil
}

// TenantPrices is the price list a tenant is charged by, from the same
// table Cost reads: its overrides, and the platform prices it does not
// override, by model.
func (s *Service) TenantPrices(ctx context.Context, tenantID string) ([]Price, error) {
	if !store.ValidID(tenantID) || tenantID == store.PlatformTenantID {
		return nil, invalid("tenantId", "must be a tenant id")
	}
	pt, err := s.priceTable(ctx)
	if err != nil {
		return nil, err
	}
	byModel := map[string]Price{}
	for m, p := range pt.byTenant[store.PlatformTenantID] {
		byModel[m] = p
	}
	for m, p := range pt.byTenant[tenantID] {
		byModel[m] = p
	}
	out := make([]Price, 0, len(byModel))
	for _, p := range byModel {
		out = append(out, p)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Model < out[j].Model })
	return out, nil
}
