package billing

import (
	"crypto/hmac"
	"crypto/sha256"
	"encoding/hex"
	"strconv"
	"strings"
	"time"

	"github.com/tenantgate/tenantgate/internal/errs"
)

// WebhookHeader carries a payment webhook's signature.
const WebhookHeader = "X-Tenantgate-Signature"

// WebhookTolerance is how far a signature's timestamp may be from the clock.
const WebhookTolerance = 5 * time.Minute

// SignWebhook returns the X-Tenantgate-Signature value for body sent at t:
// t=<unix seconds>,v1=<hex HMAC-SHA256(secret, "<t>.<body>")>.
func SignWebhook(secret string, t time.Time, body []byte) string {
	ts := strconv.FormatInt(t.Unix(), 10)
	return "t=" + ts + ",v1=" + hex.EncodeToString(webhookMAC(secret, ts, body))
}

func webhookMAC(secret, ts string, body []byte) []byte {
	m := hmac.New(sha256.New, []byte(secret))
	m.Write([]byte(ts))
	m.Write([]byte("."))
	m.Write(body)
	return m.Sum(nil)
}

func badSignature(msg string) error {
	return errs.Unauthenticated(CodeInvalidSignature, "%s", msg)
}

// VerifyWebhook checks a payment webhook: header is X-Tenantgate-Signature
// (t=<unix seconds>,v1=<hex HMAC-SHA256(secret, "<t>.<body>")>; several v1
// are allowed while a secret is rotated), the timestamp within five minutes
// of the clock, the MAC compared in constant time. Without a secret it is 503.
func (s *Service) VerifyWebhook(header string, body []byte) error {
	if s.webhookSecret == "" {
		return errs.E(errs.KindUnavailable, errs.CodeServiceUnavailable,
			"payment webhooks are off on this server: set TENANTGATE_PAYMENT_WEBHOOK_SECRET to the secret the payment service signs with")
	}
	var ts string
	var sigs []string
	for part := range strings.SplitSeq(header, ",") {
		k, v, _ := strings.Cut(strings.TrimSpace(part), "=")
		switch k {
		case "t":
			ts = v
		case "v1":
			sigs = append(sigs, v)
		}
	}
	sec, err := strconv.ParseInt(ts, 10, 64)
	if err != nil || len(sigs) == 0 {
		return badSignature("the " + WebhookHeader + " header must be t=<unix seconds>,v1=<hex HMAC-SHA256 of \"<t>.<body>\">")
	}
	if d := s.now().Sub(time.Unix(sec, 0)); d > WebhookTolerance || d < -WebhookTolerance {
		return badSignature("the signature's timestamp is more than 5 minutes from the server's clock; sign each delivery when it is sent")
	}
	want := webhookMAC(s.webhookSecret, ts, body)
	ok := false
	for _, sig := range sigs {
		got, err := hex.DecodeString(sig)
		if err == nil && hmac.Equal(got, want) {
			ok = true
		}
	}
	if !ok {
		return badSignature("the signature does not match the body")
	}
	return nil
}
