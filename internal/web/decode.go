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

// decodeBytes is decodeJSON's parser, separate so it can be fuzzed.
func decodeBytes(raw []byte, dst any) error {
	if len(raw) > MaxBodyBytes {
		return errs.Invalid("the body is too large", map[string]string{"body": fmt.Sprintf("must be at most %d bytes", MaxBodyBytes)})
	}
	trimmed := bytes.TrimSpace(raw)
	if len(trimmed) == 0 {
		return errs.Invalid("the body is empty; send a JSON object", map[string]string{"body": "must be a JSON object"})
	}
	if trimmed[0] != '{' { // null, arrays, strings, numbers: never what an endpoint takes
		return errs.Invalid("the body must be a JSON object", map[string]string{"body": "must be a JSON object"})
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
