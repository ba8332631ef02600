package web

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"mime"
	"net/http"
	"reflect"
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
		return allProblems(raw, dst, jsonProblem(err))
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

// validator is a request body that can check its own values without the
// database, by the same rule its service applies.
type validator interface {
	Validate() errs.Fields
}

// allProblems turns a decoding error into one answer naming every bad
// field: each unknown field and wrong type (not only the first the decoder
// met), and, when the body's type can check itself, every invalid value too.
// first is the decoder's own answer, kept when the body cannot be walked.
func allProblems(raw []byte, dst any, first error) error {
	e, ok := errs.As(first)
	if !ok || e.Fields["body"] != "" {
		return first // not JSON, cut short: there are no fields to name
	}
	f := errs.Fields{}
	walkJSON(raw, reflect.TypeOf(dst), "", f)
	if len(f) == 0 {
		return first
	}
	if v, ok := dst.(validator); ok {
		for k, p := range v.Validate() {
			f.Add(k, p) // a field already named for its type keeps that problem
		}
	}
	msg := "the request has invalid fields; see details"
	if len(f) == 1 {
		msg = e.Msg
	}
	return errs.Invalid(msg, f)
}

var unmarshalerType = reflect.TypeFor[json.Unmarshaler]()

// walkJSON records, under their paths (a.b, list[2].c), the members of raw
// that t has no field for and the values of the wrong type, as
// encoding/json matches them (exact name first, then case-insensitively).
func walkJSON(raw json.RawMessage, t reflect.Type, path string, f errs.Fields) {
	for t.Kind() == reflect.Pointer {
		if bytes.Equal(bytes.TrimSpace(raw), []byte("null")) {
			return
		}
		t = t.Elem()
	}
	name := func(k string) string {
		if path == "" {
			return k
		}
		return path + "." + k
	}
	at := path
	if at == "" {
		at = "body"
	}
	if reflect.PointerTo(t).Implements(unmarshalerType) {
		if err := json.Unmarshal(raw, reflect.New(t).Interface()); err != nil {
			f.Add(at, "is not valid: "+strings.TrimPrefix(err.Error(), "json: "))
		}
		return
	}
	switch t.Kind() {
	case reflect.Struct:
		var members map[string]json.RawMessage
		if json.Unmarshal(raw, &members) != nil || members == nil {
			f.Add(at, "must be an object")
			return
		}
		fields := jsonFields(t)
		for k, v := range members {
			ft, ok := fields[k]
			if !ok {
				for fk, fv := range fields {
					if strings.EqualFold(fk, k) {
						ft, ok = fv, true
						break
					}
				}
			}
			if !ok {
				f.Add(name(k), "is not a known field")
				continue
			}
			walkJSON(v, ft, name(k), f)
		}
	case reflect.Slice, reflect.Array:
		var items []json.RawMessage
		if err := json.Unmarshal(raw, &items); err != nil {
			if !bytes.Equal(bytes.TrimSpace(raw), []byte("null")) {
				f.Add(at, "must be "+jsonType(t.Kind().String()))
			}
			return
		}
		for i, it := range items {
			walkJSON(it, t.Elem(), fmt.Sprintf("%s[%d]", at, i), f)
		}
	case reflect.Map:
		var members map[string]json.RawMessage
		if err := json.Unmarshal(raw, &members); err != nil {
			f.Add(at, "must be "+jsonType(t.Kind().String()))
			return
		}
		for k, v := range members {
			walkJSON(v, t.Elem(), name(k), f)
		}
	case reflect.Interface:
	default:
		if err := json.Unmarshal(raw, reflect.New(t).Interface()); err != nil {
			f.Add(at, "must be "+jsonType(t.Kind().String()))
		}
	}
}

// jsonFields maps a struct's JSON member names to their types, with
// embedded structs' fields promoted as encoding/json does.
func jsonFields(t reflect.Type) map[string]reflect.Type {
	out := map[string]reflect.Type{}
	for i := range t.NumField() {
		sf := t.Field(i)
		tag := sf.Tag.Get("json")
		if tag == "-" {
			continue
		}
		n, _, _ := strings.Cut(tag, ",")
		if sf.Anonymous && n == "" {
			et := sf.Type
			if et.Kind() == reflect.Pointer {
				et = et.Elem()
			}
			if et.Kind() == reflect.Struct {
				for k, v := range jsonFields(et) {
					if _, ok := out[k]; !ok {
						out[k] = v
					}
				}
				continue
			}
		}
		if !sf.IsExported() {
			continue
		}
		if n == "" {
			n = sf.Name
		}
		out[n] = sf.Type
	}
	return out
}

func jsonType(kind string) string {
	switch kind {
	case "string":
		return "a string"
	case "int", "int64", "int32", "int16", "int8", "uint", "uint64", "uint32", "uint16", "uint8", "float64", "float32":
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
