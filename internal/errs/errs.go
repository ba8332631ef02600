// Package errs defines the one error type tenantgate uses everywhere.
//
// An *Error carries a Kind (which decides the HTTP status in one table in the
// web package), a stable Code from seed 004 (TENANT_NOT_FOUND, ...), a message
// that is safe to show to the caller, optional per-field details, and an
// optional wrapped cause that is logged but never sent.
package errs

import (
	"errors"
	"fmt"
	"sort"
	"strings"
	"unicode"
	"unicode/utf8"
)

// Kind classifies an error; web maps each Kind to one HTTP status.
type Kind int

// The kinds of error.
const (
	KindInternal Kind = iota
	KindInvalid
	KindUnauthenticated
	KindForbidden
	KindNotFound
	KindConflict
	KindGone
	KindTooLarge
	KindRateLimited
	KindUnavailable
	KindMethodNotAllowed
	KindPaymentRequired // 402: the balance or a key's budget does not cover the call
	KindUpstream        // 502: an upstream the server relays to failed
)

// HTTPStatus is the one table from error kind to HTTP status.
func (k Kind) HTTPStatus() int {
	switch k {
	case KindInvalid:
		return 400
	case KindUnauthenticated:
		return 401
	case KindPaymentRequired:
		return 402
	case KindForbidden:
		return 403
	case KindNotFound:
		return 404
	case KindMethodNotAllowed:
		return 405
	case KindConflict:
		return 409
	case KindGone:
		return 410
	case KindTooLarge:
		return 413
	case KindRateLimited:
		return 429
	case KindUnavailable:
		return 503
	case KindUpstream:
		return 502
	}
	return 500
}

// Stable error codes (seed 004 plus the ones tenantgate adds).
const (
	CodeInternal               = "INTERNAL_ERROR"
	CodeInvalidRequest         = "INVALID_REQUEST"
	CodeUnauthorized           = "UNAUTHORIZED"
	CodeForbidden              = "FORBIDDEN"
	CodeNotFound               = "NOT_FOUND"
	CodeRateLimited            = "RATE_LIMITED"
	CodeUserNotFound           = "USER_NOT_FOUND"
	CodeUserAlreadyExists      = "USER_ALREADY_EXISTS"
	CodeInvalidCredentials     = "INVALID_CREDENTIALS"
	CodeTenantNotFound         = "TENANT_NOT_FOUND"
	CodeTenantSuspended        = "TENANT_SUSPENDED"
	CodeTenantDeleted          = "TENANT_DELETED"
	CodeTenantUnavailable      = "TENANT_UNAVAILABLE"
	CodeTenantAlreadyExists    = "TENANT_ALREADY_EXISTS"
	CodeTenantQuotaExceeded    = "TENANT_QUOTA_EXCEEDED"
	CodeInvalidStateTransition = "INVALID_STATE_TRANSITION"
	CodePermissionDenied       = "PERMISSION_DENIED"
	CodeTokenExpired           = "TOKEN_EXPIRED"
	CodeTokenInvalid           = "TOKEN_INVALID"
	CodeMethodNotAllowed       = "METHOD_NOT_ALLOWED"
	CodePayloadTooLarge        = "PAYLOAD_TOO_LARGE"
	CodeUnsupportedMediaType   = "UNSUPPORTED_MEDIA_TYPE"
	CodeTenantScopeRequired    = "TENANT_SCOPE_REQUIRED"
	CodeServiceUnavailable     = "SERVICE_UNAVAILABLE"
	CodeLastOwner              = "LAST_OWNER"
	CodeInsufficientBalance    = "INSUFFICIENT_BALANCE"
	CodeKeyBudgetExceeded      = "KEY_BUDGET_EXCEEDED"
)

// Error is the one error type. Msg is shown to callers; Err is for logs only.
type Error struct {
	Kind   Kind
	Code   string
	Msg    string
	Fields map[string]string // per-field problems, shown as details
	Err    error             // cause; logged, never sent
	// RetryAfter, when set, is sent as the Retry-After header (whole seconds).
	RetryAfter int
}

func (e *Error) Error() string {
	var b strings.Builder
	b.WriteString(e.Code)
	if e.Msg != "" {
		b.WriteString(": ")
		b.WriteString(e.Msg)
	}
	if len(e.Fields) > 0 {
		keys := make([]string, 0, len(e.Fields))
		for k := range e.Fields {
			keys = append(keys, k)
		}
		sort.Strings(keys)
		b.WriteString(" (")
		for i, k := range keys {
			if i > 0 {
				b.WriteString("; ")
			}
			fmt.Fprintf(&b, "%s: %s", k, e.Fields[k])
		}
		b.WriteString(")")
	}
	if e.Err != nil {
		b.WriteString(": ")
		b.WriteString(e.Err.Error())
	}
	return b.String()
}

func (e *Error) Unwrap() error { return e.Err }

// E builds an error of a kind with a code and a message.
func E(kind Kind, code, format string, args ...any) *Error {
	return &Error{Kind: kind, Code: code, Msg: fmt.Sprintf(format, args...)}
}

// Invalid is a 400 INVALID_REQUEST with per-field details.
func Invalid(msg string, fields map[string]string) *Error {
	return &Error{Kind: KindInvalid, Code: CodeInvalidRequest, Msg: msg, Fields: fields}
}

// NotFound is a 404 with the given code.
func NotFound(code, format string, args ...any) *Error {
	return E(KindNotFound, code, format, args...)
}

// Conflict is a 409 with the given code.
func Conflict(code, format string, args ...any) *Error {
	return E(KindConflict, code, format, args...)
}

// Forbidden is a 403 with the given code.
func Forbidden(code, format string, args ...any) *Error {
	return E(KindForbidden, code, format, args...)
}

// Unauthenticated is a 401 with the given code.
func Unauthenticated(code, format string, args ...any) *Error {
	return E(KindUnauthenticated, code, format, args...)
}

// Internal wraps an unexpected cause; callers see only a generic message.
func Internal(err error, format string, args ...any) *Error {
	return &Error{Kind: KindInternal, Code: CodeInternal, Msg: fmt.Sprintf(format, args...), Err: err}
}

// As returns the *Error inside err, if any.
func As(err error) (*Error, bool) {
	var e *Error
	if errors.As(err, &e) {
		return e, true
	}
	return nil, false
}

// Is reports whether err is an *Error with the given code.
func Is(err error, code string) bool {
	e, ok := As(err)
	return ok && e.Code == code
}

// Fields collects per-field validation problems.
type Fields map[string]string

// Add records a problem for a field unless one is already recorded.
func (f Fields) Add(field, problem string) {
	if _, ok := f[field]; !ok {
		f[field] = problem
	}
}

// Text is the one check of a one-line text people read: a name, a display
// name. It trims v, records a problem under field unless v has min to max
// characters and no control characters (C0, DEL, C1), line or paragraph
// separators or bidirectional overrides (which would let the text rewrite
// logs, terminals or pages around it), and returns the trimmed text.
func (f Fields) Text(field, v string, min, max int) string {
	v = strings.TrimSpace(v)
	if n := utf8.RuneCountInString(v); n < min || n > max {
		if min > 0 {
			f.Add(field, fmt.Sprintf("must be %d to %d characters", min, max))
		} else {
			f.Add(field, fmt.Sprintf("must be at most %d characters", max))
		}
	} else if strings.IndexFunc(v, unreadable) >= 0 || !utf8.ValidString(v) {
		f.Add(field, "must not contain control characters (line breaks, tabs, escape sequences, direction overrides)")
	}
	return v
}

func unreadable(r rune) bool {
	return unicode.IsControl(r) || r == '\u2028' || r == '\u2029' || (r >= '\u202a' && r <= '\u202e') || (r >= '\u2066' && r <= '\u2069')
}

// Err returns nil when no problem was recorded, else a 400 INVALID_REQUEST.
func (f Fields) Err() error {
	if len(f) == 0 {
		return nil
	}
	return Invalid("the request has invalid fields; see details", f)
}

// Wrap returns err unchanged when it already is an *Error (a refusal the
// caller should see), and otherwise an internal error around it.
func Wrap(err error, format string, args ...any) error {
	if err == nil {
		return nil
	}
	if _, ok := As(err); ok {
		return err
	}
	return Internal(err, format, args...)
}
