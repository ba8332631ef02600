package gateway

import (
	"encoding/json"
	"reflect"
	"strings"
	"testing"

	"github.com/tenantgate/tenantgate/internal/gateway/wire"
)

// hasCaseVariant is the plain reference for caseVariant: decode each object
// into a map and compare its keys with the fields.
func hasCaseVariant(raw json.RawMessage, t reflect.Type) bool {
	for t.Kind() == reflect.Pointer {
		t = t.Elem()
	}
	switch {
	case t.Kind() == reflect.Struct:
		var m map[string]json.RawMessage
		if json.Unmarshal(raw, &m) != nil {
			return false
		}
		fields := jsonFields(t)
		for k, v := range m {
			if ft, ok := fields.types[k]; ok {
				if hasCaseVariant(v, ft) {
					return true
				}
				continue
			}
			for _, name := range fields.names {
				if strings.EqualFold(k, name) {
					return true
				}
			}
		}
	case t.Kind() == reflect.Slice && t != rawMessageType && hasObjects(t.Elem()):
		var list []json.RawMessage
		if json.Unmarshal(raw, &list) != nil {
			return false
		}
		for _, v := range list {
			if hasCaseVariant(v, t.Elem()) {
				return true
			}
		}
	}
	return false
}

// FuzzCaseVariant holds the in-place scanner to the map-based reference on
// any valid JSON, for every request type.
func FuzzCaseVariant(f *testing.F) {
	for _, s := range []string{
		`{"model":"m","messages":[{"role":"user","content":"hi"}]}`,
		`{"model":"m","MAX_TOKENS":1,"messages":[]}`,
		`{"model":"m","max_to\u212Aens":1}`,
		`{"messages":[{"role":"assistant","tool_calls":[{"Function":{"name":"f"}}]}]}`,
		`{"stream_options":{"Include_Usage":true},"tools":[{"function":{"NAME":"x"}}]}`,
		`{"a":{"MAX_TOKENS":1},"b":[1,"x",{"c":null}],"n":-1.5e3,"messages":[[],{},null]}`,
		`{"max\u005ftokens":5,"MAX\u005fTOKENS":6}`,
		` { "messages" : [ { "content" : "}]\"{" , "Role" : "user" } ] } `,
		`[{"MODEL":1}]`, `"x"`, `{}`, `{"messages":{"Role":1}}`, `{"prompt":"x","Best_of":2,"input":[1,2]}`,
	} {
		f.Add(s)
	}
	types := []reflect.Type{bodyType[wire.OpChat], bodyType[wire.OpCompletion], bodyType[wire.OpEmbedding]}
	f.Fuzz(func(t *testing.T, s string) {
		if !json.Valid([]byte(s)) {
			return
		}
		for _, typ := range types {
			at, _ := caseVariant([]byte(s), typ)
			if got, want := at != "", hasCaseVariant(json.RawMessage(s), typ); got != want {
				t.Fatalf("%s in %s: scanner says %v (%q), reference %v", typ.Name(), s, got, at, want)
			}
		}
	})
}
