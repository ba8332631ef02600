package web

import (
	"context"
	"encoding/json"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/google/uuid"

	"github.com/tenantgate/tenantgate/internal/billing"
	"github.com/tenantgate/tenantgate/internal/errs"
	"github.com/tenantgate/tenantgate/internal/store"
	"github.com/tenantgate/tenantgate/internal/store/storetest"
)

const testWebhookSecret = "whsec-web-test-0123456789abcdef"

func TestBillingPricesAPI(t *testing.T) {
	storetest.Each(t, func(t *testing.T, d store.Dialect) {
		a := newAPI(t, d)
		x, y := a.signup("price-x"), a.signup("price-y")
		op := a.operator()
		price := map[string]any{"inputPerMTok": "2.50", "cachedInputPerMTok": "1.25", "outputPerMTok": "10.00"}
		// Operators set platform prices; model names carry slashes, @ and colons.
		p := a.want(a.do("PUT", "/api/v1/admin/prices/openai/gpt-4o", op, price, nil), 200, "")
		if diff := cmp.Diff([]string{p.str("model"), p.str("inputPerMTok"), p.str("cachedInputPerMTok"), p.str("outputPerMTok"), p.str("source")},
			[]string{"openai/gpt-4o", "2.50", "1.25", "10.00", "platform"}); diff != "" {
			t.Errorf("saved price (-got +want):\n%s", diff)
		}
		a.want(a.do("PUT", "/api/v1/admin/prices/anthropic/claude@2025:v1", op, map[string]any{"inputPerMTok": "3", "outputPerMTok": "15", "cachedInputPerMTok": nil}, nil), 200, "")
		if g := a.want(a.do("GET", "/api/v1/admin/prices/anthropic/claude@2025:v1", op, nil, nil), 200, ""); g.Body["cachedInputPerMTok"] != nil || g.str("inputPerMTok") != "3.00" {
			t.Errorf("get price: %s", g.Raw)
		}
		if n := len(a.want(a.do("GET", "/api/v1/admin/prices", op, nil, nil), 200, "").items()); n != 2 {
			t.Errorf("%d platform prices, want 2", n)
		}
		// Bad input is a 400 naming the field.
		for _, tc := range []struct {
			path  string
			body  any
			field string
		}{
			{"/api/v1/admin/prices/bad%20model", price, "model"},
			{"/api/v1/admin/prices/", price, "model"},
			{"/api/v1/admin/prices/m", map[string]any{"inputPerMTok": "1.5", "outputPerMTok": 3}, "outputPerMTok"},
			{"/api/v1/admin/prices/m", map[string]any{"inputPerMTok": "-1", "outputPerMTok": "3"}, "inputPerMTok"},
			{"/api/v1/admin/prices/m", map[string]any{"inputPerMTok": "1000000.000001", "outputPerMTok": "3"}, "inputPerMTok"},
			{"/api/v1/admin/prices/m", map[string]any{"outputPerMTok": "3"}, "inputPerMTok"},
		} {
			r := a.want(a.do("PUT", tc.path, op, tc.body, nil), 400, "INVALID_REQUEST")
			if !strings.Contains(r.Raw, `"`+tc.field+`"`) {
				t.Errorf("PUT %s %v: %s, want a problem with %s", tc.path, tc.body, r.Raw, tc.field)
			}
		}
		a.want(a.do("GET", "/api/v1/admin/prices/no/such-model", op, nil, nil), 404, "PRICE_NOT_FOUND")
		// A tenant override applies to that tenant only, in either direction.
		a.want(a.do("PUT", "/api/v1/admin/tenants/"+x.ID+"/prices/openai/gpt-4o", op, map[string]any{"inputPerMTok": "1", "outputPerMTok": "2"}, nil), 200, "")
		a.want(a.do("PUT", "/api/v1/admin/tenants/"+y.ID+"/prices/y-only", op, map[string]any{"inputPerMTok": "1", "outputPerMTok": "2"}, nil), 200, "")
		effective := func(token string) []string {
			var out []string
			for _, it := range a.want(a.do("GET", "/api/v1/billing/prices", token, nil, nil), 200, "").items() {
				out = append(out, it["model"].(string)+" "+it["inputPerMTok"].(string)+" "+it["source"].(string))
			}
			return out
		}
		if diff := cmp.Diff(effective(x.OwnerToken), []string{"anthropic/claude@2025:v1 3.00 platform", "openai/gpt-4o 1.00 tenant"}); diff != "" {
			t.Errorf("x's prices (-got +want):\n%s", diff)
		}
		if diff := cmp.Diff(effective(y.OwnerToken), []string{"anthropic/claude@2025:v1 3.00 platform", "openai/gpt-4o 2.50 platform", "y-only 1.00 tenant"}); diff != "" {
			t.Errorf("y's prices (-got +want):\n%s", diff)
		}
		if n := len(a.want(a.do("GET", "/api/v1/admin/tenants/"+x.ID+"/prices", op, nil, nil), 200, "").items()); n != 2 {
			t.Errorf("operator's view of x: %d prices, want 2", n)
		}
		a.want(a.do("DELETE", "/api/v1/admin/tenants/"+x.ID+"/prices/openai/gpt-4o", op, nil, nil), 204, "")
		a.want(a.do("DELETE", "/api/v1/admin/tenants/"+x.ID+"/prices/openai/gpt-4o", op, nil, nil), 404, "PRICE_NOT_FOUND")
		a.want(a.do("PUT", "/api/v1/admin/tenants/"+uuid.Must(uuid.NewV7()).String()+"/prices/m", op, price, nil), 404, "TENANT_NOT_FOUND")
		a.want(a.do("DELETE", "/api/v1/admin/prices/anthropic/claude@2025:v1", op, nil, nil), 204, "")
		if diff := cmp.Diff(effective(x.OwnerToken), []string{"openai/gpt-4o 2.50 platform"}); diff != "" {
			t.Errorf("x's prices after the deletes (-got +want):\n%s", diff)
		}
		// Tenants never reach the operator routes.
		a.want(a.do("GET", "/api/v1/admin/prices", x.OwnerToken, nil, nil), 403, "PERMISSION_DENIED")
		a.want(a.do("PUT", "/api/v1/admin/prices/m", x.OwnerToken, price, nil), 403, "PERMISSION_DENIED")
		a.want(a.do("PUT", "/api/v1/admin/tenants/"+x.ID+"/prices/m", x.OwnerToken, price, nil), 403, "PERMISSION_DENIED")
	})
}

func TestBillingBalanceAndTopUps(t *testing.T) {
	storetest.Each(t, func(t *testing.T, d store.Dialect) {
		a := newAPI(t, d)
		x, y := a.signup("bal-x"), a.signup("bal-y")
		op := a.operator()
		b := a.want(a.do("GET", "/api/v1/billing/balance", x.OwnerToken, nil, nil), 200, "")
		if b.str("balance") != "0.00" || b.str("currency") != "USD" || b.Body["lowBalanceThreshold"] != nil {
			t.Errorf("a new tenant's balance: %s", b.Raw)
		}
		topUp := map[string]any{"amount": "10.50", "idempotencyKey": "invoice-1", "note": "welcome credit"}
		e1 := a.want(a.do("POST", "/api/v1/admin/tenants/"+x.ID+"/topups", op, topUp, nil), 201, "")
		e2 := a.want(a.do("POST", "/api/v1/admin/tenants/"+x.ID+"/topups", op, topUp, nil), 200, "")
		if e1.str("id") != e2.str("id") || e1.str("amount") != "10.50" || e1.str("kind") != "topup" || e1.str("balanceAfter") != "10.50" {
			t.Errorf("top-up and replay: %s / %s", e1.Raw, e2.Raw)
		}
		a.want(a.do("POST", "/api/v1/admin/tenants/"+x.ID+"/topups", op, map[string]any{"amount": "11", "idempotencyKey": "invoice-1"}, nil), 409, "IDEMPOTENCY_CONFLICT")
		for _, body := range []map[string]any{{"amount": "10.1234567"}, {"amount": "0"}, {"amount": "-3"}, {}, {"amount": "1", "idempotencyKey": "with space"}} {
			a.want(a.do("POST", "/api/v1/admin/tenants/"+x.ID+"/topups", op, body, nil), 400, "INVALID_REQUEST")
		}
		a.want(a.do("POST", "/api/v1/admin/tenants/"+uuid.Must(uuid.NewV7()).String()+"/topups", op, topUp, nil), 404, "TENANT_NOT_FOUND")
		a.want(a.do("POST", "/api/v1/admin/tenants/"+x.ID+"/topups", x.OwnerToken, topUp, nil), 403, "PERMISSION_DENIED")
		a.want(a.do("POST", "/api/v1/admin/tenants/"+y.ID+"/topups", op, map[string]any{"amount": "1.00"}, nil), 201, "")
		// Each tenant sees its own balance and ledger, never the other's.
		for _, tc := range []struct {
			o                 org
			balance, lastNote string
		}{{x, "10.50", "welcome credit"}, {y, "1.00", "top-up"}} {
			if got := a.want(a.do("GET", "/api/v1/billing/balance", tc.o.OwnerToken, nil, nil), 200, "").str("balance"); got != tc.balance {
				t.Errorf("%s's balance %s, want %s", tc.o.Slug, got, tc.balance)
			}
			items := a.want(a.do("GET", "/api/v1/billing/ledger", tc.o.OwnerToken, nil, nil), 200, "").items()
			if len(items) != 1 || items[0]["tenantId"] != tc.o.ID || items[0]["description"] != tc.lastNote {
				t.Errorf("%s's ledger: %v", tc.o.Slug, items)
			}
			// Naming the other tenant does not work either.
			other := map[string]string{x.ID: y.ID, y.ID: x.ID}[tc.o.ID]
			a.want(a.do("GET", "/api/v1/billing/ledger", tc.o.OwnerToken, nil, hdr{"X-Tenant-ID": other}), 404, "TENANT_NOT_FOUND")
		}
		if n := len(a.want(a.do("GET", "/api/v1/billing/ledger?kind=usage", x.OwnerToken, nil, nil), 200, "").items()); n != 0 {
			t.Errorf("%d usage entries, want 0", n)
		}
		a.want(a.do("GET", "/api/v1/billing/ledger?kind=bonus", x.OwnerToken, nil, nil), 400, "INVALID_REQUEST")
		a.want(a.do("GET", "/api/v1/billing/ledger?cursor=nonsense", x.OwnerToken, nil, nil), 400, "INVALID_REQUEST")
		// Low-balance settings.
		s := a.want(a.do("PUT", "/api/v1/billing/settings", x.OwnerToken, map[string]any{"lowBalanceThreshold": "5.00"}, nil), 200, "")
		if s.str("lowBalanceThreshold") != "5.00" || s.str("balance") != "10.50" {
			t.Errorf("settings: %s", s.Raw)
		}
		if s := a.want(a.do("PUT", "/api/v1/billing/settings", x.OwnerToken, map[string]any{"lowBalanceThreshold": nil}, nil), 200, ""); s.Body["lowBalanceThreshold"] != nil {
			t.Errorf("cleared threshold: %s", s.Raw)
		}
		a.want(a.do("PUT", "/api/v1/billing/settings", x.OwnerToken, map[string]any{"lowBalanceThreshold": "five"}, nil), 400, "INVALID_REQUEST")
		a.want(a.do("PUT", "/api/v1/billing/settings", x.OwnerToken, map[string]any{"threshold": "5"}, nil), 400, "INVALID_REQUEST")
		// The top-up and the settings are in the tenant's audit log.
		ev := a.want(a.do("GET", "/api/v1/audit?eventType=billing.topup", x.OwnerToken, nil, nil), 200, "").items()
		if len(ev) != 1 || ev[0]["metadata"].(map[string]any)["amount"] != "10.50" {
			t.Errorf("top-up audit events: %v", ev)
		}
	})
}

// Who may do what: billing:read and billing:manage (owner, billing_manager);
// a plain user and an admin hold neither.
func TestBillingPermissions(t *testing.T) {
	storetest.Each(t, func(t *testing.T, d store.Dialect) {
		a := newAPI(t, d)
		x := a.signup("perm-bill")
		_, manager := a.member(x, "money@perm-bill.test", "billing_manager")
		_, admin := a.member(x, "admin@perm-bill.test", "admin")
		routes := []struct {
			method, path string
			body         any
		}{
			{"GET", "/api/v1/billing/balance", nil},
			{"GET", "/api/v1/billing/ledger", nil},
			{"GET", "/api/v1/billing/prices", nil},
			{"PUT", "/api/v1/billing/settings", map[string]any{"lowBalanceThreshold": "1"}},
			{"POST", "/api/v1/billing/redeem", map[string]any{"code": "TGR-00000-00000-00000-00000"}},
		}
		for _, rt := range routes {
			for _, token := range []string{x.UserToken, admin} {
				a.want(a.do(rt.method, rt.path, token, rt.body, nil), 403, "PERMISSION_DENIED")
			}
			a.want(a.do(rt.method, rt.path, "", rt.body, nil), 401, "UNAUTHORIZED")
			want, code := 200, ""
			if rt.path == "/api/v1/billing/redeem" {
				want, code = 404, "CODE_NOT_FOUND"
			}
			for _, token := range []string{x.OwnerToken, manager} {
				a.want(a.do(rt.method, rt.path, token, rt.body, nil), want, code)
			}
		}
		r := a.want(a.do("GET", "/api/v1/billing/balance", x.UserToken, nil, nil), 403, "PERMISSION_DENIED")
		if !strings.Contains(r.Raw, "billing:read") || r.Body["error"].(map[string]any)["service"] != "tenantgate" {
			t.Errorf("refusal: %s", r.Raw)
		}
		for _, p := range []string{"/api/v1/admin/redemption-codes", "/api/v1/admin/prices"} {
			a.want(a.do("GET", p, manager, nil, nil), 403, "PERMISSION_DENIED")
		}
	})
}

func TestRedemptionCodesAPI(t *testing.T) {
	storetest.Each(t, func(t *testing.T, d store.Dialect) {
		a := newAPI(t, d)
		x, y := a.signup("codes-x"), a.signup("codes-y")
		op := a.operator()
		batch := a.want(a.do("POST", "/api/v1/admin/redemption-codes", op, map[string]any{"count": 3, "amount": "2.50", "note": "spring promo",
			"expiresAt": time.Now().Add(time.Hour).UTC().Format(time.RFC3339)}, nil), 201, "")
		var codes []string
		for _, c := range batch.Body["codes"].([]any) {
			codes = append(codes, c.(string))
		}
		if len(codes) != 3 || batch.str("amount") != "2.50" || batch.Body["count"].(float64) != 3 {
			t.Fatalf("batch: %s", batch.Raw)
		}
		list := a.want(a.do("GET", "/api/v1/admin/redemption-codes?batchId="+batch.str("batchId"), op, nil, nil), 200, "")
		for _, c := range codes {
			if strings.Contains(list.Raw, c) || strings.Contains(list.Raw, strings.ReplaceAll(c[4:], "-", "")) {
				t.Errorf("the listing shows a code: %s", list.Raw)
			}
		}
		items := list.items()
		if len(items) != 3 || items[0]["last4"] != codes[2][len(codes[2])-4:] || items[0]["status"] != "active" || items[0]["codeHash"] != nil {
			t.Errorf("listing: %s", list.Raw)
		}
		// x redeems one (in lower case, without dashes); nobody can again.
		e := a.want(a.do("POST", "/api/v1/billing/redeem", x.OwnerToken, map[string]any{"code": strings.ToLower(strings.ReplaceAll(codes[0], "-", ""))}, nil), 200, "")
		if e.str("kind") != "redemption" || e.str("amount") != "2.50" || e.str("balanceAfter") != "2.50" {
			t.Errorf("redeemed: %s", e.Raw)
		}
		a.want(a.do("POST", "/api/v1/billing/redeem", x.OwnerToken, map[string]any{"code": codes[0]}, nil), 409, "CODE_ALREADY_REDEEMED")
		a.want(a.do("POST", "/api/v1/billing/redeem", y.OwnerToken, map[string]any{"code": codes[0]}, nil), 409, "CODE_ALREADY_REDEEMED")
		// Unknown, disabled and malformed codes get the same 404.
		var disabledID string
		for _, it := range items {
			if it["last4"] == codes[1][len(codes[1])-4:] {
				disabledID = it["id"].(string)
			}
		}
		a.want(a.do("DELETE", "/api/v1/admin/redemption-codes/"+disabledID, op, nil, nil), 204, "")
		var msgs []string
		for _, c := range []string{codes[1], "TGR-ZZZZZ-ZZZZZ-ZZZZZ-ZZZZZ", "not a code"} {
			r := a.want(a.do("POST", "/api/v1/billing/redeem", y.OwnerToken, map[string]any{"code": c}, nil), 404, "CODE_NOT_FOUND")
			msgs = append(msgs, r.Body["error"].(map[string]any)["message"].(string))
		}
		if msgs[0] != msgs[1] || msgs[1] != msgs[2] {
			t.Errorf("refusals differ: %q", msgs)
		}
		a.want(a.do("POST", "/api/v1/billing/redeem", y.OwnerToken, map[string]any{}, nil), 400, "INVALID_REQUEST")
		a.want(a.do("POST", "/api/v1/billing/redeem", y.OwnerToken, map[string]any{"code": codes[2]}, nil), 200, "")
		// Each tenant got exactly its own redemption.
		for _, o := range []org{x, y} {
			if got := a.want(a.do("GET", "/api/v1/billing/balance", o.OwnerToken, nil, nil), 200, "").str("balance"); got != "2.50" {
				t.Errorf("%s's balance %s, want 2.50", o.Slug, got)
			}
		}
		// Filters and refusals of the operator routes.
		count := func(q string) int {
			return len(a.want(a.do("GET", "/api/v1/admin/redemption-codes"+q, op, nil, nil), 200, "").items())
		}
		if diff := cmp.Diff([]int{count("?status=redeemed"), count("?status=disabled"), count("?status=active"), count("")}, []int{2, 1, 0, 3}); diff != "" {
			t.Errorf("counts by status (-got +want):\n%s", diff)
		}
		a.want(a.do("GET", "/api/v1/admin/redemption-codes?status=lost", op, nil, nil), 400, "INVALID_REQUEST")
		a.want(a.do("GET", "/api/v1/admin/redemption-codes?batchId=nope", op, nil, nil), 400, "INVALID_REQUEST")
		a.want(a.do("DELETE", "/api/v1/admin/redemption-codes/"+items[2]["id"].(string), op, nil, nil), 409, "CODE_ALREADY_REDEEMED")
		a.want(a.do("DELETE", "/api/v1/admin/redemption-codes/"+uuid.Must(uuid.NewV7()).String(), op, nil, nil), 404, "CODE_NOT_FOUND")
		a.want(a.do("POST", "/api/v1/admin/redemption-codes", op, map[string]any{"count": 0, "amount": "1"}, nil), 400, "INVALID_REQUEST")
		a.want(a.do("POST", "/api/v1/admin/redemption-codes", op, map[string]any{"count": 1001, "amount": "1"}, nil), 400, "INVALID_REQUEST")
		a.want(a.do("POST", "/api/v1/admin/redemption-codes", op, map[string]any{"count": 1, "amount": "1", "expiresAt": "tomorrow"}, nil), 400, "INVALID_REQUEST")
		a.want(a.do("POST", "/api/v1/admin/redemption-codes", x.OwnerToken, map[string]any{"count": 1, "amount": "1"}, nil), 403, "PERMISSION_DENIED")
		// The audit logs name amounts, never the codes.
		ev := a.want(a.do("GET", "/api/v1/audit?eventType=billing.code_redeemed", x.OwnerToken, nil, nil), 200, "")
		if len(ev.items()) != 1 || strings.Contains(ev.Raw, codes[0]) || strings.Contains(ev.Raw, strings.ReplaceAll(codes[0][4:], "-", "")) {
			t.Errorf("redemption audit: %s", ev.Raw)
		}
	})
}

func (a *api) webhook(body string, sig string) resp {
	a.t.Helper()
	h := hdr{}
	if sig != "" {
		h[billing.WebhookHeader] = sig
	}
	return a.do("POST", "/api/v1/billing/webhooks/payment", "", body, h)
}

func TestPaymentWebhook(t *testing.T) {
	storetest.Each(t, func(t *testing.T, d store.Dialect) {
		a := newAPI(t, d)
		x := a.signup("pay-x")
		now := time.Now()
		paid := `{"id":"pi_123","tenantId":"` + x.ID + `","amount":"20.00","status":"succeeded","currency":"usd"}`
		sign := func(body string) string { return billing.SignWebhook(testWebhookSecret, now, []byte(body)) }
		r := a.want(a.webhook(paid, sign(paid)), 200, "")
		if r.Body["created"] != true || r.str("entry", "amount") != "20.00" || r.str("entry", "reference") != "payment:pi_123" {
			t.Errorf("payment: %s", r.Raw)
		}
		// A redelivery is acknowledged and credits nothing more.
		if r := a.want(a.webhook(paid, sign(paid)), 200, ""); r.Body["created"] != false {
			t.Errorf("redelivery: %s", r.Raw)
		}
		failed := `{"id":"pi_124","tenantId":"` + x.ID + `","amount":"5.00","status":"failed"}`
		if r := a.want(a.webhook(failed, sign(failed)), 200, ""); r.Body["ignored"] != true {
			t.Errorf("failed payment: %s", r.Raw)
		}
		// Bad signatures are 401 INVALID_SIGNATURE in the error shape.
		tampered := strings.Replace(paid, "20.00", "2000.00", 1)
		for name, tc := range map[string][2]string{
			"unsigned":     {paid, ""},
			"wrong secret": {paid, billing.SignWebhook("another-secret", now, []byte(paid))},
			"stale":        {paid, billing.SignWebhook(testWebhookSecret, now.Add(-10*time.Minute), []byte(paid))},
			"tampered":     {tampered, sign(paid)},
		} {
			r := a.webhook(tc[0], tc[1])
			if r.Status != 401 || r.code() != billing.CodeInvalidSignature || r.Body["error"].(map[string]any)["requestId"] == "" {
				t.Errorf("%s: %d %s", name, r.Status, r.Raw)
			}
		}
		unknown := `{"id":"pi_125","tenantId":"` + uuid.Must(uuid.NewV7()).String() + `","amount":"5.00","status":"succeeded"}`
		a.want(a.webhook(unknown, sign(unknown)), 404, "TENANT_NOT_FOUND")
		noAmount := `{"id":"pi_126","tenantId":"` + x.ID + `","status":"succeeded"}`
		a.want(a.webhook(noAmount, sign(noAmount)), 400, "INVALID_REQUEST")
		if got := a.want(a.do("GET", "/api/v1/billing/balance", x.OwnerToken, nil, nil), 200, "").str("balance"); got != "20.00" {
			t.Errorf("balance %s, want 20.00", got)
		}
		ev := a.want(a.do("GET", "/api/v1/audit?eventType=billing.topup", x.OwnerToken, nil, nil), 200, "").items()
		if len(ev) != 1 || ev[0]["userId"] != "payment-webhook" {
			t.Errorf("webhook audit events: %v", ev)
		}
		// A server without the secret refuses the webhook with 503, naming the variable.
		off := NewServer(Deps{Store: a.store, Tenants: a.tenants, Identity: a.ident, RBAC: a.rbac, Quota: a.quota,
			Billing: billing.New(a.store, billing.Options{})})
		rec := httptest.NewRecorder()
		off.ServeHTTP(rec, httptest.NewRequest("POST", "/api/v1/billing/webhooks/payment", strings.NewReader(paid)))
		if rec.Code != 503 || !strings.Contains(rec.Body.String(), "TENANTGATE_PAYMENT_WEBHOOK_SECRET") {
			t.Errorf("without a secret: %d %s", rec.Code, rec.Body)
		}
	})
}

// The gateway's 402s (insufficient balance, key budget) leave the API in the
// error shape with their details.
func TestPaymentRequiredErrorShape(t *testing.T) {
	storetest.Each(t, func(t *testing.T, d store.Dialect) {
		a := newAPI(t, d)
		x := a.signup("broke")
		key := uuid.Must(uuid.NewV7()).String()
		budget := int64(0)
		_, errBalance := a.billing.Reserve(context.Background(), x.ID, "", nil, 1_500_000)
		_, _, err := a.billing.TopUp(context.Background(), x.ID, 5_000_000, "", "")
		storetest.Must(t, err)
		_, errBudget := a.billing.Reserve(context.Background(), x.ID, key, &budget, 1)
		srv := &server{log: slog.New(slog.DiscardHandler)}
		for _, tc := range []struct {
			err    error
			code   string
			fields []string
		}{
			{errBalance, errs.CodeInsufficientBalance, []string{"available", "balance", "currency", "required"}},
			{errBudget, errs.CodeKeyBudgetExceeded, []string{"budget", "currency", "remaining", "required", "spent"}},
		} {
			rec := httptest.NewRecorder()
			srv.writeError(rec, httptest.NewRequest("GET", "/api/v1/billing/balance", nil), tc.err)
			var body struct {
				Error struct {
					Code, Message, Service string
					Details                struct{ Fields map[string]string }
				}
			}
			storetest.Must(t, json.Unmarshal(rec.Body.Bytes(), &body))
			var fields []string
			for k := range body.Error.Details.Fields {
				fields = append(fields, k)
			}
			if diff := cmp.Diff([]any{rec.Code, body.Error.Code, body.Error.Service, len(fields)}, []any{http.StatusPaymentRequired, tc.code, "tenantgate", len(tc.fields)}); diff != "" {
				t.Errorf("%s (-got +want):\n%s\n%s", tc.code, diff, rec.Body)
			}
			if body.Error.Message == "" {
				t.Errorf("%s has no message", tc.code)
			}
		}
	})
}
