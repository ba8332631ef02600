package web

import (
	"bytes"
	"encoding/json"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"

	"github.com/tenantgate/tenantgate/internal/errs"
)

func TestParseHost(t *testing.T) {
	tests := []struct {
		name, host, base string
		wantSub, wantDom string
	}{
		{"subdomain", "acme.example.com", "example.com", "acme", ""},
		{"base itself", "example.com", "example.com", "", ""},
		{"base with port", "example.com:443", "example.com", "", ""},
		{"deeper name", "a.b.example.com", "example.com", "", ""},
		{"upper case with port", "ACME.Example.com:8080", "example.com", "acme", ""},
		{"upper case base", "acme.example.com", "Example.COM", "acme", ""},
		{"base with trailing dot", "acme.example.com", "example.com.", "acme", ""},
		{"subdomain trailing dot", "acme.example.com.", "example.com", "acme", ""},
		{"subdomain trailing dot and port", "acme.example.com.:8080", "example.com", "acme", ""},
		{"surrounding space", "  acme.example.com  ", "example.com", "acme", ""},
		{"empty label", ".example.com", "example.com", "", ""},
		{"localhost with port", "localhost:8080", "example.com", "", ""},
		{"localhost", "localhost", "example.com", "", ""},
		{"name under localhost", "acme.localhost:8080", "example.com", "", ""},
		{"name under localhost base", "acme.localhost:8080", "localhost", "acme", ""},
		{"name under un-normalised localhost base", "acme.localhost", "Localhost.", "acme", ""},
		{"ipv4 with port", "127.0.0.1:8080", "example.com", "", ""},
		{"ipv4", "10.1.2.3", "example.com", "", ""},
		{"ipv6 with port", "[::1]:8080", "example.com", "", ""},
		{"ipv6 bracketed", "[::1]", "example.com", "", ""},
		{"ipv6 bare", "::1", "example.com", "", ""},
		{"custom domain", "custom.org", "example.com", "", "custom.org"},
		{"custom domain upper case with port", "App.Custom.ORG:443", "example.com", "", "app.custom.org"},
		{"custom domain trailing dot", "custom.org.", "example.com", "", "custom.org"},
		{"suffix without dot is foreign", "evilexample.com", "example.com", "", "evilexample.com"},
		{"single label", "intranet", "example.com", "", ""},
		{"empty host", "", "example.com", "", ""},
		{"only a dot", ".", "example.com", "", ""},
		{"only a port", ":8080", "example.com", "", ""},
		{"too long", strings.Repeat("a", 250) + ".org", "example.com", "", ""},
		{"no base domain", "acme.example.com", "", "", "acme.example.com"},
		{"no base domain single label", "acme", "", "", ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			sub, dom := parseHost(tt.host, tt.base)
			if sub != tt.wantSub || dom != tt.wantDom {
				t.Errorf("parseHost(%q, %q) = (%q, %q), want (%q, %q)", tt.host, tt.base, sub, dom, tt.wantSub, tt.wantDom)
			}
		})
	}
}

func FuzzParseHost(f *testing.F) {
	for _, s := range [][2]string{
		{"acme.example.com", "example.com"}, {"example.com", "example.com"}, {"a.b.example.com", "example.com"},
		{"ACME.Example.com:8080", "example.com"}, {"localhost:8080", "example.com"}, {"127.0.0.1:8080", "example.com"},
		{"[::1]:8080", "example.com"}, {"custom.org", "example.com"}, {"custom.org.", "example.com"},
		{"", "example.com"}, {"acme.example.com", ""}, {"acme.localhost", "localhost"}, {"ÄCME.example.com", "EXAMPLE.com"},
		{"x.\xff.example.com", "example.com"}, {"acme.example.com.:1", "example.com."}, {".example.com", "example.com"},
	} {
		f.Add(s[0], s[1])
	}
	f.Fuzz(func(t *testing.T, host, base string) {
		sub, dom := parseHost(host, base)
		if sub != "" && dom != "" {
			t.Errorf("parseHost(%q, %q) = (%q, %q): both a subdomain and a domain", host, base, sub, dom)
		}
		if strings.Contains(sub, ".") {
			t.Errorf("parseHost(%q, %q) subdomain %q contains a dot", host, base, sub)
		}
		if sub != strings.ToLower(sub) || dom != strings.ToLower(dom) {
			t.Errorf("parseHost(%q, %q) = (%q, %q): not lower-case", host, base, sub, dom)
		}
		if dom != "" && !strings.Contains(dom, ".") {
			t.Errorf("parseHost(%q, %q) domain %q is a single label", host, base, dom)
		}
		if len(dom) > 253 {
			t.Errorf("parseHost(%q, %q) domain is %d bytes, over 253", host, base, len(dom))
		}
		b := strings.ToLower(strings.TrimSuffix(base, "."))
		if sub != "" && b == "" {
			t.Errorf("parseHost(%q, %q) = subdomain %q with no base domain", host, base, sub)
		}
		if dom != "" && b != "" && (dom == b || strings.HasSuffix(dom, "."+b)) {
			t.Errorf("parseHost(%q, %q) domain %q is our own base domain", host, base, dom)
		}
	})
}

func TestSplitTenantPath(t *testing.T) {
	tests := []struct {
		path, wantSlug, wantRest string
		wantOK                   bool
	}{
		{"/t/acme/api/v1/users", "acme", "/api/v1/users", true},
		{"/t/acme", "acme", "/", true},
		{"/t/acme/", "acme", "/", true},
		{"/t/acme//x", "acme", "//x", true},
		{"/t/acme?x=1", "acme?x=1", "/", true}, // a query never reaches the path; kept verbatim
		{"/t/", "", "", false},
		{"/t//x", "", "", false},
		{"/t", "", "", false},
		{"/tenants", "", "", false},
		{"/tenants/acme", "", "", false},
		{"/api/t/acme/x", "", "", false},
		{"t/acme/x", "", "", false},
		{"/T/acme/x", "", "", false},
		{"", "", "", false},
		{"/", "", "", false},
	}
	for _, tt := range tests {
		slug, rest, ok := splitTenantPath(tt.path)
		if slug != tt.wantSlug || rest != tt.wantRest || ok != tt.wantOK {
			t.Errorf("splitTenantPath(%q) = (%q, %q, %v), want (%q, %q, %v)", tt.path, slug, rest, ok, tt.wantSlug, tt.wantRest, tt.wantOK)
		}
	}
}

func FuzzSplitTenantPath(f *testing.F) {
	for _, s := range []string{"/t/acme/api/v1/users", "/t/acme", "/t/acme/", "/t/", "/t//x", "/tenants", "/api/t/acme/x", "", "/", "/t/a/b/c/", "/t/\xff/x"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, p string) {
		slug, rest, ok := splitTenantPath(p)
		// ok exactly when p is "/t/" followed by a non-empty first segment.
		wantOK := strings.HasPrefix(p, "/t/") && len(p) > 3 && p[3] != '/'
		if ok != wantOK {
			t.Fatalf("splitTenantPath(%q) ok = %v, want %v", p, ok, wantOK)
		}
		if !ok {
			if slug != "" || rest != "" {
				t.Errorf("splitTenantPath(%q) = (%q, %q, false), want empty parts", p, slug, rest)
			}
			return
		}
		if slug == "" || strings.Contains(slug, "/") {
			t.Errorf("splitTenantPath(%q) slug = %q, want a non-empty segment without '/'", p, slug)
		}
		if !strings.HasPrefix(rest, "/") {
			t.Errorf("splitTenantPath(%q) rest = %q, want a leading '/'", p, rest)
		}
		// Reassembly gives p back, except that a bare "/t/{slug}" gains "/" as its rest.
		joined := "/t/" + slug + rest
		if strings.Contains(p[3:], "/") {
			if joined != p {
				t.Errorf("splitTenantPath(%q) = (%q, %q): reassembled %q, want %q", p, slug, rest, joined, p)
			}
		} else if rest != "/" || joined != p+"/" {
			t.Errorf("splitTenantPath(%q) = (%q, %q): want rest \"/\" and reassembly %q", p, slug, rest, p+"/")
		}
	})
}

type decodeTarget struct {
	Name string `json:"name"`
	N    int    `json:"n"`
}

func TestDecodeBytes(t *testing.T) {
	tests := []struct {
		name      string
		body      string
		want      decodeTarget // when wantField == ""
		wantField string       // the Fields key naming the problem; "" for success
	}{
		{"valid", `{"name":"acme","n":3}`, decodeTarget{Name: "acme", N: 3}, ""},
		{"valid with whitespace", " \n\t{\"name\":\"a\"}\r\n ", decodeTarget{Name: "a"}, ""},
		{"empty object", `{}`, decodeTarget{}, ""},
		{"malformed", `{"name":}`, decodeTarget{}, "body"},
		{"unquoted key", `{name:"a"}`, decodeTarget{}, "body"},
		{"cut short", `{"name":"a"`, decodeTarget{}, "body"},
		{"unknown field", `{"name":"a","extra":1}`, decodeTarget{}, "extra"},
		{"unknown field only", `{"Admin":true}`, decodeTarget{}, "Admin"},
		{"wrong type", `{"n":"x"}`, decodeTarget{}, "n"},
		{"wrong type string", `{"name":5}`, decodeTarget{}, "name"},
		{"fraction for int", `{"n":1.5}`, decodeTarget{}, "n"},
		{"overflowing int", `{"n":1e400}`, decodeTarget{}, "n"},
		{"array body", `[1,2]`, decodeTarget{}, "body"},
		{"null body", `null`, decodeTarget{}, "body"},
		{"number body", ` 42 `, decodeTarget{}, "body"},
		{"string body", `"acme"`, decodeTarget{}, "body"},
		{"two objects", `{"n":1}{"n":2}`, decodeTarget{}, "body"},
		{"two objects with space", `{"n":1} {"n":2}`, decodeTarget{}, "body"},
		{"trailing garbage", `{"n":1} xyz`, decodeTarget{}, "body"},
		{"trailing brace", `{"n":1}}`, decodeTarget{}, "body"},
		{"trailing bracket", `{"n":1}]`, decodeTarget{}, "body"},
		{"empty body", ``, decodeTarget{}, "body"},
		{"whitespace body", " \n\t\r ", decodeTarget{}, "body"},
		{"too large", `{"name":"` + strings.Repeat("a", MaxBodyBytes) + `"}`, decodeTarget{}, "body"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var got decodeTarget
			err := decodeBytes([]byte(tt.body), &got)
			if tt.wantField == "" {
				if err != nil {
					t.Fatalf("decodeBytes(%.60q) = %v, want nil", tt.body, err)
				}
				if diff := cmp.Diff(got, tt.want); diff != "" {
					t.Errorf("decodeBytes(%.60q) decoded (-got +want):\n%s", tt.body, diff)
				}
				return
			}
			e, ok := errs.As(err)
			if !ok {
				t.Fatalf("decodeBytes(%.60q) = %v (%T), want an *errs.Error", tt.body, err, err)
			}
			if e.Code != errs.CodeInvalidRequest || e.Kind != errs.KindInvalid {
				t.Errorf("decodeBytes(%.60q) code, kind = %s, %d; want %s, %d", tt.body, e.Code, e.Kind, errs.CodeInvalidRequest, errs.KindInvalid)
			}
			if _, ok := e.Fields[tt.wantField]; !ok || len(e.Fields) != 1 {
				t.Errorf("decodeBytes(%.60q) fields = %v, want exactly one, named %q", tt.body, e.Fields, tt.wantField)
			}
		})
	}
}

func TestDecodeBytesSizeLimit(t *testing.T) {
	// A body of exactly MaxBodyBytes is allowed; one byte more is not.
	pad := MaxBodyBytes - len(`{"name":""}`)
	body := []byte(`{"name":"` + strings.Repeat("a", pad) + `"}`)
	if len(body) != MaxBodyBytes {
		t.Fatalf("test body is %d bytes, want %d", len(body), MaxBodyBytes)
	}
	var dst decodeTarget
	if err := decodeBytes(body, &dst); err != nil {
		t.Errorf("decodeBytes(%d bytes) = %v, want nil", len(body), err)
	}
	body = append(body, ' ')
	if err := decodeBytes(body, &dst); !errs.Is(err, errs.CodeInvalidRequest) {
		t.Errorf("decodeBytes(%d bytes) = %v, want %s", len(body), err, errs.CodeInvalidRequest)
	}
}

func FuzzDecodeBytes(f *testing.F) {
	for _, s := range []string{
		`{"name":"acme","n":3}`, `{}`, `{"name":}`, `{"name":"a","extra":1}`, `{"n":"x"}`, `{"n":1}{"n":2}`,
		`{"n":1} xyz`, ``, " \n", `[1]`, `"s"`, `1`, `true`, `{"n":1e400}`, `{"name":"\ud800"}`, `{"":1}`,
		`{"n":{"a":1}}`, `{"name":"a","name":"b"}`, `{"N":2}`, "{\"name\":\"\xff\"}",
	} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, raw []byte) {
		var dst decodeTarget
		err := decodeBytes(raw, &dst)
		if err == nil {
			if !json.Valid(raw) {
				t.Errorf("decodeBytes(%q) = nil for invalid JSON", raw)
			}
			if len(bytes.TrimSpace(raw)) == 0 {
				t.Errorf("decodeBytes(%q) = nil for an empty body", raw)
			}
			return
		}
		e, ok := errs.As(err)
		if !ok {
			t.Fatalf("decodeBytes(%q) = %v (%T), want an *errs.Error", raw, err, err)
		}
		if e.Code != errs.CodeInvalidRequest || e.Kind != errs.KindInvalid {
			t.Errorf("decodeBytes(%q) code, kind = %s, %d; want %s, %d", raw, e.Code, e.Kind, errs.CodeInvalidRequest, errs.KindInvalid)
		}
		if len(e.Fields) == 0 {
			t.Errorf("decodeBytes(%q) = %v with no fields, want at least one", raw, err)
		}
	})
}

func TestValidRequestID(t *testing.T) {
	tests := []struct {
		name, id string
		want     bool
	}{
		{"one char", "a", true},
		{"all allowed characters", "AZaz09._:-", true},
		{"only punctuation", "._:-", true},
		{"uuid", "0190a5c2-7d7b-7c3e-8f00-123456789abc", true},
		{"generated form", "req_0190a5c27d7b7c3e8f00123456789abc", true},
		{"128 chars", strings.Repeat("a", 128), true},
		{"129 chars", strings.Repeat("a", 129), false},
		{"empty", "", false},
		{"space", "abc def", false},
		{"leading space", " abc", false},
		{"newline", "abc\n", false},
		{"header injection", "abc\r\nX-Evil: 1", false},
		{"unicode", "abcé", false},
		{"script", "<script>", false},
		{"slash", "a/b", false},
		{"NUL", "a\x00b", false},
	}
	for _, tt := range tests {
		if got := validRequestID(tt.id); got != tt.want {
			t.Errorf("%s: validRequestID(%.40q) = %v, want %v", tt.name, tt.id, got, tt.want)
		}
	}
}
