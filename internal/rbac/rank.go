package rbac

import (
	"context"
	"slices"
	"strings"

	"gorm.io/gorm"

	"github.com/tenantgate/tenantgate/internal/actor"
	"github.com/tenantgate/tenantgate/internal/errs"
)

// The rank rules: nobody manages a user who ranks above them, and nobody
// grants a role that ranks above them. A rank is a built-in role's rank
// (owner 40 > admin 30 > billing manager 20 > user 10). RankTx is the one
// place that turns a user's roles into ranks, from every source of them: the
// built-in roles on the user record, assignments of built-in and custom
// roles, the roles those inherit from, and validity windows.
//
// A custom role ranks by its permissions: each permission needs the lowest
// built-in role that holds it (sso:manage needs owner, user:update needs
// admin, billing:manage needs billing manager, self:read needs user), and a
// role needs the highest of those over its own and its ancestors' grants. A
// role with "res:*" needs what every permission of res needs; a permission
// no built-in role holds needs owner.
//
// A user has two ranks, because acting and being acted upon are not
// symmetrical:
//
//   - Acting is the rank the user acts with now: the highest built-in role
//     every permission of which the user holds now, unconditionally (through
//     any role, inherited or time-bound but currently valid), narrowed to an
//     API key's scopes when the user calls with a key. Holding one sso:manage
//     grant does not make anyone an owner.
//   - Reach is what control of this account gives: the highest rank any of
//     the user's roles needs, counting conditional grants, roles not active
//     now and assignments that have not started yet (only ended assignments
//     drop out). Whoever takes over the account gets all of that sooner or
//     later, so managing the user takes that rank.
//
// A caller may manage a user whose Reach is at most the caller's Acting rank,
// and grant a role whose rank is at most it. For users holding only
// built-in roles on their record both ranks are the record's, as before.
type Standing struct {
	Active bool // the user exists and is active
	Acting int
	Reach  int
}

// Unbounded is the rank of operators, services and the system: above every
// tenant role.
const Unbounded = 1 << 30

// topRank is the owner's rank: what an unknown permission needs.
func topRank() int { return builtins[RoleOwner].Rank }

// PermissionRank is the rank a permission needs: that of the lowest built-in
// role holding it; for "res:*", the highest over the catalogue's res:
// permissions. A permission no built-in role holds needs the owner's rank.
func PermissionRank(p string) int {
	if res, ok := strings.CutSuffix(p, ":*"); ok {
		r := 0
		for _, c := range catalogue {
			if strings.HasPrefix(c.Name, res+":") {
				r = max(r, PermissionRank(c.Name))
			}
		}
		if r == 0 {
			return topRank()
		}
		return r
	}
	r := 0
	for _, b := range builtins {
		if slices.Contains(b.Permissions, Permission(p)) && (r == 0 || b.Rank < r) {
			r = b.Rank
		}
	}
	if r == 0 {
		return topRank()
	}
	return r
}

// grantsRank is the rank a set of grants needs (conditions do not lower it).
func grantsRank(grants []Grant) int {
	r := 0
	for _, g := range grants {
		r = max(r, PermissionRank(g.Permission))
	}
	return r
}

// coveredRank is the highest built-in rank all of whose permissions has
// reports held.
func coveredRank(has func(p string) bool) int {
	r := 0
	for _, b := range builtins {
		if b.Rank > r && !slices.ContainsFunc(b.Permissions, func(p Permission) bool { return !has(string(p)) }) {
			r = b.Rank
		}
	}
	return r
}

// RankTx computes a user's ranks in tx (see Standing) from every source of the
// user's roles. scopes narrows the acting rank to an API key's scopes; nil
// means no key.
func (e *Engine) RankTx(ctx context.Context, tx *gorm.DB, userID string, scopes []string) (Standing, error) {
	perm, active, err := e.users.PermanentRolesTx(tx, userID)
	if err != nil {
		return Standing{}, err
	}
	now := e.now()
	held := []string{} // permissions held now, unconditionally
	reach := Rank(perm)
	for _, name := range perm {
		for _, p := range builtins[name].Permissions {
			held = append(held, string(p))
		}
	}
	var as []Assignment
	if err := tx.Where("user_id = ?", userID).Find(&as).Error; err != nil {
		return Standing{}, errs.Internal(err, "read the user's role assignments")
	}
	var byID map[string]RoleRecord
	for _, a := range as {
		if a.ValidUntil != nil && !now.Before(*a.ValidUntil) {
			continue // ended: gives nothing, now or later
		}
		current := a.IsActive && (a.ValidFrom == nil || !now.Before(*a.ValidFrom))
		if name, ok := builtinByID(a.RoleID); ok {
			reach = max(reach, builtins[name].Rank)
			if current {
				for _, p := range builtins[name].Permissions {
					held = append(held, string(p))
				}
			}
			continue
		}
		if byID == nil {
			var customs []RoleRecord
			if err := tx.Find(&customs).Error; err != nil {
				return Standing{}, errs.Internal(err, "read the tenant's roles")
			}
			byID = make(map[string]RoleRecord, len(customs))
			for _, r := range customs {
				byID[r.ID] = r
			}
		}
		// The role and its ancestors. The engine grants nothing from an
		// inactive role or above it; reach counts them all the same.
		grants := current
		seen := map[string]bool{}
		for id := a.RoleID; id != "" && !seen[id]; {
			seen[id] = true
			r, ok := byID[id]
			if !ok {
				break
			}
			grants = grants && r.IsActive
			reach = max(reach, grantsRank(r.Grants))
			if grants {
				for _, g := range r.Grants {
					if len(g.Conditions) == 0 {
						held = append(held, g.Permission)
					}
				}
			}
			id = ""
			if r.ParentRoleID != nil {
				id = *r.ParentRoleID
			}
		}
	}
	out := Standing{Active: active, Reach: reach}
	if active {
		out.Acting = coveredRank(func(p string) bool {
			if scopes != nil && !slices.Contains(scopes, p) {
				return false
			}
			return slices.ContainsFunc(held, func(h string) bool { return matches(h, p) })
		})
	}
	return out, nil
}

// ActingRankTx is the rank the caller in ctx acts with: operators, services
// and the system (and work without an actor, such as sign-up) outrank every
// tenant role; a user acts with their Acting
// rank, narrowed to their API key's scopes; a user who is no longer active
// is refused.
func (e *Engine) ActingRankTx(ctx context.Context, tx *gorm.DB) (int, error) {
	a := actor.From(ctx)
	if a == nil || a.Type != actor.TypeUser {
		return Unbounded, nil
	}
	var scopes []string
	if a.KeyID != "" {
		scopes = append([]string{}, a.Permissions...)
	}
	r, err := e.RankTx(ctx, tx, a.ID, scopes)
	if err != nil {
		return 0, err
	}
	if !r.Active {
		return 0, errs.Forbidden(errs.CodePermissionDenied, "your account can no longer make this change")
	}
	return r.Acting, nil
}

// MayManageTx refuses when the user userID reaches above the caller's rank.
func (e *Engine) MayManageTx(ctx context.Context, tx *gorm.DB, userID string) error {
	acting, err := e.ActingRankTx(ctx, tx)
	if err != nil || acting == Unbounded {
		return err
	}
	target, err := e.RankTx(ctx, tx, userID, nil)
	if err != nil {
		return err
	}
	if target.Reach > acting {
		return errs.Forbidden(errs.CodePermissionDenied, "you cannot change a user whose role is above your own")
	}
	return nil
}

// mayGrantRoleTx refuses a role (with its ancestors' grants) that ranks
// above the caller.
func (e *Engine) mayGrantRoleTx(ctx context.Context, tx *gorm.DB, grants []Grant, what string) error {
	acting, err := e.ActingRankTx(ctx, tx)
	if err != nil {
		return err
	}
	if grantsRank(grants) > acting {
		return errs.Forbidden(errs.CodePermissionDenied, "you cannot %s a role above your own", what)
	}
	return nil
}
