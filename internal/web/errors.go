package web

import (
	"encoding/json"
	"errors"
	"log/slog"
	"net/http"
	"strconv"
	"time"

	"github.com/tenantgate/tenantgate/internal/errs"
	"github.com/tenantgate/tenantgate/internal/gateway"
	"github.com/tenantgate/tenantgate/internal/store"
)

// ServiceName is the "service" of every error body.
const ServiceName = "tenantgate"

type errorBody struct {
	Error errorDetail `json:"error"`
}

type errorDetail struct {
	Code      string `json:"code"`
	Message   string `json:"message"`
	Details   any    `json:"details,omitempty"`
	RequestID string `json:"requestId"`
	Timestamp string `json:"timestamp"`
	Service   string `json:"service"`
}

// dbRetryAfter is the Retry-After, in seconds, when the database is unavailable.
const dbRetryAfter = 2

// writeError answers with seed 004's error shape. Internal causes are logged
// with the request id and never sent.
func (s *server) writeError(w http.ResponseWriter, r *http.Request, err error) {
	e, ok := errs.As(err)
	if (!ok || e.Kind == errs.KindInternal) && store.IsUnavailable(err) {
		// Not a bug: the database cannot serve right now. Say so, and when to retry.
		s.log.WarnContext(r.Context(), "the database is unavailable", "err", err, "requestId", requestID(r.Context()), "method", r.Method, "path", r.URL.Path)
		e = &errs.Error{Kind: errs.KindUnavailable, Code: errs.CodeServiceUnavailable, RetryAfter: dbRetryAfter,
			Msg: "the database is unavailable right now; nothing was changed, retry shortly", Err: err}
		err, ok = e, true
	}
	if !ok {
		e = errs.Internal(err, "")
	}
	status := e.Kind.HTTPStatus()
	if isOpenAIPath(r.URL.Path) {
		var up *gateway.UpstreamReply
		if e.Kind == errs.KindInternal && !errors.As(err, &up) {
			s.log.ErrorContext(r.Context(), "request failed", "err", err, "requestId", requestID(r.Context()), "method", r.Method, "path", r.URL.Path)
		}
		gateway.WriteError(w, gateway.Status(e.Kind), err, requestID(r.Context()))
		return
	}
	msg := e.Msg
	if e.Kind == errs.KindInternal {
		msg = "something went wrong on our side; try again, and quote the request id if it persists"
		s.log.ErrorContext(r.Context(), "request failed", "err", err, "requestId", requestID(r.Context()),
			"method", r.Method, "path", r.URL.Path)
	}
	body := errorBody{Error: errorDetail{Code: e.Code, Message: msg, RequestID: requestID(r.Context()),
		Timestamp: time.Now().UTC().Format(time.RFC3339), Service: ServiceName}}
	details := map[string]any{}
	if len(e.Fields) > 0 {
		details["fields"] = e.Fields
	}
	if e.RetryAfter > 0 {
		w.Header().Set("Retry-After", strconv.Itoa(e.RetryAfter))
		details["retryAfter"] = e.RetryAfter
	}
	if len(details) > 0 {
		body.Error.Details = details
	}
	if status == http.StatusUnauthorized {
		w.Header().Set("WWW-Authenticate", `Bearer realm="tenantgate"`)
	}
	writeJSON(w, status, body)
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json; charset=utf-8")
	w.Header().Set("Cache-Control", "no-store")
	w.WriteHeader(status)
	enc := json.NewEncoder(w)
	enc.SetEscapeHTML(true)
	if err := enc.Encode(v); err != nil && !errors.Is(err, http.ErrHandlerTimeout) {
		slog.Default().Debug("write response", "err", err)
	}
}

// list is every listing's answer.
type list[T any] struct {
	Items      []T     `json:"items"`
	NextCursor *string `json:"nextCursor"`
}

func newList[T any](items []T, next *string) list[T] {
	if items == nil {
		items = []T{}
	}
	return list[T]{Items: items, NextCursor: next}
}
