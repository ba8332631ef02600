package web

import (
	"net/http"
	"slices"
	"strings"
	"time"

	"github.com/tenantgate/tenantgate/internal/actor"
	"github.com/tenantgate/tenantgate/internal/errs"
	"github.com/tenantgate/tenantgate/internal/gateway"
	"github.com/tenantgate/tenantgate/internal/gateway/wire"
	"github.com/tenantgate/tenantgate/internal/store"
)

// handler is a route's handler.
type handler = func(w http.ResponseWriter, r *http.Request) error

// isOpenAIPath reports whether the path is the OpenAI-compatible API, which
// answers errors in OpenAI's shape.
func isOpenAIPath(p string) bool { return p == "/v1" || strings.HasPrefix(p, "/v1/") }

// caller describes the request's principal to the gateway, from the
// entitlements the pipeline has cached.
func (s *server) caller(r *http.Request) (gateway.Caller, error) {
	ctx := r.Context()
	if !s.Gateway.Ready() {
		return gateway.Caller{}, errNotReady
	}
	t, a := currentTenant(ctx), actor.From(ctx)
	e, err := s.Quota.Cached(ctx, t.ID)
	if err != nil {
		return gateway.Caller{}, err
	}
	c := gateway.Caller{TenantID: t.ID, Plan: e.Plan, BYOK: e.Features["byok"], TokensPerMinute: e.Limit("tokensPerMinute"),
		RequestID: requestID(ctx)}
	if a != nil {
		c.UserID, c.KeyID, c.KeyModels, c.KeyBudget, c.KeyTPM = a.ID, a.KeyID, a.KeyModels, a.KeyBudget, a.KeyTokenRate
	}
	return c, nil
}

// errNotReady answers /v1 calls that arrive before the AI channels are first
// loaded: a 404 model_not_found then would be wrong and permanent to SDKs.
var errNotReady = &errs.Error{Kind: errs.KindUnavailable, Code: errs.CodeServiceUnavailable, RetryAfter: 1,
	Msg: "the AI gateway is starting and has not loaded its channels yet; retry in a moment"}

func (s *server) relay(op wire.Op) handler {
	return func(w http.ResponseWriter, r *http.Request) error {
		c, err := s.caller(r)
		if err != nil {
			return err
		}
		return s.Gateway.Serve(w, r, op, c)
	}
}

type modelObject struct {
	ID      string `json:"id"`
	Object  string `json:"object"`
	Created int64  `json:"created"`
	OwnedBy string `json:"owned_by"`
}

func (s *server) listModels(w http.ResponseWriter, r *http.Request) error {
	c, err := s.caller(r)
	if err != nil {
		return err
	}
	data := []modelObject{}
	for _, m := range s.Gateway.Models(c.TenantID, c.Plan, c.BYOK) {
		if len(c.KeyModels) == 0 || slices.Contains(c.KeyModels, m) {
			data = append(data, modelObject{ID: m, Object: "model", OwnedBy: "tenantgate"})
		}
	}
	writeJSON(w, http.StatusOK, map[string]any{"object": "list", "data": data})
	return nil
}

func (s *server) getModel(w http.ResponseWriter, r *http.Request) error {
	c, err := s.caller(r)
	if err != nil {
		return err
	}
	id := r.PathValue("model")
	if (len(c.KeyModels) == 0 || slices.Contains(c.KeyModels, id)) && slices.Contains(s.Gateway.Models(c.TenantID, c.Plan, c.BYOK), id) {
		writeJSON(w, http.StatusOK, modelObject{ID: id, Object: "model", OwnedBy: "tenantgate"})
		return nil
	}
	return errs.NotFound(gateway.CodeModelNotFound, "the model %q does not exist or you do not have access to it", id)
}

// channelOwner is the tenant of a tenant channel route, or the platform.
func channelOwner(r *http.Request, platform bool) string {
	if platform {
		return store.PlatformTenantID
	}
	return currentTenant(r.Context()).ID
}

func (s *server) listChannels(platform bool) handler {
	return func(w http.ResponseWriter, r *http.Request) error {
		q := r.URL.Query()
		p, err := store.ParsePage(q.Get("limit"), q.Get("cursor"))
		if err != nil {
			return err
		}
		items, next, err := s.Gateway.Channels(r.Context(), channelOwner(r, platform), p)
		if err != nil {
			return err
		}
		writeJSON(w, http.StatusOK, newList(items, next))
		return nil
	}
}

func (s *server) createChannel(platform bool) handler {
	return func(w http.ResponseWriter, r *http.Request) error {
		var in gateway.ChannelInput
		if err := decodeJSON(r, &in); err != nil {
			return err
		}
		c, err := s.Gateway.CreateChannel(r.Context(), channelOwner(r, platform), in)
		if err != nil {
			return err
		}
		prefix := "/api/v1/channels/"
		if platform {
			prefix = "/api/v1/admin/channels/"
		}
		w.Header().Set("Location", prefix+c.ID)
		writeJSON(w, http.StatusCreated, c)
		return nil
	}
}

func (s *server) getChannel(platform bool) handler {
	return func(w http.ResponseWriter, r *http.Request) error {
		c, err := s.Gateway.Channel(r.Context(), channelOwner(r, platform), r.PathValue("id"))
		if err != nil {
			return err
		}
		writeJSON(w, http.StatusOK, c)
		return nil
	}
}

func (s *server) patchChannel(platform bool) handler {
	return func(w http.ResponseWriter, r *http.Request) error {
		var in gateway.ChannelInput
		if err := decodeJSON(r, &in); err != nil {
			return err
		}
		c, err := s.Gateway.UpdateChannel(r.Context(), channelOwner(r, platform), r.PathValue("id"), in)
		if err != nil {
			return err
		}
		writeJSON(w, http.StatusOK, c)
		return nil
	}
}

func (s *server) deleteChannel(platform bool) handler {
	return func(w http.ResponseWriter, r *http.Request) error {
		if err := s.Gateway.DeleteChannel(r.Context(), channelOwner(r, platform), r.PathValue("id")); err != nil {
			return err
		}
		w.WriteHeader(http.StatusNoContent)
		return nil
	}
}

func (s *server) testChannel(platform bool) handler {
	return func(w http.ResponseWriter, r *http.Request) error {
		var in struct {
			Model string `json:"model"`
		}
		if r.ContentLength != 0 {
			if err := decodeJSON(r, &in); err != nil {
				return err
			}
		}
		res, err := s.Gateway.TestChannel(r.Context(), channelOwner(r, platform), r.PathValue("id"), in.Model)
		if err != nil {
			return err
		}
		writeJSON(w, http.StatusOK, res)
		return nil
	}
}

func (s *server) getGatewaySettings(w http.ResponseWriter, r *http.Request) error {
	set, err := s.Gateway.Settings(r.Context(), currentTenant(r.Context()).ID)
	if err != nil {
		return err
	}
	writeJSON(w, http.StatusOK, set)
	return nil
}

func (s *server) patchGatewaySettings(w http.ResponseWriter, r *http.Request) error {
	var in gateway.SettingsInput
	if err := decodeJSON(r, &in); err != nil {
		return err
	}
	set, err := s.Gateway.UpdateSettings(r.Context(), currentTenant(r.Context()).ID, in)
	if err != nil {
		return err
	}
	writeJSON(w, http.StatusOK, set)
	return nil
}

func (s *server) listAILogs(w http.ResponseWriter, r *http.Request) error {
	q := r.URL.Query()
	p, err := store.ParsePage(q.Get("limit"), q.Get("cursor"))
	if err != nil {
		return err
	}
	f := gateway.LogFilter{Model: q.Get("model"), KeyID: q.Get("keyId"), UserID: q.Get("userId"), ChannelID: q.Get("channelId"), Status: q.Get("status"),
		Query: q.Get("q")}
	fields := errs.Fields{}
	for name, dst := range map[string]*time.Time{"from": &f.From, "to": &f.To} {
		if v := q.Get(name); v != "" {
			t, err := time.Parse(time.RFC3339, v)
			if err != nil {
				fields.Add(name, "must be an RFC 3339 time such as 2026-12-01T00:00:00Z")
			}
			*dst = t
		}
	}
	if err := fields.Err(); err != nil {
		return err
	}
	items, next, err := s.Gateway.Logs(r.Context(), currentTenant(r.Context()).ID, f, p)
	if err != nil {
		return err
	}
	writeJSON(w, http.StatusOK, newList(items, next))
	return nil
}
