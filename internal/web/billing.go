package web

import (
	"encoding/json"
	"io"
	"net/http"
	"regexp"

	"github.com/tenantgate/tenantgate/internal/actor"
	"github.com/tenantgate/tenantgate/internal/billing"
	"github.com/tenantgate/tenantgate/internal/errs"
	"github.com/tenantgate/tenantgate/internal/money"
	"github.com/tenantgate/tenantgate/internal/store"
)

// bill guards a billing handler: without a billing service the routes answer 503.
func (s *server) bill(h func(w http.ResponseWriter, r *http.Request) error) func(w http.ResponseWriter, r *http.Request) error {
	return func(w http.ResponseWriter, r *http.Request) error {
		if s.Billing == nil {
			return errs.E(errs.KindUnavailable, errs.CodeServiceUnavailable, "billing is not configured on this server")
		}
		return h(w, r)
	}
}

// parseAmount reads a decimal amount ("10.50") into micros, recording a problem in f.
func parseAmount(f errs.Fields, field, v string) money.Micros {
	if v == "" {
		f.Add(field, `is required: a decimal amount such as "10.00"`)
		return 0
	}
	m, err := money.Parse(v)
	if err != nil {
		f.Add(field, err.Error())
	}
	return m
}

// --- the caller's tenant ---

func (s *server) billingBalance(w http.ResponseWriter, r *http.Request) error {
	a, err := s.Billing.Balance(r.Context(), currentTenant(r.Context()).ID)
	if err != nil {
		return err
	}
	writeJSON(w, http.StatusOK, a)
	return nil
}

func (s *server) billingLedger(w http.ResponseWriter, r *http.Request) error {
	q := r.URL.Query()
	p, err := store.ParsePage(q.Get("limit"), q.Get("cursor"))
	if err != nil {
		return err
	}
	items, next, err := s.Billing.Ledger(r.Context(), currentTenant(r.Context()).ID, q.Get("kind"), p)
	if err != nil {
		return err
	}
	writeJSON(w, http.StatusOK, newList(items, next))
	return nil
}

func (s *server) billingPrices(w http.ResponseWriter, r *http.Request) error {
	items, err := s.Billing.TenantPrices(r.Context(), currentTenant(r.Context()).ID)
	if err != nil {
		return err
	}
	writeJSON(w, http.StatusOK, newList(items, nil))
	return nil
}

type billingSettingsRequest struct {
	LowBalanceThreshold *string `json:"lowBalanceThreshold"` // null: none
}

func (s *server) billingSettings(w http.ResponseWriter, r *http.Request) error {
	var in billingSettingsRequest
	if err := decodeJSON(r, &in); err != nil {
		return err
	}
	var threshold *money.Micros
	if in.LowBalanceThreshold != nil {
		f := errs.Fields{}
		m := parseAmount(f, "lowBalanceThreshold", *in.LowBalanceThreshold)
		if err := f.Err(); err != nil {
			return err
		}
		threshold = &m
	}
	a, err := s.Billing.SetLowBalanceThreshold(r.Context(), currentTenant(r.Context()).ID, threshold)
	if err != nil {
		return err
	}
	writeJSON(w, http.StatusOK, a)
	return nil
}

type redeemRequest struct {
	Code string `json:"code"`
}

func (s *server) billingRedeem(w http.ResponseWriter, r *http.Request) error {
	var in redeemRequest
	if err := decodeJSON(r, &in); err != nil {
		return err
	}
	if in.Code == "" {
		return errs.Invalid("the code is missing", map[string]string{"code": "is required"})
	}
	e, err := s.Billing.Redeem(r.Context(), currentTenant(r.Context()).ID, in.Code)
	if err != nil {
		return err
	}
	writeJSON(w, http.StatusOK, e)
	return nil
}

type paymentWebhook struct {
	ID       string `json:"id"`
	TenantID string `json:"tenantId"`
	Amount   string `json:"amount"`
	Status   string `json:"status"`
}

var paymentIDRe = regexp.MustCompile(`^[A-Za-z0-9._:-]{1,190}$`)

// billingPaymentWebhook takes signed payment events: a succeeded payment is
// a top-up, idempotent on the payment id; other statuses are acknowledged
// and ignored. Fields it does not know are ignored, so the sender may add some.
func (s *server) billingPaymentWebhook(w http.ResponseWriter, r *http.Request) error {
	raw, err := io.ReadAll(io.LimitReader(r.Body, MaxBodyBytes+1))
	if err != nil {
		return errs.Invalid("the body could not be read", map[string]string{"body": err.Error()})
	}
	if len(raw) > MaxBodyBytes {
		return errs.Invalid("the body is too large", map[string]string{"body": "must be at most 1 MiB"})
	}
	if err := s.Billing.VerifyWebhook(r.Header.Get(billing.WebhookHeader), raw); err != nil {
		return err
	}
	var in paymentWebhook
	if err := json.Unmarshal(raw, &in); err != nil {
		return errs.Invalid("the body is not a payment event", map[string]string{"body": "must be a JSON object {id, tenantId, amount, status}"})
	}
	f := errs.Fields{}
	if !paymentIDRe.MatchString(in.ID) {
		f.Add("id", "is required: the payment's id, 1-190 characters of A-Z a-z 0-9 . _ : -")
	}
	if in.Status == "" {
		f.Add("status", "is required")
	}
	if err := f.Err(); err != nil {
		return err
	}
	if in.Status != "succeeded" {
		writeJSON(w, http.StatusOK, map[string]any{"received": true, "id": in.ID, "status": in.Status, "ignored": true})
		return nil
	}
	amount := parseAmount(f, "amount", in.Amount)
	if err := f.Err(); err != nil {
		return err
	}
	t, err := s.Tenants.Get(r.Context(), in.TenantID)
	if err != nil {
		return err
	}
	ctx := actor.With(r.Context(), &actor.Actor{Type: actor.TypeSystem, ID: "payment-webhook", SourceIP: clientIP(r), RequestID: requestID(r.Context())})
	e, created, err := s.Billing.TopUp(ctx, t.ID, amount, "payment:"+in.ID, "payment "+in.ID)
	if err != nil {
		return err
	}
	writeJSON(w, http.StatusOK, map[string]any{"received": true, "id": in.ID, "status": in.Status, "created": created, "entry": e})
	return nil
}

// --- platform operators ---

type priceRequest struct {
	InputPerMTok       string  `json:"inputPerMTok"`
	CachedInputPerMTok *string `json:"cachedInputPerMTok"` // null: the input price
	OutputPerMTok      string  `json:"outputPerMTok"`
}

func decodePrice(r *http.Request) (billing.PriceInput, error) {
	var in priceRequest
	if err := decodeJSON(r, &in); err != nil {
		return billing.PriceInput{}, err
	}
	f := errs.Fields{}
	p := billing.PriceInput{InputPerMTok: parseAmount(f, "inputPerMTok", in.InputPerMTok), OutputPerMTok: parseAmount(f, "outputPerMTok", in.OutputPerMTok)}
	if in.CachedInputPerMTok != nil {
		c := parseAmount(f, "cachedInputPerMTok", *in.CachedInputPerMTok)
		p.CachedInputPerMTok = &c
	}
	return p, f.Err()
}

func (s *server) adminListPrices(w http.ResponseWriter, r *http.Request) error {
	items, err := s.Billing.PlatformPrices(r.Context())
	if err != nil {
		return err
	}
	writeJSON(w, http.StatusOK, newList(items, nil))
	return nil
}

func (s *server) adminGetPrice(w http.ResponseWriter, r *http.Request) error {
	p, err := s.Billing.PlatformPrice(r.Context(), r.PathValue("model"))
	if err != nil {
		return err
	}
	writeJSON(w, http.StatusOK, p)
	return nil
}

// putPrice sets the platform's price (tenantID "") or a tenant's override.
func (s *server) putPrice(w http.ResponseWriter, r *http.Request, tenantID string) error {
	in, err := decodePrice(r)
	if err != nil {
		return err
	}
	p, err := s.Billing.SetPrice(r.Context(), tenantID, r.PathValue("model"), in)
	if err != nil {
		return err
	}
	writeJSON(w, http.StatusOK, p)
	return nil
}

func (s *server) adminPutPrice(w http.ResponseWriter, r *http.Request) error {
	return s.putPrice(w, r, "")
}

func (s *server) adminDeletePrice(w http.ResponseWriter, r *http.Request) error {
	if err := s.Billing.DeletePrice(r.Context(), "", r.PathValue("model")); err != nil {
		return err
	}
	w.WriteHeader(http.StatusNoContent)
	return nil
}

func (s *server) adminTenantPrices(w http.ResponseWriter, r *http.Request) error {
	t, err := s.Tenants.Get(r.Context(), r.PathValue("id"))
	if err != nil {
		return err
	}
	items, err := s.Billing.TenantPrices(r.Context(), t.ID)
	if err != nil {
		return err
	}
	writeJSON(w, http.StatusOK, newList(items, nil))
	return nil
}

func (s *server) adminPutTenantPrice(w http.ResponseWriter, r *http.Request) error {
	t, err := s.Tenants.Get(r.Context(), r.PathValue("id"))
	if err != nil {
		return err
	}
	return s.putPrice(w, r, t.ID)
}

func (s *server) adminDeleteTenantPrice(w http.ResponseWriter, r *http.Request) error {
	t, err := s.Tenants.Get(r.Context(), r.PathValue("id"))
	if err != nil {
		return err
	}
	if err := s.Billing.DeletePrice(r.Context(), t.ID, r.PathValue("model")); err != nil {
		return err
	}
	w.WriteHeader(http.StatusNoContent)
	return nil
}

type topUpRequest struct {
	Amount         string `json:"amount"`
	IdempotencyKey string `json:"idempotencyKey"`
	Note           string `json:"note"`
}

// adminTopUp credits a tenant: 201 with the entry, or 200 with the original
// entry when the idempotency key was used before.
func (s *server) adminTopUp(w http.ResponseWriter, r *http.Request) error {
	var in topUpRequest
	if err := decodeJSON(r, &in); err != nil {
		return err
	}
	f := errs.Fields{}
	amount := parseAmount(f, "amount", in.Amount)
	if err := f.Err(); err != nil {
		return err
	}
	t, err := s.Tenants.Get(r.Context(), r.PathValue("id"))
	if err != nil {
		return err
	}
	e, created, err := s.Billing.TopUp(r.Context(), t.ID, amount, in.IdempotencyKey, in.Note)
	if err != nil {
		return err
	}
	status := http.StatusOK
	if created {
		status = http.StatusCreated
	}
	writeJSON(w, status, e)
	return nil
}

type codesRequest struct {
	Count     int    `json:"count"`
	Amount    string `json:"amount"`
	ExpiresAt string `json:"expiresAt"` // RFC 3339; empty: never
	Note      string `json:"note"`
}

// adminCreateCodes answers the codes: the only time they are shown.
func (s *server) adminCreateCodes(w http.ResponseWriter, r *http.Request) error {
	var in codesRequest
	if err := decodeJSON(r, &in); err != nil {
		return err
	}
	f := errs.Fields{}
	amount := parseAmount(f, "amount", in.Amount)
	exp := parseTime(f, "expiresAt", in.ExpiresAt)
	if err := f.Err(); err != nil {
		return err
	}
	b, err := s.Billing.GenerateCodes(r.Context(), in.Count, amount, exp, in.Note)
	if err != nil {
		return err
	}
	writeJSON(w, http.StatusCreated, b)
	return nil
}

func (s *server) adminListCodes(w http.ResponseWriter, r *http.Request) error {
	q := r.URL.Query()
	p, err := store.ParsePage(q.Get("limit"), q.Get("cursor"))
	if err != nil {
		return err
	}
	items, next, err := s.Billing.ListCodes(r.Context(), billing.CodeFilter{BatchID: q.Get("batchId"), Status: q.Get("status")}, p)
	if err != nil {
		return err
	}
	writeJSON(w, http.StatusOK, newList(items, next))
	return nil
}

func (s *server) adminDisableCode(w http.ResponseWriter, r *http.Request) error {
	if _, err := s.Billing.DisableCode(r.Context(), r.PathValue("id")); err != nil {
		return err
	}
	w.WriteHeader(http.StatusNoContent)
	return nil
}
