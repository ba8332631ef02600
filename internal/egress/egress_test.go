package egress

import (
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"strings"
	"sync/atomic"
	"testing"

	"github.com/google/go-cmp/cmp"
)

func TestInternal(t *testing.T) {
	got, want := map[string]bool{}, map[string]bool{
		"127.0.0.1": true, "::1": true, "10.1.2.3": true, "192.168.0.1": true, "172.16.5.4": true,
		"169.254.169.254": true, "100.64.0.1": true, "0.0.0.0": true, "0.0.0.1": true, "fe80::1": true, "fd00::1": true,
		"::ffff:127.0.0.1": true, "::ffff:10.0.0.1": true, "::7f00:1": true, "64:ff9b::a00:1": true, "64:ff9b:1::1": true,
		"2002:7f00:1::": true, "2001:0:4136:e378::1": true, "198.18.0.1": true, "192.0.2.1": true, "203.0.113.9": true,
		"255.255.255.255": true, "240.0.0.1": true, "224.0.0.1": true, "ff02::1": true, "100::1": true, "2001:db8::1": true,
		"8.8.8.8": false, "1.1.1.1": false, "2606:4700::1111": false, "100.128.0.1": false, "172.32.0.1": false,
	}
	for a := range want {
		got[a] = Internal(netip.MustParseAddr(a))
	}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("Internal (-want +got):\n%s", diff)
	}
}

// counted is a server on 127.0.0.1 that counts the requests it sees.
func counted(t *testing.T, h http.HandlerFunc) (*httptest.Server, *atomic.Int64) {
	var n atomic.Int64
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { n.Add(1); h(w, r) }))
	t.Cleanup(srv.Close)
	return srv, &n
}

// TestClientRefusesInternalAddresses: a public-only client never reaches a
// loopback server (the server sees no request), directly or through a
// redirect from a "public" one; the operator's switch lets it through.
func TestClientRefusesInternalAddresses(t *testing.T) {
	internal, seen := counted(t, func(w http.ResponseWriter, r *http.Request) { io.WriteString(w, "secret") })
	public, _ := counted(t, func(w http.ResponseWriter, r *http.Request) { http.Redirect(w, r, internal.URL+"/x", http.StatusFound) })
	publicPort := netip.MustParseAddrPort(strings.TrimPrefix(public.URL, "http://")).Port()
	// Only the "public" server's port counts as public.
	pretend := Policy{Check: func(ap netip.AddrPort) error {
		if ap.Port() == publicPort {
			return nil
		}
		return &InternalAddressError{ap.String()}
	}}
	for _, c := range []struct {
		name    string
		policy  Policy
		url     string
		refused bool
	}{
		{"loopback", Policy{}, internal.URL, true},
		{"localhost by name", Policy{}, strings.Replace(internal.URL, "127.0.0.1", "localhost", 1), true},
		{"redirect to an internal address", pretend, public.URL, true},
		{"operator allows private", Policy{AllowPrivate: true}, internal.URL, false},
	} {
		before := seen.Load()
		res, err := c.policy.Client(Options{MaxRedirects: 3}).Get(c.url)
		if err == nil {
			res.Body.Close()
		}
		_, isInternal := IsInternalAddress(err)
		if c.refused != isInternal || (!c.refused && err != nil) {
			t.Errorf("%s: err = %v, want refused = %v", c.name, err, c.refused)
		}
		if got := seen.Load() - before; c.refused && got != 0 {
			t.Errorf("%s: the internal server saw %d requests", c.name, got)
		}
	}
}

func TestRedirectsAndBodiesAreBounded(t *testing.T) {
	var hops atomic.Int64
	loop, _ := counted(t, func(w http.ResponseWriter, r *http.Request) {
		http.Redirect(w, r, fmt.Sprintf("/hop%d", hops.Add(1)), http.StatusFound)
	})
	big, _ := counted(t, func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Query().Get("chunked") == "" {
			w.Header().Set("Content-Length", "2048")
		}
		w.(http.Flusher).Flush()
		io.WriteString(w, strings.Repeat("x", 2048))
	})
	exact, _ := counted(t, func(w http.ResponseWriter, r *http.Request) { io.WriteString(w, strings.Repeat("y", 1024)) })
	c := Trusted.Client(Options{MaxRedirects: 2, MaxBody: 1024})
	if _, err := c.Get(loop.URL); err == nil || !strings.Contains(err.Error(), "more than 2 redirects") {
		t.Errorf("a redirect loop: %v", err)
	}
	if res, err := Trusted.Client(Options{}).Get(loop.URL); err != nil || res.StatusCode != http.StatusFound {
		t.Errorf("no redirects followed: the redirect is the answer; got %v", err)
	} else {
		res.Body.Close()
	}
	if _, err := c.Get(big.URL); !errors.Is(err, ErrTooLarge) {
		t.Errorf("a declared large body: %v", err)
	}
	res, err := c.Get(big.URL + "?chunked=1")
	if err != nil {
		t.Fatal(err)
	}
	_, err = io.ReadAll(res.Body)
	res.Body.Close()
	if !errors.Is(err, ErrTooLarge) {
		t.Errorf("a streamed large body: %v", err)
	}
	res, err = c.Get(exact.URL)
	if err != nil {
		t.Fatal(err)
	}
	body, err := io.ReadAll(res.Body)
	res.Body.Close()
	if err != nil || len(body) != 1024 {
		t.Errorf("a body of exactly the bound: %d bytes, %v", len(body), err)
	}
}
