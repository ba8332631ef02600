// Package egress is the one way out to URLs a tenant controls: its AI
// channels, its identity providers (discovery, JWKS, token and userinfo
// endpoints) and, later, its webhooks. Its HTTP clients refuse internal
// addresses when they connect, after DNS, so a name that resolves (or is
// re-bound) to an internal address does not help; redirects are checked
// and bounded, bodies are bounded, and every stage has a timeout.
//
// The operator may let tenants reach internal addresses
// (TENANTGATE_ALLOW_PRIVATE_EGRESS, formerly
// TENANTGATE_GATEWAY_ALLOW_PRIVATE_UPSTREAMS), for a private deployment
// whose models or identity provider live on the local network.
package egress

import (
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/netip"
	"net/url"
	"syscall"
	"time"
)

// Policy says which addresses a client may connect to.
type Policy struct {
	// AllowPrivate lets connections reach internal addresses (the
	// operator's switch). Off: only public addresses.
	AllowPrivate bool
	// Check, when set, replaces the internal-address test of each
	// connection's resolved address (tests: an httptest server on
	// 127.0.0.1 standing in for a public host). It is not consulted when
	// AllowPrivate is set.
	Check func(addr netip.AddrPort) error
}

// Trusted is the policy of URLs the operator configured (platform channels,
// the platform identity provider): any address.
var Trusted = Policy{AllowPrivate: true}

// Options shape one client.
type Options struct {
	DialTimeout           time.Duration // default 10s
	TLSHandshakeTimeout   time.Duration // default 10s
	ResponseHeaderTimeout time.Duration // default 30s
	// Timeout bounds the whole exchange, body included (0: none, for
	// streamed answers, which ResponseHeaderTimeout and the caller's
	// context bound instead).
	Timeout time.Duration
	// MaxRedirects is how many redirects are followed, each checked like
	// the first request (0: none; the redirect itself is the answer).
	MaxRedirects int
	// MaxBody bounds a response body: reading past it fails with
	// ErrTooLarge (0: no bound).
	MaxBody int64
	// Proxy sends requests through a proxy (the connection to the proxy is
	// checked; what lies behind it is the proxy's network).
	Proxy *url.URL
	// MaxIdleConnsPerHost sizes the pool (default 16).
	MaxIdleConnsPerHost int
}

// InternalAddressError is a connection refused because its address is
// internal.
type InternalAddressError struct{ Addr string }

func (e *InternalAddressError) Error() string {
	return "the address " + e.Addr + " is internal (loopback, private, link-local, shared or reserved); a tenant's URLs must lead to public addresses"
}

// ErrTooLarge is returned when reading a body past Options.MaxBody.
var ErrTooLarge = errors.New("egress: the response body is larger than allowed")

// IsInternalAddress reports whether err is (or wraps) a refused internal address.
func IsInternalAddress(err error) (*InternalAddressError, bool) {
	var e *InternalAddressError
	ok := errors.As(err, &e)
	return e, ok
}

// internalNets are the ranges a tenant's URL may not reach, besides what
// netip.Addr's own predicates cover (loopback, private, link-local,
// multicast, unspecified): "this network", carrier-grade NAT (shared
// address space), IETF protocol assignments, the documentation and
// benchmarking ranges, reserved and broadcast IPv4, and the IPv6 forms that
// embed an IPv4 address (IPv4-compatible, NAT64, 6to4, Teredo), which could
// lead back to an internal one, plus the IPv6 discard and documentation
// prefixes.
var internalNets = []netip.Prefix{
	netip.MustParsePrefix("0.0.0.0/8"), netip.MustParsePrefix("100.64.0.0/10"), netip.MustParsePrefix("192.0.0.0/24"),
	netip.MustParsePrefix("192.0.2.0/24"), netip.MustParsePrefix("198.18.0.0/15"), netip.MustParsePrefix("198.51.100.0/24"),
	netip.MustParsePrefix("203.0.113.0/24"), netip.MustParsePrefix("240.0.0.0/4"),
	netip.MustParsePrefix("::/96"), netip.MustParsePrefix("64:ff9b::/96"), netip.MustParsePrefix("64:ff9b:1::/48"),
	netip.MustParsePrefix("100::/64"), netip.MustParsePrefix("2001::/32"), netip.MustParsePrefix("2001:db8::/32"),
	netip.MustParsePrefix("2002::/16"),
}

// Internal reports whether an address is internal (IPv4-mapped IPv6
// addresses are judged as their IPv4 address).
func Internal(ip netip.Addr) bool {
	ip = ip.Unmap()
	if ip.IsLoopback() || ip.IsPrivate() || ip.IsLinkLocalUnicast() || ip.IsLinkLocalMulticast() || ip.IsUnspecified() ||
		ip.IsMulticast() || ip.IsInterfaceLocalMulticast() {
		return true
	}
	for _, p := range internalNets {
		if p.Contains(ip) {
			return true
		}
	}
	return false
}

// check judges one address ("ip:port", as the dialer has it) under p.
func (p Policy) check(address string) error {
	if p.AllowPrivate {
		return nil
	}
	ap, err := netip.ParseAddrPort(address)
	if err != nil {
		return &InternalAddressError{address}
	}
	ap = netip.AddrPortFrom(ap.Addr().Unmap(), ap.Port())
	if p.Check != nil {
		return p.Check(ap)
	}
	if Internal(ap.Addr()) {
		return &InternalAddressError{address}
	}
	return nil
}

// control is the dialer's last word before every connection, made on the
// resolved address.
func (p Policy) control(_, address string, _ syscall.RawConn) error { return p.check(address) }

// Client builds an HTTP client under the policy. Every connection (the
// first, each redirect's, a proxy's) is checked at connect time.
func (p Policy) Client(o Options) *http.Client {
	if o.DialTimeout <= 0 {
		o.DialTimeout = 10 * time.Second
	}
	if o.TLSHandshakeTimeout <= 0 {
		o.TLSHandshakeTimeout = 10 * time.Second
	}
	if o.ResponseHeaderTimeout <= 0 {
		o.ResponseHeaderTimeout = 30 * time.Second
	}
	if o.MaxIdleConnsPerHost <= 0 {
		o.MaxIdleConnsPerHost = 16
	}
	d := &net.Dialer{Timeout: o.DialTimeout, KeepAlive: 30 * time.Second, Control: p.control}
	tr := &http.Transport{DialContext: d.DialContext, ForceAttemptHTTP2: true, MaxIdleConns: max(256, o.MaxIdleConnsPerHost),
		MaxIdleConnsPerHost: o.MaxIdleConnsPerHost, IdleConnTimeout: 90 * time.Second, TLSHandshakeTimeout: o.TLSHandshakeTimeout,
		ResponseHeaderTimeout: o.ResponseHeaderTimeout, ExpectContinueTimeout: time.Second}
	if o.Proxy != nil {
		tr.Proxy = http.ProxyURL(o.Proxy) // never the environment's proxy: it would be an unchecked way out
	}
	var rt http.RoundTripper = tr
	if o.MaxBody > 0 {
		rt = boundedBodies{tr, o.MaxBody}
	}
	return &http.Client{Transport: rt, Timeout: o.Timeout, CheckRedirect: p.redirects(o.MaxRedirects)}
}

// redirects follows at most n redirects, only to http(s) URLs and, for a
// host written as an address, only to an allowed one (a name is checked
// when its connection is made).
func (p Policy) redirects(n int) func(*http.Request, []*http.Request) error {
	return func(req *http.Request, via []*http.Request) error {
		if n == 0 {
			return http.ErrUseLastResponse
		}
		if len(via) > n {
			return fmt.Errorf("egress: more than %d redirects", n)
		}
		if req.URL.Scheme != "http" && req.URL.Scheme != "https" {
			return fmt.Errorf("egress: a redirect to a %q URL", req.URL.Scheme)
		}
		if ip, err := netip.ParseAddr(req.URL.Hostname()); err == nil {
			port := req.URL.Port()
			if port == "" {
				port = map[string]string{"http": "80", "https": "443"}[req.URL.Scheme]
			}
			if err := p.check(net.JoinHostPort(ip.String(), port)); err != nil {
				return err
			}
		}
		return nil
	}
}

// boundedBodies makes reading a body past max fail.
type boundedBodies struct {
	next http.RoundTripper
	max  int64
}

func (b boundedBodies) RoundTrip(req *http.Request) (*http.Response, error) {
	res, err := b.next.RoundTrip(req)
	if err != nil || res.Body == nil {
		return res, err
	}
	if res.ContentLength > b.max {
		res.Body.Close()
		return nil, fmt.Errorf("%w (%d bytes, at most %d)", ErrTooLarge, res.ContentLength, b.max)
	}
	res.Body = &boundedBody{rc: res.Body, left: b.max}
	return res, nil
}

// CloseIdleConnections lets a client built here drop its idle connections.
func (b boundedBodies) CloseIdleConnections() {
	if c, ok := b.next.(interface{ CloseIdleConnections() }); ok {
		c.CloseIdleConnections()
	}
}

type boundedBody struct {
	rc   io.ReadCloser
	left int64
}

func (b *boundedBody) Read(p []byte) (int, error) {
	if b.left <= 0 {
		// One byte more tells a body of exactly the bound from a longer one.
		var one [1]byte
		n, err := b.rc.Read(one[:])
		if n > 0 {
			return 0, ErrTooLarge
		}
		return 0, err
	}
	if int64(len(p)) > b.left {
		p = p[:b.left]
	}
	n, err := b.rc.Read(p)
	b.left -= int64(n)
	return n, err
}

func (b *boundedBody) Close() error { return b.rc.Close() }
