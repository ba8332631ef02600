package rbac

import (
	"context"
	"encoding/json"
	"fmt"
	"regexp"
	"slices"
	"sort"
	"strings"
	"sync"
	"time"

	"github.com/google/uuid"
	"gorm.io/gorm"

	"github.com/tenantgate/tenantgate/internal/actor"
	"github.com/tenantgate/tenantgate/internal/audit"
	"github.com/tenantgate/tenantgate/internal/errs"
	"github.com/tenantgate/tenantgate/internal/store"
)

// Error codes of RBAC (seed 004).
const (
	CodeRoleNotFound          = "ROLE_NOT_FOUND"
	CodePermissionNotFound    = "PERMISSION_NOT_FOUND"
	CodeInvalidRoleAssignment = "INVALID_ROLE_ASSIGNMENT"
	CodeRoleHierarchyConflict = "ROLE_HIERARCHY_CONFLICT"
)

// Grant is one permission a role gives, possibly under conditions.
type Grant struct {
	Permission string      `json:"permission"`
	Scope      string      `json:"scope"` // global | tenant | resource | field
	Conditions []Condition `json:"conditions,omitempty"`
}

// RoleRecord is a role as the API shows it: built-in (type system) or custom.
type RoleRecord struct {
	TenantID     string         `gorm:"primaryKey" json:"tenantId,omitempty"`
	ID           string         `gorm:"primaryKey" json:"id"`
	Name         string         `json:"name"`
	DisplayName  string         `json:"displayName"`
	Description  string         `json:"description"`
	Type         string         `gorm:"-" json:"type"` // system | custom
	Level        int            `json:"level"`
	ParentRoleID *string        `json:"parentRoleId"`
	Grants       []Grant        `gorm:"serializer:json" json:"permissions"`
	IsActive     bool           `json:"isActive"`
	IsBuiltIn    bool           `gorm:"-" json:"isBuiltIn"`
	Metadata     map[string]any `gorm:"serializer:json" json:"metadata"`
	CreatedAt    time.Time      `json:"createdAt"`
	UpdatedAt    time.Time      `json:"updatedAt"`
}

// MarshalJSON shows createdAt and updatedAt as null for built-in roles,
// which were never created or changed in a tenant.
func (r RoleRecord) MarshalJSON() ([]byte, error) {
	type plain RoleRecord
	return json.Marshal(struct {
		plain
		CreatedAt *time.Time `json:"createdAt"`
		UpdatedAt *time.Time `json:"updatedAt"`
	}{plain(r), store.TimeOrNull(r.CreatedAt), store.TimeOrNull(r.UpdatedAt)})
}

// TableName maps custom roles to roles.
func (RoleRecord) TableName() string { return "roles" }

// TenantOwned marks roles as tenant data.
func (RoleRecord) TenantOwned() {}

// Assignment is a user's role grant (seed 004 UserRole).
type Assignment struct {
	TenantID   string         `gorm:"primaryKey" json:"tenantId"`
	ID         string         `gorm:"primaryKey" json:"id"`
	UserID     string         `json:"userId"`
	RoleID     string         `json:"roleId"`
	RoleName   string         `gorm:"-" json:"roleName"`
	AssignedBy string         `json:"assignedBy"`
	ValidFrom  *time.Time     `json:"validFrom"`
	ValidUntil *time.Time     `json:"validUntil"`
	IsActive   bool           `json:"isActive"`
	Permanent  bool           `gorm:"-" json:"permanent"` // a built-in role held on the user record
	Metadata   map[string]any `gorm:"serializer:json" json:"metadata"`
	CreatedAt  time.Time      `json:"createdAt"`
}

// MarshalJSON shows createdAt as null for a permanent built-in role (held
// on the user's record, with no grant time of its own).
func (a Assignment) MarshalJSON() ([]byte, error) {
	type plain Assignment
	return json.Marshal(struct {
		plain
		CreatedAt *time.Time `json:"createdAt"`
	}{plain(a), store.TimeOrNull(a.CreatedAt)})
}

// TableName maps assignments to user_roles.
func (Assignment) TableName() string { return "user_roles" }

// TenantOwned marks assignments as tenant data.
func (Assignment) TenantOwned() {}

var roleNamespace = uuid.MustParse("6f1d8a52-3b7e-4c39-9a0e-2f4b7c1d9e85")

// BuiltinRoleID is the stable id of a built-in role.
func BuiltinRoleID(name string) string {
	return uuid.NewSHA1(roleNamespace, []byte("role:"+name)).String()
}

// permanentAssignmentID is the stable id of a user's permanent built-in role
// (one held on the user's record rather than through an assignment row).
func permanentAssignmentID(userID, role string) string {
	return uuid.NewSHA1(roleNamespace, []byte("permanent:"+userID+":"+role)).String()
}

func builtinRecord(name string) RoleRecord {
	b := builtins[name]
	grants := make([]Grant, 0, len(b.Permissions))
	for _, p := range b.Permissions {
		grants = append(grants, Grant{Permission: string(p), Scope: "tenant"})
	}
	return RoleRecord{ID: BuiltinRoleID(name), Name: name, DisplayName: strings.ReplaceAll(name, "_", " "), Type: "system",
		Level: b.Rank, Grants: grants, IsActive: true, IsBuiltIn: true, Metadata: map[string]any{}}
}

func builtinByID(id string) (string, bool) {
	for _, n := range TenantRoles() {
		if BuiltinRoleID(n) == id {
			return n, true
		}
	}
	return "", false
}

// UserDirectory tells the engine a user's permanent built-in roles (the
// roles on the user record) and whether the user is active; the identity
// service implements it. PermanentRolesTx reads them in the caller's
// transaction.
type UserDirectory interface {
	PermanentRoles(ctx context.Context, userID string) (roles []string, active bool, err error)
	// PermanentRolesTx reads them through tx, the transaction the caller is in.
	PermanentRolesTx(tx *gorm.DB, userID string) (roles []string, active bool, err error)
}

// Reserver checks that one more custom role fits the tenant's plan.
type Reserver interface {
	Reserve(ctx context.Context, tx *gorm.DB, resource string) error
}

// Engine evaluates permissions and manages roles and assignments.
type Engine struct {
	store *store.Store
	users UserDirectory
	quota Reserver // may be nil: unlimited
	now   func() time.Time
	ttl   time.Duration

	mu      sync.Mutex
	version map[string]uint64          // per tenant, bumped on every change
	cache   map[string]*effectiveEntry // tenant:user
}

type effectiveEntry struct {
	version uint64
	exp     time.Time
	ok      bool // the user exists and is active
	// byPerm indexes the grants by permission; wildcard ("res:*") grants are
	// kept apart. A check is then a map lookup, whatever the number of roles.
	byPerm   map[string]*permGrants
	wildcard []effectiveGrant
}

// permGrants are the grants of one permission: the roles that give it
// without conditions (and until when), and the conditional ones.
type permGrants struct {
	roles       []string
	forever     bool       // one unconditional grant has no end
	validUntil  *time.Time // else the latest end among them
	conditional []effectiveGrant
}

func (e *effectiveEntry) add(g effectiveGrant) {
	if strings.HasSuffix(g.grant.Permission, ":*") {
		e.wildcard = append(e.wildcard, g)
		return
	}
	if e.byPerm == nil {
		e.byPerm = map[string]*permGrants{}
	}
	pg := e.byPerm[g.grant.Permission]
	if pg == nil {
		pg = &permGrants{}
		e.byPerm[g.grant.Permission] = pg
	}
	if len(g.grant.Conditions) > 0 {
		pg.conditional = append(pg.conditional, g)
		return
	}
	if i, found := slices.BinarySearch(pg.roles, g.role); !found { // kept sorted for the answer
		pg.roles = slices.Insert(pg.roles, i, g.role)
	}
	switch {
	case g.validUntil == nil:
		pg.forever = true
	case pg.validUntil == nil || g.validUntil.After(*pg.validUntil):
		pg.validUntil = g.validUntil
	}
}

type effectiveGrant struct {
	role       string
	grant      Grant
	validUntil *time.Time
}

// CacheTTL bounds how long a cached decision input lives on this process
// (changes made through another process are seen within it).
const CacheTTL = 10 * time.Second

// NewEngine builds the engine; quota may be nil (no limit on custom roles).
func NewEngine(s *store.Store, users UserDirectory, quota Reserver) *Engine {
	return &Engine{store: s, users: users, quota: quota, now: func() time.Time { return time.Now().UTC() }, ttl: CacheTTL,
		version: map[string]uint64{}, cache: map[string]*effectiveEntry{}}
}

// SetClock makes the engine judge time-bound grants and conditions by now
// instead of the system clock (tests move it instead of sleeping). Call it
// before the engine serves.
func (e *Engine) SetClock(now func() time.Time) {
	e.now = func() time.Time { return now().UTC() }
}

// SetCacheTTL sets how long a decision input is cached (CacheTTL); 0 reads
// it on every decision (tests use it to prove that no path depends on a
// warm cache).
func (e *Engine) SetCacheTTL(d time.Duration) {
	e.mu.Lock()
	defer e.mu.Unlock()
	e.ttl = d
}

// Invalidate drops every cached decision input of a tenant; the identity
// service calls it when a user's roles or status change.
func (e *Engine) Invalidate(tenantID string) {
	e.mu.Lock()
	defer e.mu.Unlock()
	e.version[tenantID]++
}

// effective returns a user's grants now: permanent built-ins, assignments
// valid at this moment, and every ancestor of each custom role.
func (e *Engine) effective(ctx context.Context, tenantID, userID string) (*effectiveEntry, bool, error) {
	return e.effectiveTx(ctx, nil, tenantID, userID)
}

// effectiveTx is effective for work inside an open transaction: on a cache
// miss it reads through tx (nil: a transaction of its own), and what it reads
// through a caller's transaction is not cached (that transaction may still
// change it or roll back).
func (e *Engine) effectiveTx(ctx context.Context, tx *gorm.DB, tenantID, userID string) (*effectiveEntry, bool, error) {
	key := tenantID + ":" + userID
	now := e.now()
	e.mu.Lock()
	ver := e.version[tenantID]
	if c, ok := e.cache[key]; ok && c.version == ver && now.Before(c.exp) {
		e.mu.Unlock()
		return c, true, nil
	}
	ttl := e.ttl
	e.mu.Unlock()

	entry := &effectiveEntry{version: ver, exp: now.Add(ttl)}
	load := func(tx *gorm.DB) error {
		perm, active, err := e.users.PermanentRolesTx(tx, userID)
		if err != nil {
			return err
		}
		entry.ok = active
		if !active {
			return nil
		}
		for _, name := range perm {
			for _, g := range builtinRecord(name).Grants {
				entry.add(effectiveGrant{role: name, grant: g})
			}
		}
		var as []Assignment
		if err := tx.Where("user_id = ? AND is_active = ?", userID, true).Find(&as).Error; err != nil {
			return err
		}
		var customs []RoleRecord
		if err := tx.Find(&customs).Error; err != nil {
			return err
		}
		byID := map[string]RoleRecord{}
		for _, r := range customs {
			byID[r.ID] = r
		}
		for _, a := range as {
			// The cache must not outlive a boundary of any assignment.
			for _, b := range []*time.Time{a.ValidFrom, a.ValidUntil} {
				if b != nil && b.After(now) && b.Before(entry.exp) {
					entry.exp = *b
				}
			}
			if (a.ValidFrom != nil && now.Before(*a.ValidFrom)) || (a.ValidUntil != nil && !now.Before(*a.ValidUntil)) {
				continue
			}
			if name, ok := builtinByID(a.RoleID); ok {
				for _, g := range builtinRecord(name).Grants {
					entry.add(effectiveGrant{role: name, grant: g, validUntil: a.ValidUntil})
				}
				continue
			}
			seen := map[string]bool{}
			for id := a.RoleID; id != "" && !seen[id]; {
				seen[id] = true
				r, ok := byID[id]
				if !ok || !r.IsActive {
					break
				}
				for _, g := range r.Grants {
					entry.add(effectiveGrant{role: r.Name, grant: g, validUntil: a.ValidUntil})
				}
				id = ""
				if r.ParentRoleID != nil {
					id = *r.ParentRoleID
				}
			}
		}
		return nil
	}
	if tx != nil {
		if err := load(tx); err != nil {
			return nil, false, err
		}
		return entry, false, nil
	}
	if err := e.store.Tx(store.WithTenant(ctx, tenantID), load); err != nil {
		return nil, false, err
	}
	e.mu.Lock()
	if len(e.cache) > 100000 {
		clear(e.cache)
	}
	e.cache[key] = entry
	e.mu.Unlock()
	return entry, false, nil
}

// Check is seed 004's PermissionCheck.
type Check struct {
	UserID     string         `json:"userId"`
	TenantID   string         `json:"tenantId"`
	Resource   string         `json:"resource"`
	Action     string         `json:"action"`
	ResourceID string         `json:"resourceId,omitempty"`
	Context    map[string]any `json:"context,omitempty"`
}

// Result is seed 004's PermissionResult.
type Result struct {
	Resource           string         `json:"resource,omitempty"`
	Action             string         `json:"action,omitempty"`
	ResourceID         string         `json:"resourceId,omitempty"`
	Allowed            bool           `json:"allowed"`
	Reason             *string        `json:"reason"`
	AppliedRoles       []string       `json:"appliedRoles"`
	AppliedPermissions []string       `json:"appliedPermissions"`
	Conditions         map[string]any `json:"conditions,omitempty"`
	Metadata           map[string]any `json:"metadata"`
}

// Evaluate decides one check. The tenant comes from the check; ip is the
// caller's address for location conditions (or context.requestIp).
func (e *Engine) Evaluate(ctx context.Context, c Check, ip string) (Result, error) {
	start := time.Now()
	perm := c.Resource + ":" + c.Action
	res := Result{Resource: c.Resource, Action: c.Action, ResourceID: c.ResourceID}
	entry, hit, err := e.effective(ctx, c.TenantID, c.UserID)
	if err != nil {
		return res, err
	}
	reason := "insufficient_permissions"
	if !entry.ok {
		reason = "user_inactive_or_unknown"
	}
	var until *time.Time
	forever := false
	pg := entry.byPerm[perm]
	if pg != nil && len(pg.roles) > 0 { // the common case: a map lookup
		res.Allowed, res.AppliedRoles, res.AppliedPermissions = true, slices.Clone(pg.roles), []string{perm}
		forever, until = pg.forever, pg.validUntil
	}
	var conditional []effectiveGrant
	if pg != nil {
		conditional = pg.conditional
	}
	for _, g := range entry.wildcard {
		if matches(g.grant.Permission, perm) {
			conditional = append(conditional[:len(conditional):len(conditional)], g)
		}
	}
	if len(conditional) > 0 {
		if v, ok := c.Context["requestIp"].(string); ok && v != "" {
			ip = v
		}
		attrs := make(map[string]any, len(c.Context)+1)
		for k, v := range c.Context {
			attrs[k] = v
		}
		if c.ResourceID != "" {
			attrs["resourceId"] = c.ResourceID
		}
		ev := EvalContext{Now: e.now(), UserID: c.UserID, IP: ip, Attrs: attrs}
	next:
		for _, g := range conditional {
			for _, cond := range g.grant.Conditions {
				if !cond.Eval(ev) {
					reason = "condition_failed:" + cond.Type
					continue next
				}
			}
			res.Allowed = true
			if i, found := slices.BinarySearch(res.AppliedRoles, g.role); !found {
				res.AppliedRoles = slices.Insert(res.AppliedRoles, i, g.role)
			}
			if !slices.Contains(res.AppliedPermissions, g.grant.Permission) {
				res.AppliedPermissions = append(res.AppliedPermissions, g.grant.Permission)
			}
			if g.validUntil == nil {
				forever = true
			} else if until == nil || g.validUntil.After(*until) {
				until = g.validUntil
			}
		}
	}
	if res.AppliedRoles == nil {
		res.AppliedRoles, res.AppliedPermissions = []string{}, []string{}
	}
	if !res.Allowed {
		res.Reason = &reason
	} else if until != nil && !forever {
		res.Conditions = map[string]any{"validUntil": until.UTC().Format(time.RFC3339)}
	}
	res.Metadata = map[string]any{"evaluationTime": time.Since(start).Microseconds(), "evaluationTimeUnit": "µs", "cacheHit": hit}
	return res, nil
}

// matches reports whether a granted permission covers the wanted one;
// "resource:*" covers every action of the resource.
func matches(granted, want string) bool {
	if granted == want {
		return true
	}
	res, act, _ := strings.Cut(granted, ":")
	return act == "*" && strings.HasPrefix(want, res+":")
}

// Allowed is the route check for a tenant principal: the user's effective
// grants (built-in, assigned, inherited; conditions judged against the
// request) and, for an API key, the key's scopes.
func (e *Engine) Allowed(ctx context.Context, a *actor.Actor, tenantID string, p Permission) (bool, error) {
	if a == nil {
		return false, nil
	}
	if a.Type == actor.TypeOperator {
		return true, nil
	}
	if a.Type != actor.TypeUser {
		return false, nil
	}
	if a.KeyID != "" && !slices.Contains(a.Permissions, string(p)) {
		return false, nil
	}
	res, _, _ := strings.Cut(string(p), ":")
	r, err := e.Evaluate(ctx, Check{UserID: a.ID, TenantID: tenantID, Resource: res, Action: strings.TrimPrefix(string(p), res+":")}, a.SourceIP)
	return r.Allowed, err
}

// EffectivePermissions lists the permissions a user holds now, unconditionally.
func (e *Engine) EffectivePermissions(ctx context.Context, tenantID, userID string) ([]string, error) {
	entry, _, err := e.effective(ctx, tenantID, userID)
	if err != nil {
		return nil, err
	}
	return entry.unconditional(), nil
}

// unconditional lists the permissions the entry grants without conditions.
func (entry *effectiveEntry) unconditional() []string {
	out := []string{}
	for p, pg := range entry.byPerm {
		if len(pg.roles) > 0 {
			out = append(out, p)
		}
	}
	for _, g := range entry.wildcard {
		if len(g.grant.Conditions) == 0 && !slices.Contains(out, g.grant.Permission) {
			out = append(out, g.grant.Permission)
		}
	}
	sort.Strings(out)
	return out
}

var roleNameRe = regexp.MustCompile(`^[a-z][a-z0-9_.-]{1,62}$`)

// NewRole is what creating or replacing a custom role takes.
type NewRole struct {
	Name         string         `json:"name"`
	DisplayName  string         `json:"displayName"`
	Description  string         `json:"description"`
	Level        int            `json:"level"`
	ParentRoleID *string        `json:"parentRoleId"`
	Permissions  []Grant        `json:"permissions"`
	IsActive     *bool          `json:"isActive"`
	Metadata     map[string]any `json:"metadata"`
}

func validateGrants(f errs.Fields, grants []Grant) {
	for i, g := range grants {
		field := fmt.Sprintf("permissions[%d]", i)
		if !Known(g.Permission) && !strings.HasSuffix(g.Permission, ":*") {
			f.Add(field, "unknown permission "+g.Permission+"; see GET /api/v1/permissions")
		}
		if g.Scope != "" && !slices.Contains([]string{"global", "tenant", "resource", "field"}, g.Scope) {
			f.Add(field+".scope", "must be global, tenant, resource or field")
		}
		for j, c := range g.Conditions {
			if p := c.Validate(); p != "" {
				f.Add(fmt.Sprintf("%s.conditions[%d]", field, j), p)
			}
		}
		if strings.HasPrefix(g.Permission, "platform:") {
			f.Add(field, "platform permissions cannot be granted to a tenant role")
		}
	}
}

func (e *Engine) getRoleTx(tx *gorm.DB, id string) (*RoleRecord, error) {
	if name, ok := builtinByID(id); ok {
		r := builtinRecord(name)
		return &r, nil
	}
	if !store.ValidID(id) {
		return nil, errs.NotFound(CodeRoleNotFound, "no role with id %q", id)
	}
	var r RoleRecord
	if err := tx.Where("id = ?", id).Take(&r).Error; err != nil {
		if store.IsNotFound(err) {
			return nil, errs.NotFound(CodeRoleNotFound, "no role with id %q", id)
		}
		return nil, err
	}
	r.Type = "custom"
	return &r, nil
}

// checkParent refuses a parent that is unknown or that would make a cycle.
func (e *Engine) checkParent(tx *gorm.DB, roleID string, parent *string) error {
	if parent == nil {
		return nil
	}
	if _, ok := builtinByID(*parent); ok {
		return errs.Conflict(CodeRoleHierarchyConflict, "a custom role cannot inherit from a built-in role; copy its permissions instead")
	}
	if !store.ValidID(*parent) {
		return errs.Invalid("the parent role does not exist", map[string]string{"parentRoleId": "is not a role id"})
	}
	seen := map[string]bool{roleID: true}
	for id := *parent; id != ""; {
		if seen[id] {
			return errs.Conflict(CodeRoleHierarchyConflict, "this parent would make the role inherit from itself")
		}
		seen[id] = true
		var r RoleRecord
		if err := tx.Where("id = ?", id).Take(&r).Error; err != nil {
			if store.IsNotFound(err) {
				return errs.Invalid("the parent role does not exist", map[string]string{"parentRoleId": "is not a role of this tenant"})
			}
			return err
		}
		id = ""
		if r.ParentRoleID != nil {
			id = *r.ParentRoleID
		}
	}
	return nil
}

// ancestorGrantsTx returns the grants a role inherits through parent.
func (e *Engine) ancestorGrantsTx(tx *gorm.DB, parent *string) ([]Grant, error) {
	var out []Grant
	seen := map[string]bool{}
	for id := parent; id != nil && *id != "" && !seen[*id]; {
		seen[*id] = true
		var r RoleRecord
		if err := tx.Where("id = ?", *id).Take(&r).Error; err != nil {
			if store.IsNotFound(err) {
				return out, nil
			}
			return nil, err
		}
		out = append(out, r.Grants...)
		id = r.ParentRoleID
	}
	return out, nil
}

// callerHolds refuses grants the acting user does not hold unconditionally:
// nobody can create, change or assign a role to get more than they have.
// A held "res:*" covers every action of res; a granted "res:*" needs "res:*".
func (e *Engine) callerHolds(ctx context.Context, tx *gorm.DB, grants []Grant) error {
	a := actor.From(ctx)
	if a == nil || a.Type != actor.TypeUser {
		return nil // operators, services and the system
	}
	entry, _, err := e.effectiveTx(ctx, tx, store.TenantFrom(ctx), a.ID)
	if err != nil {
		return err
	}
	mine := entry.unconditional()
	for _, g := range grants {
		if !slices.ContainsFunc(mine, func(p string) bool { return matches(p, g.Permission) }) {
			return errs.Forbidden(CodeInvalidRoleAssignment, "the role would grant %s, which you do not hold", g.Permission)
		}
	}
	return nil
}

// check is the one rule for a role's own values (its parent and what the
// caller may grant need the database).
func (in *NewRole) check(f errs.Fields) {
	if !roleNameRe.MatchString(in.Name) || IsTenantRole(in.Name) || in.Name == RolePlatformAdmin {
		f.Add("name", "must be 2-63 characters of a-z, 0-9, _ . - starting with a letter, and not a built-in role's name")
	}
	in.DisplayName = f.Text("displayName", in.DisplayName, 0, 100)
	if len(in.Description) > 1000 {
		f.Add("description", "must be at most 1000 characters")
	}
	if in.Level < 0 || in.Level > 1000 {
		f.Add("level", "must be from 0 to 1000")
	}
	validateGrants(f, in.Permissions)
}

// Validate reports every problem of a role's own values, by SaveRole's rule.
func (in NewRole) Validate() errs.Fields {
	f := errs.Fields{}
	in.check(f)
	return f
}

// SaveRole creates (id "") or replaces a custom role.
func (e *Engine) SaveRole(ctx context.Context, id string, in NewRole) (*RoleRecord, error) {
	if id != "" {
		if _, ok := builtinByID(id); ok {
			return nil, errs.Forbidden(errs.CodeForbidden, "built-in roles cannot be changed")
		}
	}
	f := errs.Fields{}
	in.check(f)
	if err := f.Err(); err != nil {
		return nil, err
	}
	tenantID := store.TenantFrom(ctx)
	var out *RoleRecord
	err := e.store.Tx(ctx, func(tx *gorm.DB) error {
		now := e.now()
		r := &RoleRecord{ID: uuid.Must(uuid.NewV7()).String(), CreatedAt: now}
		var before *RoleRecord
		if id != "" {
			old, err := e.getRoleTx(tx, id)
			if err != nil {
				return err
			}
			before, r = old, old
		}
		if err := e.checkParent(tx, r.ID, in.ParentRoleID); err != nil {
			return err
		}
		inherited, err := e.ancestorGrantsTx(tx, in.ParentRoleID)
		if err != nil {
			return err
		}
		if err := e.callerHolds(ctx, tx, append(slices.Clone(in.Permissions), inherited...)); err != nil {
			return err
		}
		r.Name, r.DisplayName, r.Description, r.Level, r.ParentRoleID = in.Name, in.DisplayName, in.Description, in.Level, in.ParentRoleID
		r.Grants, r.Metadata, r.UpdatedAt, r.Type = in.Permissions, in.Metadata, now, "custom"
		if r.Grants == nil {
			r.Grants = []Grant{}
		}
		if r.Metadata == nil {
			r.Metadata = map[string]any{}
		}
		r.IsActive = in.IsActive == nil || *in.IsActive
		if id == "" {
			if e.quota != nil {
				if err := e.quota.Reserve(ctx, tx, "roles"); err != nil {
					return err
				}
			}
			err = tx.Create(r).Error
		} else {
			err = tx.Select("*").Omit("tenant_id", "id", "created_at").Updates(r).Error
		}
		if err != nil {
			if store.IsUniqueViolation(err) {
				return errs.Conflict("ROLE_ALREADY_EXISTS", "a role named %q exists in this tenant", in.Name)
			}
			return err
		}
		out = r
		action := "create"
		if id != "" {
			action = "update"
		}
		return audit.Record(ctx, tx, audit.Entry{EventType: "role." + action + "d", Resource: "role", ResourceID: r.ID, Action: action, Before: before, After: r})
	})
	e.Invalidate(tenantID)
	if err != nil {
		return nil, errs.Wrap(err, "save the role")
	}
	return out, nil
}

// DeleteRole deletes a custom role no one holds and no role inherits from.
func (e *Engine) DeleteRole(ctx context.Context, id string) error {
	if _, ok := builtinByID(id); ok {
		return errs.Forbidden(errs.CodeForbidden, "built-in roles cannot be deleted")
	}
	err := e.store.Tx(ctx, func(tx *gorm.DB) error {
		r, err := e.getRoleTx(tx, id)
		if err != nil {
			return err
		}
		var held, children int64
		if err := tx.Model(&Assignment{}).Where("role_id = ?", id).Count(&held).Error; err != nil {
			return err
		}
		if err := tx.Model(&RoleRecord{}).Where("parent_role_id = ?", id).Count(&children).Error; err != nil {
			return err
		}
		if held > 0 || children > 0 {
			return errs.Conflict(CodeRoleHierarchyConflict, "the role is held by %d assignment(s) and inherited by %d role(s); remove those first", held, children)
		}
		if err := tx.Where("id = ?", id).Delete(&RoleRecord{}).Error; err != nil {
			return err
		}
		return audit.Record(ctx, tx, audit.Entry{EventType: "role.deleted", Resource: "role", ResourceID: id, Action: "delete", Before: r})
	})
	e.Invalidate(store.TenantFrom(ctx))
	return err
}

// ListRoles lists the built-in roles, then the tenant's custom roles.
func (e *Engine) ListRoles(ctx context.Context) ([]RoleRecord, error) {
	out := []RoleRecord{}
	for _, n := range TenantRoles() {
		out = append(out, builtinRecord(n))
	}
	var customs []RoleRecord
	if err := e.store.Tx(ctx, func(tx *gorm.DB) error { return tx.Order("name").Find(&customs).Error }); err != nil {
		return nil, errs.Internal(err, "list roles")
	}
	for _, r := range customs {
		r.Type = "custom"
		out = append(out, r)
	}
	return out, nil
}

// GetRole reads one role.
func (e *Engine) GetRole(ctx context.Context, id string) (*RoleRecord, error) {
	return store.Read(ctx, e.store, func(tx *gorm.DB) (*RoleRecord, error) { return e.getRoleTx(tx, id) })
}

// NewAssignment is what assigning a role takes.
type NewAssignment struct {
	RoleID     string         `json:"roleId"`
	ValidFrom  *time.Time     `json:"validFrom"`
	ValidUntil *time.Time     `json:"validUntil"`
	Metadata   map[string]any `json:"metadata"`
}

// Assign grants a role to a user of the tenant in ctx. The assigner must
// hold every permission the role gives (no granting what one lacks).
func (e *Engine) Assign(ctx context.Context, userID string, in NewAssignment) (*Assignment, error) {
	a := actor.From(ctx)
	tenantID := store.TenantFrom(ctx)
	f := errs.Fields{}
	if in.ValidUntil != nil && !in.ValidUntil.After(e.now()) {
		f.Add("validUntil", "must be in the future")
	}
	if in.ValidFrom != nil && in.ValidUntil != nil && !in.ValidUntil.After(*in.ValidFrom) {
		f.Add("validUntil", "must be after validFrom")
	}
	if err := f.Err(); err != nil {
		return nil, err
	}
	if _, active, err := e.users.PermanentRoles(ctx, userID); err != nil || !active {
		return nil, errs.NotFound("USER_NOT_FOUND", "no active user with id %q in this tenant", userID)
	}
	var out *Assignment
	err := e.store.Tx(ctx, func(tx *gorm.DB) error {
		r, err := e.getRoleTx(tx, in.RoleID)
		if err != nil {
			return err
		}
		inherited, err := e.ancestorGrantsTx(tx, r.ParentRoleID)
		if err != nil {
			return err
		}
		if err := e.callerHolds(ctx, tx, append(slices.Clone(r.Grants), inherited...)); err != nil {
			return errs.Forbidden(CodeInvalidRoleAssignment, "you cannot assign %s: %s", r.Name, err.(*errs.Error).Msg)
		}
		// The rank rules: the role and the user may not rank above the caller.
		if err := e.mayGrantRoleTx(ctx, tx, append(slices.Clone(r.Grants), inherited...), "assign"); err != nil {
			return err
		}
		if err := e.MayManageTx(ctx, tx, userID); err != nil {
			return err
		}
		by := "system"
		if a != nil {
			by = string(a.Type) + ":" + a.ID
		}
		as := &Assignment{ID: uuid.Must(uuid.NewV7()).String(), UserID: userID, RoleID: r.ID, RoleName: r.Name, AssignedBy: by,
			IsActive: true, Metadata: in.Metadata, CreatedAt: e.now()}
		if as.Metadata == nil {
			as.Metadata = map[string]any{}
		}
		if in.ValidFrom != nil {
			v := in.ValidFrom.UTC()
			as.ValidFrom = &v
		}
		if in.ValidUntil != nil {
			v := in.ValidUntil.UTC()
			as.ValidUntil = &v
		}
		if err := tx.Create(as).Error; err != nil {
			if store.IsUniqueViolation(err) {
				return errs.Conflict(CodeInvalidRoleAssignment, "the user already has this role; remove it first to change its validity")
			}
			return err
		}
		out = as
		return audit.Record(ctx, tx, audit.Entry{EventType: "user.role_assigned", Resource: "user", ResourceID: userID, Action: "assign_role", After: as})
	})
	e.Invalidate(tenantID)
	if err != nil {
		return nil, errs.Wrap(err, "assign the role")
	}
	return out, nil
}

// Unassign removes an assignment of a role from a user. It reports false
// when the user holds no such assignment (the caller may then look at the
// user's permanent built-in roles).
func (e *Engine) Unassign(ctx context.Context, userID, roleID string) (bool, error) {
	if !store.ValidID(userID) || !store.ValidID(roleID) {
		return false, errs.NotFound(CodeRoleNotFound, "the user does not hold role %q", roleID)
	}
	var found bool
	err := e.store.Tx(ctx, func(tx *gorm.DB) error {
		var as Assignment
		if err := tx.Where("user_id = ? AND role_id = ?", userID, roleID).Take(&as).Error; err != nil {
			if store.IsNotFound(err) {
				return nil
			}
			return err
		}
		found = true
		if err := e.MayManageTx(ctx, tx, userID); err != nil {
			return err
		}
		if err := tx.Where("id = ?", as.ID).Delete(&Assignment{}).Error; err != nil {
			return err
		}
		return audit.Record(ctx, tx, audit.Entry{EventType: "user.role_removed", Resource: "user", ResourceID: userID, Action: "remove_role", Before: &as})
	})
	e.Invalidate(store.TenantFrom(ctx))
	return found, err
}

// Assignments lists a user's roles: permanent built-ins first, then assignments.
func (e *Engine) Assignments(ctx context.Context, userID string) ([]Assignment, error) {
	perm, active, err := e.users.PermanentRoles(ctx, userID)
	if err != nil {
		return nil, err
	}
	if !active && len(perm) == 0 {
		return nil, errs.NotFound("USER_NOT_FOUND", "no user with id %q in this tenant", userID)
	}
	out := []Assignment{}
	for _, n := range perm {
		out = append(out, Assignment{TenantID: store.TenantFrom(ctx), ID: permanentAssignmentID(userID, n), UserID: userID, RoleID: BuiltinRoleID(n), RoleName: n,
			IsActive: true, Permanent: true, Metadata: map[string]any{}})
	}
	var as []Assignment
	if err := e.store.Tx(ctx, func(tx *gorm.DB) error { return tx.Where("user_id = ?", userID).Order("created_at").Find(&as).Error }); err != nil {
		return nil, errs.Internal(err, "list role assignments")
	}
	roles, err := e.ListRoles(ctx)
	if err != nil {
		return nil, err
	}
	for _, a := range as {
		for _, r := range roles {
			if r.ID == a.RoleID {
				a.RoleName = r.Name
			}
		}
		out = append(out, a)
	}
	return out, nil
}

// CountCustomRolesTx counts the tenant's custom roles.
func CountCustomRolesTx(tx *gorm.DB) (int64, error) {
	var n int64
	err := tx.Model(&RoleRecord{}).Count(&n).Error
	return n, err
}
