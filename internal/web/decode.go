package web

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"mime"
	"net/http"
	"strings"
	"unicode/utf8"

	"github.com/tenantgate/tenantgate/internal/errs"
)

// MaxBodyBytes caps a JSON request body.
const MaxBodyBytes = 1 << 20

// decodeJSON reads exactly one JSON object into dst, refusing unknown
// fields, trailing data, wrong types and bodies over MaxBodyBytes with a 400
// that names the problem.
func decodeJSON(r *http.Request, dst any) error {
	if ct := r.Header.Get("Content-Type"); ct != "" {
		mt, _, err := mime.ParseMediaType(ct)
		// curl -d sends application/x-www-form-urlencoded; the body must still be JSON.
		if err != nil || (mt != "application/json" && !strings.HasSuffix(mt, "+json") && mt != "application/x-www-form-urlencoded") {
			return errs.Invalid("the body must be JSON", map[string]string{"Content-Type": "must be application/json"})
		}
	}
	raw, err := io.ReadAll(io.LimitReader(r.Body, MaxBodyBytes+1))
	if err != nil {
		return errs.Invalid("the body could not be read", map[string]string{"body": err.Error()})
	}
	return decodeBytes(raw, dst)
}

// decodeArray reads exactly one JSON array into dst, with decodeJSON's rules.
func decodeArray(r *http.Request, dst any) error {
	if ct := r.Header.Get("Content-Type"); ct != "" {
		if mt, _, err := mime.ParseMediaType(ct); err != nil || (mt != "application/json" && mt != "application/x-www-form-urlencoded") {
			return errs.Invalid("the body must be JSON", map[string]string{"Content-Type": "must be application/json"})
		}
	}
	raw, err := io.ReadAll(io.LimitReader(r.Body, MaxBodyBytes+1))
	if err != nil {
		return errs.Invalid("the body could not be read", map[string]string{"body": err.Error()})
	}
	return decodeInto(raw, dst, '[')
}

// decodeBytes is decodeJSON's parser, separate so it can be fuzzed.
func decodeBytes(raw []byte, dst any) error { return decodeInto(raw, dst, '{') }

func decodeInto(raw []byte, dst any, open byte) error {
	if len(raw) > MaxBodyBytes {
		return errs.Invalid("the body is too large", map[string]string{"body": fmt.Sprintf("must be at most %d bytes", MaxBodyBytes)})
	}
	trimmed := bytes.TrimSpace(raw)
	if len(trimmed) == 0 {
		return errs.Invalid("the body is empty; send a JSON object", map[string]string{"body": "must be a JSON object"})
	}
	if trimmed[0] != open { // null, strings, numbers, the wrong container: never what an endpoint takes
		what := map[byte]string{'{': "a JSON object", '[': "a JSON array"}[open]
		return errs.Invalid("the body must be "+what, map[string]string{"body": "must be " + what})
	}
	// Text columns cannot hold NUL (PostgreSQL refuses it), and the API speaks UTF-8.
	if !utf8.Valid(raw) || bytes.Contains(raw, []byte(`\u0000`)) {
		return errs.Invalid("the body must be UTF-8 text without NUL characters", map[string]string{"body": "contains invalid UTF-8 or \\u0000"})
	}
	dec := json.NewDecoder(bytes.NewReader(raw))
	dec.DisallowUnknownFields()
	if err := dec.Decode(dst); err != nil {
		return jsonProblem(err)
	}
	if dec.More() {
		return errs.Invalid("the body has data after the JSON object", map[string]string{"body": "must be exactly one JSON object"})
	}
	var extra json.RawMessage
	if err := dec.Decode(&extra); !errors.Is(err, io.EOF) {
		return errs.Invalid("the body has data after the JSON object", map[string]string{"body": "must be exactly one JSON object"})
	}
	return nil
}

func jsonProblem(err error) error {
	var syn *json.SyntaxError
	var typ *json.UnmarshalTypeError
	switch {
	case errors.As(err, &syn):
		return errs.Invalid("the body is not valid JSON", map[string]string{"body": fmt.Sprintf("syntax error at byte %d", syn.Offset)})
	case errors.As(err, &typ):
		field := typ.Field
		if field == "" {
			field = "body"
		}
		return errs.Invalid("a field has the wrong type", map[string]string{field: "must be " + jsonType(typ.Type.Kind().String())})
	case errors.Is(err, io.ErrUnexpectedEOF):
		return errs.Invalid("the body is cut short", map[string]string{"body": "is incomplete JSON"})
	case strings.HasPrefix(err.Error(), "json: unknown field "):
		name := strings.Trim(strings.TrimPrefix(err.Error(), "json: unknown field "), `"`)
		return errs.Invalid("the body has a field this endpoint does not take", map[string]string{name: "is not a known field"})
	}
	return errs.Invalid("the body could not be decoded", map[string]string{"body": "must be a JSON object of the documented shape"})
}

func jsonType(kind string) string {
	switch kind {
	case "string":
		return "a string"
	case "int", "int64", "int32", "uint", "uint64", "float64":
		return "a number"
	case "bool":
		return "true or false"
	case "slice", "array":
		return "an array"
	case "map", "struct", "ptr":
		return "an object"
	}
	return "of another type"
}

// cleanQuery refuses query parameters that are not UTF-8 or contain NUL.
func cleanQuery(r *http.Request) error {
	for k, vs := range r.URL.Query() {
		for _, v := range append(vs, k) {
			if !utf8.ValidString(v) || strings.IndexByte(v, 0) >= 0 {
				return errs.Invalid("a query parameter is not valid text", map[string]string{k: "must be UTF-8 without NUL characters"})
			}
		}
	}
	return nil
}

// cleanHeader makes a header value safe to store: valid UTF-8, no NUL or
// other control characters, at most n bytes cut on a character boundary.
func cleanHeader(v string, n int) string {
	v = strings.ToValidUTF8(v, "\uFFFD")
	v = strings.Map(func(r rune) rune {
		if r < 0x20 || r == 0x7f {
			return -1
		}
		return r
	}, v)
	if len(v) > n {
		cut := n
		for cut > 0 && !utf8.RuneStart(v[cut]) {
			cut--
		}
		v = v[:cut]
	}
	return v
}

// decodeOneOrBatch reads either one item or {"events": [...]}, told apart by
// the top-level key (never by the word appearing somewhere inside).
func decodeOneOrBatch[T any](r *http.Request) ([]T, error) {
	raw, err := io.ReadAll(io.LimitReader(r.Body, MaxBodyBytes+1))
	if err != nil {
		return nil, errs.Invalid("the body could not be read", map[string]string{"body": err.Error()})
	}
	var top map[string]json.RawMessage
	if err := decodeBytes(raw, &top); err != nil {
		return nil, err
	}
	if _, batch := top["events"]; batch {
		var b struct {
			Events []T `json:"events"`
		}
		if err := decodeBytes(raw, &b); err != nil {
			return nil, err
		}
		return b.Events, nil
	}
	var one T
	if err := decodeBytes(raw, &one); err != nil {
		return nil, err
	}
	return []T{one}, nil
}
