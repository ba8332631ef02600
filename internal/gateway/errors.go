package gateway

import (
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"slices"
	"strconv"
	"strings"

	"github.com/tenantgate/tenantgate/internal/errs"
)

// Error codes of the relay (shown lower-case in OpenAI's error shape).
const (
	CodeModelNotFound   = "MODEL_NOT_FOUND"
	CodeModelNotAllowed = "MODEL_NOT_ALLOWED"
	CodeModelNotPriced  = "MODEL_NOT_PRICED"
	CodeUpstreamError   = "UPSTREAM_ERROR"
	CodeUpstreamTimeout = "UPSTREAM_TIMEOUT"
	CodeChannelsBusy    = "CHANNELS_BUSY"
	// CodeNoHealthyChannel: channels serve the model, but the health check
	// has disabled every one of them for now (503 with Retry-After).
	CodeNoHealthyChannel = "NO_HEALTHY_CHANNEL"
	// CodeServerShutdown: the shutdown's grace ran out before the call ended.
	CodeServerShutdown = "SERVER_SHUTDOWN"
)

// openAIError is OpenAI's error body.
type openAIError struct {
	Error openAIErrorDetail `json:"error"`
}

type openAIErrorDetail struct {
	Message string  `json:"message"`
	Type    string  `json:"type"`
	Param   *string `json:"param"`
	Code    *string `json:"code"`
}

// OpenAI's own codes for the cases SDKs look for.
var openAICodes = map[string]string{
	errs.CodeUnauthorized:        "invalid_api_key",
	errs.CodeTokenInvalid:        "invalid_api_key",
	errs.CodeTokenExpired:        "invalid_api_key",
	errs.CodeRateLimited:         "rate_limit_exceeded",
	errs.CodeInsufficientBalance: "insufficient_quota",
	errs.CodeKeyBudgetExceeded:   "insufficient_quota",
	errs.CodeTenantQuotaExceeded: "insufficient_quota",
	CodeModelNotFound:            "model_not_found",
}

// UpstreamReply is an upstream's own answer to a bad request (a 4xx other
// than authentication and rate limits), passed to the client unchanged: the
// client's request is at fault, not the channel.
type UpstreamReply struct {
	Status int
	Body   []byte // OpenAI's error shape
}

func (e *UpstreamReply) Error() string { return fmt.Sprintf("upstream answered %d", e.Status) }

// Status is the HTTP status of an error kind on /v1/*: the control-plane
// table (errs.Kind.HTTPStatus), except that a balance or key budget that does
// not cover the call is 429 (OpenAI's insufficient_quota), not 402, so the
// official SDKs raise their typed rate-limit error instead of a bare APIError.
func Status(k errs.Kind) int {
	if k == errs.KindPaymentRequired {
		return http.StatusTooManyRequests
	}
	return k.HTTPStatus()
}

// WriteError answers err in OpenAI's error shape with status (Status of
// err's kind). Internal causes are never shown.
func WriteError(w http.ResponseWriter, status int, err error, requestID string) {
	if requestID != "" {
		w.Header().Set("X-Request-ID", requestID)
	}
	var up *UpstreamReply
	if errors.As(err, &up) {
		w.Header().Set("Content-Type", "application/json")
		w.WriteHeader(up.Status)
		_, _ = w.Write(up.Body)
		return
	}
	e, ok := errs.As(err)
	if !ok {
		e = errs.Internal(err, "")
	}
	msg := e.Msg
	if e.Kind == errs.KindInternal || msg == "" {
		msg = "something went wrong on our side; try again, and quote the request id " + requestID + " if it persists"
	}
	if len(e.Fields) > 0 && e.Kind == errs.KindInvalid { // other kinds say it all in the message
		parts := make([]string, 0, len(e.Fields))
		for f, p := range e.Fields {
			parts = append(parts, f+": "+p)
		}
		slices.Sort(parts)
		msg += " (" + strings.Join(parts, "; ") + ")"
	}
	code := openAICodes[e.Code]
	if code == "" {
		code = strings.ToLower(e.Code)
	}
	typ := "invalid_request_error"
	switch {
	case status == http.StatusUnauthorized:
		typ = "authentication_error"
	case status == http.StatusForbidden:
		typ = "permission_error"
	case status == http.StatusPaymentRequired || code == "insufficient_quota":
		typ = "insufficient_quota"
	case status == http.StatusTooManyRequests:
		typ = "rate_limit_error"
	case status >= 500:
		typ = "api_error"
	}
	body := openAIError{Error: openAIErrorDetail{Message: msg, Type: typ, Code: &code}}
	if len(e.Fields) == 1 {
		for f := range e.Fields {
			body.Error.Param = &f
		}
	}
	if e.RetryAfter > 0 {
		w.Header().Set("Retry-After", strconv.Itoa(e.RetryAfter))
	}
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	_ = json.NewEncoder(w).Encode(body)
}
