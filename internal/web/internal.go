package web

import (
	"context"
	"crypto/sha256"
	"crypto/subtle"
	"fmt"
	"net/http"
	"strconv"
	"strings"

	"gorm.io/gorm"

	"github.com/tenantgate/tenantgate/internal/actor"
	"github.com/tenantgate/tenantgate/internal/audit"
	"github.com/tenantgate/tenantgate/internal/errs"
	"github.com/tenantgate/tenantgate/internal/identity"
	"github.com/tenantgate/tenantgate/internal/rbac"
	"github.com/tenantgate/tenantgate/internal/store"
)

// ServiceToken is one configured credential of the service API.
type ServiceToken struct {
	Name  string // the service's name; X-Service-Name must match it
	Token string
}

// authenticateService checks X-Service-Token against every configured token
// in constant time (each comparison runs, whatever matches) and requires
// X-Service-Name to name the token's service.
func (s *server) authenticateService(r *http.Request, base *actor.Actor) (*actor.Actor, error) {
	tok, name := r.Header.Get("X-Service-Token"), strings.TrimSpace(r.Header.Get("X-Service-Name"))
	if tok == "" || name == "" {
		return nil, errs.Unauthenticated(errs.CodeUnauthorized, "the service API needs X-Service-Token and X-Service-Name")
	}
	got := sha256.Sum256([]byte(tok))
	match := ""
	for _, st := range s.ServiceTokens {
		want := sha256.Sum256([]byte(st.Token))
		if subtle.ConstantTimeCompare(got[:], want[:]) == 1 {
			match = st.Name
		}
	}
	if match == "" || match != name {
		return nil, errs.Unauthenticated(errs.CodeUnauthorized, "the service token is not valid for this service name")
	}
	a := *base
	a.Type, a.ID = actor.TypeService, name
	return &a, nil
}

// inTenant confines the request to a tenant named by the caller, which must exist.
func (s *server) inTenant(r *http.Request, tenantID string) (*http.Request, error) {
	if tenantID == "" {
		return nil, errs.Invalid("name the tenant", map[string]string{"tenantId": "is required"})
	}
	t, err := s.Tenants.Get(r.Context(), tenantID)
	if err != nil {
		return nil, err
	}
	if err := gate(t); err != nil { // a suspended or deleted tenant's users are not valid anywhere
		return nil, err
	}
	ctx := context.WithValue(store.WithTenant(r.Context(), t.ID), keyTenant, t)
	return r.WithContext(ctx), nil
}

type tokenVerifyRequest struct {
	Token string `json:"token"`
}

// svcVerifyToken checks an access token or API key for another service.
func (s *server) svcVerifyToken(w http.ResponseWriter, r *http.Request) error {
	var in tokenVerifyRequest
	if err := decodeJSON(r, &in); err != nil {
		return err
	}
	invalid := func(reason string) error {
		writeJSON(w, http.StatusOK, map[string]any{"valid": false, "reason": reason})
		return nil
	}
	var tenantID, userID string
	var payload map[string]any
	if identity.IsAPIKey(in.Token) {
		p, err := s.Identity.AuthenticateKey(r.Context(), in.Token, "")
		if err != nil {
			return invalid(errMessage(err))
		}
		tenantID, userID = p.Key.TenantID, p.Key.UserID
		payload = map[string]any{"sub": userID, "tenant": tenantID, "username": p.Username, "email": p.Email, "roles": p.Roles,
			"permissions": p.Key.Scopes, "keyId": p.Key.ID}
	} else {
		c, err := s.Identity.Signer().Verify(in.Token)
		if err != nil {
			return invalid(errMessage(err))
		}
		if s.Identity.SessionRevoked(c.SessionID) {
			return invalid("this session has ended")
		}
		if c.Tenant == "" {
			return invalid("an operator token is not a tenant user's token")
		}
		tenantID, userID = c.Tenant, c.Subject
		payload = map[string]any{"sub": c.Subject, "tenant": c.Tenant, "username": c.Username, "email": c.Email, "roles": c.Roles,
			"permissions": c.Permissions, "iat": c.IssuedAt.Unix(), "exp": c.Expiry.Unix(), "jti": c.ID, "sid": c.SessionID, "amr": c.AMR}
		if c.Actor != "" { // an impersonation: services must see who acts, and whether only reads are allowed
			payload["act"] = map[string]any{"sub": c.Actor, "typ": "operator"}
			payload["read_only"] = c.ReadOnly
		}
	}
	t, err := s.Tenants.Get(r.Context(), tenantID)
	if err != nil || gate(t) != nil {
		return invalid("the token's tenant is not serving")
	}
	u, err := s.Identity.GetUser(store.WithTenant(r.Context(), tenantID), userID)
	if err != nil || u.Status != identity.StatusActive {
		return invalid("the token's user is not active")
	}
	writeJSON(w, http.StatusOK, map[string]any{"valid": true, "payload": payload, "user": u})
	return nil
}

func errMessage(err error) string {
	if e, ok := errs.As(err); ok {
		return e.Msg
	}
	return "invalid"
}

func (s *server) svcGetUser(w http.ResponseWriter, r *http.Request) error {
	var u *identity.User
	var err error
	if tid := r.URL.Query().Get("tenantId"); tid != "" {
		if r, err = s.inTenant(r, tid); err != nil {
			return err
		}
		u, err = s.Identity.GetUser(r.Context(), r.PathValue("id"))
	} else {
		u, err = s.Identity.FindUser(r.Context(), r.PathValue("id"))
	}
	if err != nil {
		return err
	}
	writeJSON(w, http.StatusOK, u)
	return nil
}

type credentialsRequest struct {
	Email    string `json:"email"`
	Password string `json:"password"`
	TenantID string `json:"tenantId"`
}

func (s *server) svcValidateCredentials(w http.ResponseWriter, r *http.Request) error {
	var in credentialsRequest
	if err := decodeJSON(r, &in); err != nil {
		return err
	}
	r, err := s.inTenant(r, in.TenantID)
	if err != nil {
		return err
	}
	u, err := s.Identity.CheckCredentials(r.Context(), in.Email, in.Password)
	if err != nil {
		return err
	}
	if u == nil {
		writeJSON(w, http.StatusOK, map[string]any{"valid": false})
		return nil
	}
	if u.TwoFactorEnabled {
		// A password alone does not sign this user in anywhere.
		writeJSON(w, http.StatusOK, map[string]any{"valid": false, "mfaRequired": true,
			"reason": "this user signs in with a second factor; send them through tenantgate's login"})
		return nil
	}
	writeJSON(w, http.StatusOK, map[string]any{"valid": true, "user": u})
	return nil
}

type validateStatusRequest struct {
	UserIDs  []string `json:"userIds"`
	TenantID string   `json:"tenantId"`
}

func (s *server) svcValidateStatus(w http.ResponseWriter, r *http.Request) error {
	var in validateStatusRequest
	if err := decodeJSON(r, &in); err != nil {
		return err
	}
	if len(in.UserIDs) == 0 || len(in.UserIDs) > 1000 {
		return errs.Invalid("send 1 to 1000 user ids", map[string]string{"userIds": "must hold 1 to 1000 ids"})
	}
	r, err := s.inTenant(r, in.TenantID)
	if err != nil {
		return err
	}
	out := make([]map[string]any, 0, len(in.UserIDs))
	for _, id := range in.UserIDs {
		u, err := s.Identity.GetUser(r.Context(), id)
		switch {
		case err == nil:
			out = append(out, map[string]any{"userId": id, "valid": u.Status == identity.StatusActive, "status": u.Status})
		case errs.Is(err, errs.CodeUserNotFound):
			out = append(out, map[string]any{"userId": id, "valid": false, "status": "not_found"})
		default:
			return err
		}
	}
	writeJSON(w, http.StatusOK, map[string]any{"tenantId": in.TenantID, "results": out})
	return nil
}

type revokeUserRequest struct {
	UserID   string `json:"userId"`
	TenantID string `json:"tenantId"`
	Reason   string `json:"reason"`
}

func (s *server) svcRevokeUser(w http.ResponseWriter, r *http.Request) error {
	var in revokeUserRequest
	if err := decodeJSON(r, &in); err != nil {
		return err
	}
	if in.TenantID == "" && store.ValidID(in.UserID) {
		u, err := s.Identity.FindUser(r.Context(), in.UserID)
		if err != nil {
			return err
		}
		in.TenantID = u.TenantID
	}
	r, err := s.inTenant(r, in.TenantID)
	if err != nil {
		return err
	}
	if _, err := s.Identity.GetUser(r.Context(), in.UserID); err != nil {
		return err
	}
	n, err := s.Identity.RevokeUserSessions(r.Context(), in.UserID, in.Reason)
	if err != nil {
		return err
	}
	writeJSON(w, http.StatusOK, map[string]any{"success": true, "revokedSessions": n})
	return nil
}

func (s *server) svcCheck(w http.ResponseWriter, r *http.Request) error {
	var c rbac.Check
	if err := decodeJSON(r, &c); err != nil {
		return err
	}
	r, err := s.inTenant(r, c.TenantID)
	if err != nil {
		return err
	}
	if c.UserID == "" || c.Resource == "" || c.Action == "" {
		return errs.Invalid("a check needs userId, resource and action", map[string]string{"userId": "required", "resource": "required", "action": "required"})
	}
	res, err := s.RBAC.Evaluate(r.Context(), c, "")
	if err != nil {
		return errs.Internal(err, "evaluate the check")
	}
	writeJSON(w, http.StatusOK, res)
	return nil
}

func (s *server) svcCheckBatch(w http.ResponseWriter, r *http.Request) error {
	var in batchRequest
	if err := decodeJSON(r, &in); err != nil {
		return err
	}
	r, err := s.inTenant(r, in.TenantID)
	if err != nil {
		return err
	}
	if len(in.Checks) == 0 || len(in.Checks) > 100 {
		return errs.Invalid("send 1 to 100 checks", map[string]string{"checks": "must hold 1 to 100 checks"})
	}
	out := make([]rbac.Result, 0, len(in.Checks))
	f := errs.Fields{}
	for i := range in.Checks {
		c := &in.Checks[i]
		c.TenantID = in.TenantID
		if c.UserID == "" {
			c.UserID = in.UserID
		}
		if c.UserID == "" {
			f.Add(fmt.Sprintf("checks[%d].userId", i), "is required (here or as the batch's userId)")
		}
		if c.Resource == "" {
			f.Add(fmt.Sprintf("checks[%d].resource", i), "is required")
		}
		if c.Action == "" {
			f.Add(fmt.Sprintf("checks[%d].action", i), "is required")
		}
	}
	if err := f.Err(); err != nil {
		return err
	}
	for _, c := range in.Checks {
		res, err := s.RBAC.Evaluate(r.Context(), c, "")
		if err != nil {
			return errs.Internal(err, "evaluate the checks")
		}
		out = append(out, res)
	}
	writeJSON(w, http.StatusOK, map[string]any{"results": out})
	return nil
}

func (s *server) svcUserRoles(w http.ResponseWriter, r *http.Request) error {
	r, err := s.inTenant(r, r.URL.Query().Get("tenantId"))
	if err != nil {
		return err
	}
	return s.listUserRoles(w, r)
}

type svcAssignRequest struct {
	TenantID string `json:"tenantId"`
	rbac.NewAssignment
	AssignedBy string `json:"assignedBy"`
}

func (s *server) svcAssignRole(w http.ResponseWriter, r *http.Request) error {
	var in svcAssignRequest
	if err := decodeJSON(r, &in); err != nil {
		return err
	}
	r, err := s.inTenant(r, in.TenantID)
	if err != nil {
		return err
	}
	if in.AssignedBy != "" {
		if in.Metadata == nil {
			in.Metadata = map[string]any{}
		}
		in.Metadata["assignedBy"] = in.AssignedBy
	}
	as, err := s.RBAC.Assign(r.Context(), r.PathValue("id"), in.NewAssignment)
	if err != nil {
		return err
	}
	writeJSON(w, http.StatusCreated, as)
	return nil
}

type svcUnassignRequest struct {
	TenantID string `json:"tenantId"`
	Reason   string `json:"reason"`
}

func (s *server) svcUnassignRole(w http.ResponseWriter, r *http.Request) error {
	var in svcUnassignRequest
	if r.ContentLength != 0 {
		if err := decodeJSON(r, &in); err != nil {
			return err
		}
	}
	if in.TenantID == "" {
		in.TenantID = r.URL.Query().Get("tenantId")
	}
	r, err := s.inTenant(r, in.TenantID)
	if err != nil {
		return err
	}
	return s.unassignRole(w, r)
}

func (s *server) svcEvent(w http.ResponseWriter, r *http.Request) error {
	var in audit.Incoming
	if err := decodeJSON(r, &in); err != nil {
		return err
	}
	ids, err := s.ingest(r, []audit.Incoming{in})
	if err != nil {
		return err
	}
	writeJSON(w, http.StatusCreated, map[string]any{"id": ids[0]})
	return nil
}

func (s *server) svcEventBatch(w http.ResponseWriter, r *http.Request) error {
	var in []audit.Incoming
	if err := decodeArray(r, &in); err != nil {
		return err
	}
	ids, err := s.ingest(r, in)
	if err != nil {
		return err
	}
	writeJSON(w, http.StatusCreated, map[string]any{"ids": ids, "count": len(ids)})
	return nil
}

// ingest validates every event first, then stores them all or none.
func (s *server) ingest(r *http.Request, evs []audit.Incoming) ([]string, error) {
	if len(evs) == 0 || len(evs) > 1000 {
		return nil, errs.Invalid("send 1 to 1000 events", map[string]string{"body": "must hold 1 to 1000 events"})
	}
	f := errs.Fields{}
	for i, ev := range evs {
		prefix := ""
		if len(evs) > 1 {
			prefix = "[" + strconv.Itoa(i) + "]."
		}
		ev.Validate(f, prefix)
	}
	if err := f.Err(); err != nil {
		return nil, err
	}
	byTenant := map[string][]audit.Incoming{}
	for _, ev := range evs {
		if _, err := s.Tenants.Get(r.Context(), ev.TenantID); err != nil {
			return nil, err
		}
		byTenant[ev.TenantID] = append(byTenant[ev.TenantID], ev)
	}
	service := actor.From(r.Context()).ID
	var ids []string
	err := s.Store.Tx(store.WithPlatform(r.Context(), "service "+service+" audit ingestion"), func(tx *gorm.DB) error {
		for _, list := range byTenant {
			for _, ev := range list {
				stored, err := audit.Ingest(tx, service, ev)
				if err != nil {
					return err
				}
				ids = append(ids, stored.ID)
			}
		}
		return nil
	})
	if err != nil {
		return nil, errs.Internal(err, "store the events")
	}
	return ids, nil
}
