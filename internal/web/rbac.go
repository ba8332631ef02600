package web

import (
	"fmt"
	"net/http"
	"slices"
	"strings"

	"github.com/tenantgate/tenantgate/internal/actor"
	"github.com/tenantgate/tenantgate/internal/errs"
	"github.com/tenantgate/tenantgate/internal/identity"
	"github.com/tenantgate/tenantgate/internal/rbac"
)

func (s *server) listPermissions(w http.ResponseWriter, r *http.Request) error {
	writeJSON(w, http.StatusOK, newList(rbac.Catalogue(), nil))
	return nil
}

func (s *server) listRoles(w http.ResponseWriter, r *http.Request) error {
	roles, err := s.RBAC.ListRoles(r.Context())
	if err != nil {
		return err
	}
	writeJSON(w, http.StatusOK, newList(roles, nil))
	return nil
}

func (s *server) createRole(w http.ResponseWriter, r *http.Request) error {
	var in rbac.NewRole
	if err := decodeJSON(r, &in); err != nil {
		return err
	}
	role, err := s.RBAC.SaveRole(r.Context(), "", in)
	if err != nil {
		return err
	}
	w.Header().Set("Location", "/api/v1/roles/"+role.ID)
	writeJSON(w, http.StatusCreated, role)
	return nil
}

func (s *server) getRole(w http.ResponseWriter, r *http.Request) error {
	role, err := s.RBAC.GetRole(r.Context(), r.PathValue("id"))
	if err != nil {
		return err
	}
	writeJSON(w, http.StatusOK, role)
	return nil
}

type rolePatch struct {
	Name         *string         `json:"name"`
	DisplayName  *string         `json:"displayName"`
	Description  *string         `json:"description"`
	Level        *int            `json:"level"`
	ParentRoleID **string        `json:"parentRoleId"`
	Permissions  *[]rbac.Grant   `json:"permissions"`
	IsActive     *bool           `json:"isActive"`
	Metadata     *map[string]any `json:"metadata"`
}

func (s *server) patchRole(w http.ResponseWriter, r *http.Request) error {
	var p rolePatch
	if err := decodeJSON(r, &p); err != nil {
		return err
	}
	cur, err := s.RBAC.GetRole(r.Context(), r.PathValue("id"))
	if err != nil {
		return err
	}
	in := rbac.NewRole{Name: cur.Name, DisplayName: cur.DisplayName, Description: cur.Description, Level: cur.Level,
		ParentRoleID: cur.ParentRoleID, Permissions: cur.Grants, IsActive: &cur.IsActive, Metadata: cur.Metadata}
	if p.Name != nil {
		in.Name = *p.Name
	}
	if p.DisplayName != nil {
		in.DisplayName = *p.DisplayName
	}
	if p.Description != nil {
		in.Description = *p.Description
	}
	if p.Level != nil {
		in.Level = *p.Level
	}
	if p.ParentRoleID != nil {
		in.ParentRoleID = *p.ParentRoleID
	}
	if p.Permissions != nil {
		in.Permissions = *p.Permissions
	}
	if p.IsActive != nil {
		in.IsActive = p.IsActive
	}
	if p.Metadata != nil {
		in.Metadata = *p.Metadata
	}
	role, err := s.RBAC.SaveRole(r.Context(), cur.ID, in)
	if err != nil {
		return err
	}
	writeJSON(w, http.StatusOK, role)
	return nil
}

func (s *server) deleteRole(w http.ResponseWriter, r *http.Request) error {
	if err := s.RBAC.DeleteRole(r.Context(), r.PathValue("id")); err != nil {
		return err
	}
	w.WriteHeader(http.StatusNoContent)
	return nil
}

func (s *server) listUserRoles(w http.ResponseWriter, r *http.Request) error {
	as, err := s.RBAC.Assignments(r.Context(), r.PathValue("id"))
	if err != nil {
		return err
	}
	perms, err := s.RBAC.EffectivePermissions(r.Context(), currentTenant(r.Context()).ID, r.PathValue("id"))
	if err != nil {
		return err
	}
	writeJSON(w, http.StatusOK, map[string]any{"userId": r.PathValue("id"), "tenantId": currentTenant(r.Context()).ID,
		"roles": as, "effectivePermissions": perms})
	return nil
}

func (s *server) assignRole(w http.ResponseWriter, r *http.Request) error {
	var in rbac.NewAssignment
	if err := decodeJSON(r, &in); err != nil {
		return err
	}
	as, err := s.RBAC.Assign(r.Context(), r.PathValue("id"), in)
	if err != nil {
		return err
	}
	writeJSON(w, http.StatusCreated, as)
	return nil
}

// unassignRole removes an assignment, or a permanent built-in role (through
// the user's record, so the rank and last-owner rules apply).
func (s *server) unassignRole(w http.ResponseWriter, r *http.Request) error {
	ctx := r.Context()
	userID, roleID := r.PathValue("id"), r.PathValue("roleId")
	found, err := s.RBAC.Unassign(ctx, userID, roleID)
	if err != nil {
		return err
	}
	if !found {
		u, err := s.Identity.GetUser(ctx, userID)
		if err != nil {
			return err
		}
		idx := slices.IndexFunc(u.Roles, func(n string) bool { return rbac.BuiltinRoleID(n) == roleID })
		if idx < 0 {
			return errs.NotFound(rbac.CodeRoleNotFound, "the user does not hold role %q", roleID)
		}
		left := slices.Delete(slices.Clone(u.Roles), idx, idx+1)
		if len(left) == 0 {
			left = []string{rbac.RoleUser}
		}
		if _, err := s.Identity.UpdateUser(ctx, userID, identity.UserPatch{Roles: &left}, false); err != nil {
			return err
		}
	}
	w.WriteHeader(http.StatusNoContent)
	return nil
}

type batchRequest struct {
	UserID   string       `json:"userId"`
	TenantID string       `json:"tenantId"`
	Checks   []rbac.Check `json:"checks"`
}

// prepareCheck fills and validates a check for the current tenant. Checking
// another user than oneself needs authz:check.
func (s *server) prepareCheck(r *http.Request, c *rbac.Check) error {
	ctx := r.Context()
	t := currentTenant(ctx)
	a := actor.From(ctx)
	if c.TenantID == "" {
		c.TenantID = t.ID
	}
	if c.TenantID != t.ID {
		return errs.NotFound(errs.CodeTenantNotFound, "no tenant by that reference")
	}
	// An empty userId is refused, never read as "the caller": a check that
	// silently answered for someone else than the one meant would say allowed.
	f := errs.Fields{}
	if c.UserID == "" {
		f.Add("userId", "is required: the id of the user to check (your own id to check yourself)")
	}
	if c.Resource == "" || len(c.Resource) > 100 || strings.Contains(c.Resource, ":") {
		f.Add("resource", "is required: a resource name such as user")
	}
	if c.Action == "" || len(c.Action) > 100 {
		f.Add("action", "is required: an action such as read")
	}
	if err := f.Err(); err != nil {
		return err
	}
	if a.Type == actor.TypeUser && c.UserID != a.ID {
		ok, err := s.RBAC.Allowed(ctx, a, t.ID, rbac.AuthzCheck)
		if err != nil {
			return errs.Internal(err, "check permissions")
		}
		if !ok {
			return errs.Forbidden(errs.CodePermissionDenied, "checking another user's permissions needs authz:check")
		}
	}
	return nil
}

func (s *server) authzCheck(w http.ResponseWriter, r *http.Request) error {
	var c rbac.Check
	if err := decodeJSON(r, &c); err != nil {
		return err
	}
	if err := s.prepareCheck(r, &c); err != nil {
		return err
	}
	res, err := s.RBAC.Evaluate(r.Context(), c, clientIP(r))
	if err != nil {
		return errs.Internal(err, "evaluate the check")
	}
	writeJSON(w, http.StatusOK, res)
	return nil
}

func (s *server) authzCheckBatch(w http.ResponseWriter, r *http.Request) error {
	var in batchRequest
	if err := decodeJSON(r, &in); err != nil {
		return err
	}
	if len(in.Checks) == 0 || len(in.Checks) > 100 {
		return errs.Invalid("send 1 to 100 checks", map[string]string{"checks": "must hold 1 to 100 checks"})
	}
	out := make([]rbac.Result, 0, len(in.Checks))
	for i := range in.Checks {
		c := in.Checks[i]
		if c.UserID == "" {
			c.UserID = in.UserID
		}
		if c.TenantID == "" {
			c.TenantID = in.TenantID
		}
		if err := s.prepareCheck(r, &c); err != nil {
			return prefixFieldPath(err, fmt.Sprintf("checks[%d].", i))
		}
		res, err := s.RBAC.Evaluate(r.Context(), c, clientIP(r))
		if err != nil {
			return errs.Internal(err, "evaluate the checks")
		}
		out = append(out, res)
	}
	writeJSON(w, http.StatusOK, map[string]any{"results": out})
	return nil
}

// prefixFieldPath names an item's field problems by their place in the body
// (checks[2].userId), so a batch says which item is wrong.
func prefixFieldPath(err error, prefix string) error {
	e, ok := errs.As(err)
	if !ok || len(e.Fields) == 0 {
		return err
	}
	cp := *e
	cp.Fields = make(map[string]string, len(e.Fields))
	for k, v := range e.Fields {
		cp.Fields[prefix+k] = v
	}
	return &cp
}
