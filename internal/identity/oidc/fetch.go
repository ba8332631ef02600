package oidc

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"net/http"
	"sync"
	"time"

	"github.com/zitadel/oidc/v3/pkg/client/rp"

	"github.com/tenantgate/tenantgate/internal/egress"
	"github.com/tenantgate/tenantgate/internal/errs"
)

// What a provider's endpoints may cost us. Tenants' providers are reached
// through egress (public addresses only, unless the operator allows
// private ones); the platform provider is the operator's and trusted. Every
// fetch has these bounds either way.
const (
	// FetchEvery is how often one provider's discovery document or JWKS is
	// fetched at most: within it the last answer (or failure) is reused. A
	// token with an unknown key id therefore costs one JWKS fetch per
	// FetchEvery per provider, however many such tokens arrive.
	FetchEvery = 30 * time.Second
	// DiscoveryTTL is how long a provider's discovery (its endpoints and
	// key set) is used before it is read again.
	DiscoveryTTL = time.Hour
	// maxFetchBytes bounds a discovery document, a JWKS or a token answer.
	maxFetchBytes = 1 << 20
)

var fetchOptions = egress.Options{DialTimeout: 5 * time.Second, TLSHandshakeTimeout: 5 * time.Second,
	ResponseHeaderTimeout: 10 * time.Second, Timeout: 15 * time.Second, MaxRedirects: 3, MaxBody: maxFetchBytes}

// SetEgress sets the policy for tenants' providers: their discovery, JWKS,
// token and userinfo endpoints. The default refuses internal addresses.
func (s *Service) SetEgress(p egress.Policy) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.tenantHTTP = p.Client(fetchOptions)
	clear(s.gates) // built over the old client
	clear(s.rps)
}

// SetClock replaces the clock (tests: the fetch intervals are timed by it).
func (s *Service) SetClock(now func() time.Time) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.now = now
	clear(s.gates) // they hold the old clock
}

// relyingParty returns the (cached) relying party of a provider; creating it
// reads the provider's discovery document. Failures are remembered for
// FetchEvery (by the provider's fetch gate), so a provider that is down, or
// refused, is not asked again for every request that names it.
func (s *Service) relyingParty(ctx context.Context, st *settings) (rp.RelyingParty, error) {
	// One relying party per configured provider: a tenant that registers
	// another tenant's issuer and client id must not share (or poison) it.
	key := "platform"
	if st.providerID != "" {
		key = "provider:" + st.providerID
	}
	s.mu.Lock()
	now := s.now()
	e, ok := s.rps[key]
	gate := s.gateLocked(key, st)
	s.mu.Unlock()
	if ok && now.Sub(e.at) < DiscoveryTTL {
		return e.rp, nil
	}
	dctx, cancel := context.WithTimeout(ctx, fetchOptions.Timeout)
	defer cancel()
	r, err := rp.NewRelyingPartyOIDC(dctx, st.issuer, st.clientID, st.secret, s.redirectURL, st.scopes,
		rp.WithHTTPClient(gate.client),
		rp.WithVerifierOpts(rp.WithNonce(nonceFrom), rp.WithIssuedAtOffset(30*time.Second)))
	if err != nil {
		msg := "the identity provider could not be reached; try again later"
		if _, internal := egress.IsInternalAddress(err); internal {
			msg = "the identity provider's address is internal, which this server does not connect to for an organisation's provider"
		}
		return nil, &errs.Error{Kind: errs.KindUnavailable, Code: "IDP_UNAVAILABLE", Msg: msg, Err: err}
	}
	s.mu.Lock()
	if len(s.rps) > 10000 {
		clear(s.rps)
	}
	s.rps[key] = rpEntry{rp: r, at: now}
	s.mu.Unlock()
	return r, nil
}

// rpEntry is a cached relying party and when its discovery was read.
type rpEntry struct {
	rp rp.RelyingParty
	at time.Time
}

// gateLocked returns the fetch gate of a provider (s.mu held). A gate
// belongs to one provider and issuer: another tenant naming the same issuer
// has its own, and a changed issuer starts afresh.
func (s *Service) gateLocked(key string, st *settings) *fetchGate {
	gk := key + "\x00" + st.issuer
	if g, ok := s.gates[gk]; ok {
		return g
	}
	base := s.tenantHTTP
	if st.providerID == "" {
		base = s.platformHTTP
	}
	g := &fetchGate{next: base.Transport, now: s.now, every: FetchEvery, last: map[string]*fetched{}}
	g.client = &http.Client{Transport: g, Timeout: base.Timeout, CheckRedirect: base.CheckRedirect}
	if len(s.gates) > 10000 {
		clear(s.gates)
	}
	s.gates[gk] = g
	return g
}

// fetchGate stands between one provider's relying party and the network.
// A GET without credentials (discovery, JWKS) is answered from the last
// fetch of its URL when that is younger than every, failures included, so
// anonymous requests naming the provider (a bearer token with an unknown
// key id, a login while the provider is down) cannot make us fetch more
// often. Fetches of one provider are serialised. Anything else (the token
// exchange, a userinfo call with the user's token) passes through; the
// routes that cause those are limited per client address.
type fetchGate struct {
	next   http.RoundTripper
	client *http.Client
	now    func() time.Time
	every  time.Duration

	mu   sync.Mutex
	last map[string]*fetched // by URL
}

type fetched struct {
	at     time.Time
	status int
	header http.Header
	body   []byte
	err    error
}

func (g *fetchGate) RoundTrip(req *http.Request) (*http.Response, error) {
	if req.Method != http.MethodGet || req.Header.Get("Authorization") != "" {
		return g.next.RoundTrip(req)
	}
	key := req.URL.String()
	g.mu.Lock()
	defer g.mu.Unlock()
	if f, ok := g.last[key]; ok && g.now().Sub(f.at) < g.every {
		return f.response(req)
	}
	f := &fetched{at: g.now()}
	res, err := g.next.RoundTrip(req)
	if err == nil {
		var body []byte
		body, err = io.ReadAll(res.Body) // bounded by the egress client
		res.Body.Close()
		f.status, f.header, f.body = res.StatusCode, res.Header.Clone(), body
	}
	if err != nil {
		if req.Context().Err() != nil {
			return nil, err // the caller gave up: that says nothing about the provider
		}
		f.err = fmt.Errorf("fetch %s: %w", req.URL.Redacted(), err)
	}
	if len(g.last) > 64 {
		clear(g.last)
	}
	g.last[key] = f
	return f.response(req)
}

func (f *fetched) response(req *http.Request) (*http.Response, error) {
	if f.err != nil {
		return nil, f.err
	}
	return &http.Response{Status: fmt.Sprintf("%d %s", f.status, http.StatusText(f.status)), StatusCode: f.status,
		Proto: "HTTP/1.1", ProtoMajor: 1, ProtoMinor: 1, Header: f.header.Clone(), Body: io.NopCloser(bytes.NewReader(f.body)),
		ContentLength: int64(len(f.body)), Request: req}, nil
}
