package identity

import (
	"context"
	"net/mail"
	"regexp"
	"slices"
	"strings"
	"time"

	"github.com/google/uuid"
	"gorm.io/gorm"

	"github.com/tenantgate/tenantgate/internal/actor"
	"github.com/tenantgate/tenantgate/internal/audit"
	"github.com/tenantgate/tenantgate/internal/errs"
	"github.com/tenantgate/tenantgate/internal/rbac"
	"github.com/tenantgate/tenantgate/internal/store"
)

// User statuses (seed 004).
const (
	StatusActive    = "active"
	StatusInactive  = "inactive"
	StatusSuspended = "suspended"
	StatusDeleted   = "deleted"
)

// User is a tenant's user (seed 004 User).
type User struct {
	TenantID          string     `gorm:"primaryKey" json:"tenantId"`
	ID                string     `gorm:"primaryKey" json:"id"`
	Username          string     `json:"username"`
	Email             string     `json:"email"`
	Phone             *string    `json:"phone,omitempty"`
	FirstName         string     `json:"firstName"`
	LastName          string     `json:"lastName"`
	Avatar            *string    `json:"avatar,omitempty"`
	Status            string     `json:"status"`
	Roles             []string   `gorm:"serializer:json" json:"roles"`
	Permissions       []string   `gorm:"-" json:"permissions"`
	PasswordHash      *string    `json:"-"`
	PasswordChangedAt *time.Time `json:"-"`
	LastLoginAt       *time.Time `json:"lastLoginAt,omitempty"`
	TOTPSecret        *string    `json:"-"`
	TOTPPendingSecret *string    `json:"-"`
	TOTPEnabledAt     *time.Time `json:"-"`
	TOTPLastStep      int64      `json:"-"`
	RecoveryCodes     []string   `gorm:"serializer:json" json:"-"`
	TwoFactorEnabled  bool       `gorm:"-" json:"twoFactorEnabled"`
	CreatedAt         time.Time  `json:"createdAt"`
	UpdatedAt         time.Time  `json:"updatedAt"`
	DeletedAt         *time.Time `json:"deletedAt,omitempty"`
}

// TableName maps User to users.
func (User) TableName() string { return "users" }

// TenantOwned marks users as tenant data.
func (User) TenantOwned() {}

func (u *User) fill() *User {
	u.Permissions = rbac.PermissionsOf(u.Roles)
	u.TwoFactorEnabled = u.TOTPEnabledAt != nil
	if u.RecoveryCodes == nil {
		u.RecoveryCodes = []string{}
	}
	if u.Roles == nil {
		u.Roles = []string{}
	}
	return u
}

// NewUser is what creating a user takes.
type NewUser struct {
	Email     string   `json:"email"`
	Username  string   `json:"username"`
	Password  string   `json:"password"`
	FirstName string   `json:"firstName"`
	LastName  string   `json:"lastName"`
	Phone     *string  `json:"phone"`
	Avatar    *string  `json:"avatar"`
	Roles     []string `json:"roles"`

	hash string // the password's hash, made by Hashed before the transaction
}

// Hashed returns in with its password hashed, for CreateUserTx: hashing
// takes tens of milliseconds of CPU and must not run inside a transaction
// (on SQLite it would hold the one write lock all that time). Values that
// fail validation are not hashed; CreateUserTx names their problems.
func (s *Service) Hashed(in NewUser) (NewUser, error) {
	if in.hash != "" || len(in.Validate()) > 0 {
		return in, nil
	}
	hash, err := HashPassword(in.Password, s.pw)
	if err != nil {
		return in, errs.Internal(err, "hash the password")
	}
	in.hash = hash
	return in, nil
}

// UserPatch is a partial update; nil fields stay as they are.
type UserPatch struct {
	Email           *string   `json:"email"`
	Username        *string   `json:"username"`
	FirstName       *string   `json:"firstName"`
	LastName        *string   `json:"lastName"`
	Phone           *string   `json:"phone"`
	Avatar          *string   `json:"avatar"`
	Status          *string   `json:"status"`
	Roles           *[]string `json:"roles"`
	Password        *string   `json:"password"`
	CurrentPassword *string   `json:"currentPassword"`
}

var usernameRe = regexp.MustCompile(`^[a-z0-9][a-z0-9._-]{1,62}[a-z0-9]$`)

// NormalizeEmail lower-cases and checks an email address; "" if invalid.
func NormalizeEmail(s string) string {
	s = strings.ToLower(strings.TrimSpace(s))
	if len(s) > 254 || strings.ContainsAny(s, " <>\"") {
		return ""
	}
	a, err := mail.ParseAddress(s)
	if err != nil || a.Address != s || !strings.Contains(s[strings.IndexByte(s, '@')+1:], ".") {
		return ""
	}
	return s
}

func usernameFromEmail(email string) string {
	local := email[:strings.IndexByte(email, '@')]
	var b strings.Builder
	for _, r := range local {
		if r < 128 && (r >= 'a' && r <= 'z' || r >= '0' && r <= '9' || r == '.' || r == '_' || r == '-') {
			b.WriteRune(r)
		}
	}
	u := strings.Trim(b.String(), "._-")
	for len(u) < 3 {
		u += "0"
	}
	if len(u) > 64 {
		u = u[:64]
	}
	return u
}

func checkProfile(f errs.Fields, first, last string, phone, avatar *string) {
	f.Text("firstName", first, 0, 100)
	f.Text("lastName", last, 0, 100)
	if phone != nil && (len(*phone) > 32 || !regexp.MustCompile(`^\+?[0-9 ()-]{3,32}$`).MatchString(*phone)) {
		f.Add("phone", "must be a phone number of digits, spaces, ( ) - and an optional leading +")
	}
	if avatar != nil && (len(*avatar) > 2048 || !(strings.HasPrefix(*avatar, "https://") || strings.HasPrefix(*avatar, "http://"))) {
		f.Add("avatar", "must be an http(s) URL of at most 2048 characters")
	}
}

func checkRoles(f errs.Fields, roles []string) []string {
	if len(roles) == 0 {
		return []string{rbac.RoleUser}
	}
	out := []string{}
	for _, r := range roles {
		if !rbac.IsTenantRole(r) {
			f.Add("roles", "unknown role "+r+"; use one of "+strings.Join(rbac.TenantRoles(), ", "))
			continue
		}
		if !slices.Contains(out, r) {
			out = append(out, r)
		}
	}
	slices.Sort(out)
	return out
}

// check is the one rule for a new user's values (everything but uniqueness
// and the caller's rank, which need the database): it records every problem
// and returns the normalised email, username and roles.
func (in NewUser) check(f errs.Fields) (email, username string, roles []string) {
	email = NormalizeEmail(in.Email)
	if email == "" {
		f.Add("email", "must be a valid email address")
	}
	username = strings.ToLower(strings.TrimSpace(in.Username))
	if username == "" && email != "" {
		username = usernameFromEmail(email)
	}
	// A username left out comes from the email; a bad email is named once.
	if (username != "" || email != "") && !usernameRe.MatchString(username) {
		f.Add("username", "must be 3-64 characters of a-z, 0-9, '.', '_', '-', starting and ending with a letter or digit")
	}
	if p := CheckPassword(in.Password, email, username); p != "" {
		f.Add("password", p)
	}
	checkProfile(f, in.FirstName, in.LastName, in.Phone, in.Avatar)
	roles = checkRoles(f, in.Roles)
	return email, username, roles
}

// Validate reports every problem of a new user's values, by the rule
// CreateUser applies.
func (in NewUser) Validate() errs.Fields {
	f := errs.Fields{}
	in.check(f)
	return f
}

// mayGrant refuses built-in roles that rank above the caller (whose rank
// counts every source of their roles: see rbac.Standing).
func (s *Service) mayGrant(ctx context.Context, tx *gorm.DB, roles []string) error {
	rank, err := s.ranksOrFail().ActingRankTx(ctx, tx)
	if err != nil {
		return err
	}
	if rbac.Rank(roles) > rank {
		return errs.Forbidden(errs.CodePermissionDenied, "you cannot grant a role above your own")
	}
	return nil
}

// CreateUserTx creates a user in tx (the tenant comes from ctx's scope) and
// records the audit event. Signup calls it inside the tenant's transaction.
func (s *Service) CreateUserTx(ctx context.Context, tx *gorm.DB, in NewUser) (*User, error) {
	f := errs.Fields{}
	email, username, roles := in.check(f)
	if err := f.Err(); err != nil {
		return nil, err
	}
	if err := s.mayGrant(ctx, tx, roles); err != nil {
		return nil, err
	}
	hash := in.hash
	if hash == "" { // not prepared with Hashed: hashed here, inside the caller's transaction
		var err error
		if hash, err = HashPassword(in.Password, s.pw); err != nil {
			return nil, errs.Internal(err, "hash the password")
		}
	}
	now := s.now()
	u := &User{ID: uuid.Must(uuid.NewV7()).String(), Email: email, Username: username, FirstName: strings.TrimSpace(in.FirstName),
		LastName: strings.TrimSpace(in.LastName), Phone: in.Phone, Avatar: in.Avatar, Status: StatusActive, Roles: roles,
		PasswordHash: &hash, PasswordChangedAt: &now, RecoveryCodes: []string{}, CreatedAt: now, UpdatedAt: now}
	if err := s.uniqueUser(tx, u, ""); err != nil {
		return nil, err
	}
	if err := s.quota.Reserve(ctx, tx, "users"); err != nil {
		return nil, err
	}
	if err := tx.Create(u).Error; err != nil {
		if store.IsUniqueViolation(err) {
			return nil, errs.Conflict(errs.CodeUserAlreadyExists, "a user with this email or username already exists in this tenant")
		}
		return nil, errs.Internal(err, "create the user")
	}
	u.fill()
	return u, audit.Record(ctx, tx, audit.Entry{EventType: "user.created", Resource: "user", ResourceID: u.ID, Action: "create", After: u})
}

// uniqueUser gives a clear, per-field conflict before the unique index would.
func (s *Service) uniqueUser(tx *gorm.DB, u *User, exceptID string) error {
	var clash []User
	q := tx.Select("id", "email", "username").Where("status <> ? AND (email = ? OR username = ?)", StatusDeleted, u.Email, u.Username)
	if exceptID != "" {
		q = q.Where("id <> ?", exceptID)
	}
	if err := q.Find(&clash).Error; err != nil {
		return errs.Internal(err, "check for an existing user")
	}
	f := errs.Fields{}
	for _, c := range clash {
		if c.Email == u.Email {
			f.Add("email", "is already used by another user of this tenant")
		}
		if c.Username == u.Username {
			f.Add("username", "is already taken in this tenant; choose another")
		}
	}
	if len(f) > 0 {
		return &errs.Error{Kind: errs.KindConflict, Code: errs.CodeUserAlreadyExists, Msg: "a user with this email or username already exists in this tenant", Fields: f}
	}
	return nil
}

// CreateUser creates a user in the tenant of ctx.
func (s *Service) CreateUser(ctx context.Context, in NewUser) (*User, error) {
	in, err := s.Hashed(in)
	if err != nil {
		return nil, err
	}
	var u *User
	err = s.store.Tx(ctx, func(tx *gorm.DB) error {
		var err error
		u, err = s.CreateUserTx(ctx, tx, in)
		return err
	})
	return u, err
}

func (s *Service) getTx(tx *gorm.DB, id string) (*User, error) {
	if !store.ValidID(id) {
		return nil, errs.NotFound(errs.CodeUserNotFound, "no user with id %q in this tenant", id)
	}
	var u User
	if err := tx.Where("id = ?", id).Take(&u).Error; err != nil {
		if store.IsNotFound(err) {
			return nil, errs.NotFound(errs.CodeUserNotFound, "no user with id %q in this tenant", id)
		}
		return nil, errs.Internal(err, "read the user")
	}
	return u.fill(), nil
}

// GetUser reads one user of the tenant in ctx (deleted users included).
func (s *Service) GetUser(ctx context.Context, id string) (*User, error) {
	return store.Read(ctx, s.store, func(tx *gorm.DB) (*User, error) { return s.getTx(tx, id) })
}

// liveUserTx locks the tenant (so changes to its users are serialised, for
// the last-owner rule) and loads a user that is not deleted.
func (s *Service) liveUserTx(ctx context.Context, tx *gorm.DB, id string) (*User, error) {
	if err := s.store.LockTenantTx(tx, store.TenantFrom(ctx)); err != nil {
		return nil, err
	}
	u, err := s.getTx(tx, id)
	if err != nil {
		return nil, err
	}
	if u.Status == StatusDeleted {
		return nil, errs.NotFound(errs.CodeUserNotFound, "no user with id %q in this tenant", id)
	}
	return u, nil
}

// UserFilter narrows a user listing.
type UserFilter struct {
	Status string // default: every status but deleted
	Role   string
	Query  string // matches email, username, first or last name
}

// ListUsers lists the tenant's users, newest first.
func (s *Service) ListUsers(ctx context.Context, f UserFilter, p store.Page) ([]User, *string, error) {
	bad := errs.Fields{}
	if f.Status != "" && !slices.Contains([]string{StatusActive, StatusInactive, StatusSuspended, StatusDeleted}, f.Status) {
		bad.Add("status", "must be one of active, inactive, suspended, deleted")
	}
	if f.Role != "" && !rbac.IsTenantRole(f.Role) {
		bad.Add("role", "must be one of "+strings.Join(rbac.TenantRoles(), ", "))
	}
	if len(f.Query) > 100 {
		bad.Add("q", "must be at most 100 characters")
	}
	if err := bad.Err(); err != nil {
		return nil, nil, err
	}
	var out []User
	err := s.store.Tx(ctx, func(tx *gorm.DB) error {
		q := tx.Model(&User{})
		if f.Status != "" {
			q = q.Where("status = ?", f.Status)
		} else {
			q = q.Where("status <> ?", StatusDeleted)
		}
		if f.Role != "" {
			q = q.Where("CAST(roles AS TEXT) LIKE ?", `%"`+f.Role+`"%`) // role names hold no LIKE wildcards
		}
		if f.Query != "" {
			like := "%" + escapeLike(strings.ToLower(f.Query)) + "%"
			q = q.Where("(LOWER(email) LIKE ? ESCAPE '\\' OR LOWER(username) LIKE ? ESCAPE '\\' OR LOWER(first_name) LIKE ? ESCAPE '\\' OR LOWER(last_name) LIKE ? ESCAPE '\\')",
				like, like, like, like)
		}
		return p.Apply(q, "id").Find(&out).Error
	})
	if err != nil {
		return nil, nil, errs.Internal(err, "list users")
	}
	for i := range out {
		out[i].fill()
	}
	items, next := store.Trim(out, p, func(u User) string { return u.ID })
	return items, next, nil
}

func escapeLike(s string) string {
	return strings.NewReplacer(`\`, `\\`, `%`, `\%`, `_`, `\_`).Replace(s)
}

// UpdateUser applies a patch to a user of the tenant in ctx. self is true on
// /users/me, where a password change needs the current password and roles
// and status cannot be changed.
func (s *Service) UpdateUser(ctx context.Context, id string, p UserPatch, self bool) (*User, error) {
	var out *User
	var ended []string
	if a := actor.From(ctx); a != nil && a.Type == actor.TypeUser && a.ID == id {
		self = true // editing oneself by id follows the /users/me rules
	}
	err := s.store.Tx(ctx, func(tx *gorm.DB) error {
		u, err := s.liveUserTx(ctx, tx, id)
		if err != nil {
			return err
		}
		before := *u
		if err := s.mayManage(ctx, tx, u, self); err != nil {
			return err
		}
		f := errs.Fields{}
		if p.Email != nil {
			if e := NormalizeEmail(*p.Email); e == "" {
				f.Add("email", "must be a valid email address")
			} else {
				u.Email = e
			}
		}
		if p.Username != nil {
			n := strings.ToLower(strings.TrimSpace(*p.Username))
			if !usernameRe.MatchString(n) {
				f.Add("username", "must be 3-64 characters of a-z, 0-9, '.', '_', '-', starting and ending with a letter or digit")
			}
			u.Username = n
		}
		if p.FirstName != nil {
			u.FirstName = strings.TrimSpace(*p.FirstName)
		}
		if p.LastName != nil {
			u.LastName = strings.TrimSpace(*p.LastName)
		}
		if p.Phone != nil {
			u.Phone = emptyNil(*p.Phone)
		}
		if p.Avatar != nil {
			u.Avatar = emptyNil(*p.Avatar)
		}
		checkProfile(f, u.FirstName, u.LastName, u.Phone, u.Avatar)
		if self && (p.Status != nil || p.Roles != nil) {
			f.Add("roles", "you cannot change your own roles or status; ask an admin")
		}
		if p.Status != nil {
			if !slices.Contains([]string{StatusActive, StatusInactive, StatusSuspended}, *p.Status) {
				f.Add("status", "must be active, inactive or suspended (use DELETE to delete)")
			} else {
				u.Status = *p.Status
			}
		}
		if p.Roles != nil {
			u.Roles = checkRoles(f, *p.Roles)
		}
		passwordChanged := false
		if p.Password != nil {
			if self {
				ok := false
				if p.CurrentPassword != nil && u.PasswordHash != nil {
					ok, _ = VerifyPassword(*p.CurrentPassword, *u.PasswordHash)
				}
				if !ok {
					f.Add("currentPassword", "must be your current password")
				}
			}
			if prob := CheckPassword(*p.Password, u.Email, u.Username); prob != "" {
				f.Add("password", prob)
			}
			passwordChanged = true
		}
		if err := f.Err(); err != nil {
			return err
		}
		if p.Roles != nil {
			if err := s.mayGrant(ctx, tx, u.Roles); err != nil {
				return err
			}
		}
		if err := s.keepAnOwner(tx, &before, u); err != nil {
			return err
		}
		if err := s.uniqueUser(tx, u, u.ID); err != nil {
			return err
		}
		now := s.now()
		if passwordChanged {
			hash, err := HashPassword(*p.Password, s.pw)
			if err != nil {
				return errs.Internal(err, "hash the password")
			}
			u.PasswordHash, u.PasswordChangedAt = &hash, &now
		}
		u.UpdatedAt = now
		if err := tx.Select("email", "username", "first_name", "last_name", "phone", "avatar", "status", "roles",
			"password_hash", "password_changed_at", "updated_at").Updates(u).Error; err != nil {
			if store.IsUniqueViolation(err) {
				return errs.Conflict(errs.CodeUserAlreadyExists, "a user with this email or username already exists in this tenant")
			}
			return errs.Internal(err, "update the user")
		}
		// Losing access (suspension, password change) ends the user's sessions.
		rolesChanged := !slices.Equal(before.Roles, u.Roles)
		if passwordChanged || u.Status != StatusActive || rolesChanged {
			// Tokens carry roles: end the sessions so no token outlives the change.
			if ended, err = revokeSubjectTx(tx, u.ID, "user_changed", now); err != nil {
				return err
			}
		}
		if u.Status != StatusActive || p.Roles != nil {
			// A key acts with its user's roles: drop cached copies, and revoke
			// the keys of a user who lost access.
			if u.Status != StatusActive {
				if err := s.revokeUserKeysTx(tx, u.ID, now); err != nil {
					return err
				}
			}
			s.keys.evict(func(e *keyEntry) bool { return e.key.UserID == u.ID })
		}
		meta := map[string]any{}
		if passwordChanged {
			meta["passwordChanged"] = true
		}
		out = u.fill()
		return audit.Record(ctx, tx, audit.Entry{EventType: "user.updated", Resource: "user", ResourceID: u.ID, Action: "update",
			Before: before.fill(), After: u, Metadata: meta})
	})
	if err == nil {
		s.markRevoked(ended...)
		s.changed(store.TenantFrom(ctx))
	}
	return out, err
}

// mayManage refuses changes to a user who ranks above the caller: the
// target's roles from every source, assignments and inheritance included,
// against the caller's (see rbac.Standing).
func (s *Service) mayManage(ctx context.Context, tx *gorm.DB, target *User, self bool) error {
	if self {
		return nil
	}
	return s.ranksOrFail().MayManageTx(ctx, tx, target.ID)
}

// keepAnOwner refuses a change that would leave the tenant without an active owner.
func (s *Service) keepAnOwner(tx *gorm.DB, before, after *User) error {
	wasOwner := before.Status == StatusActive && slices.Contains(before.Roles, rbac.RoleOwner)
	isOwner := after.Status == StatusActive && slices.Contains(after.Roles, rbac.RoleOwner)
	if !wasOwner || isOwner {
		return nil
	}
	var owners []User
	if err := tx.Select("id", "roles").Where("status = ? AND id <> ?", StatusActive, before.ID).Find(&owners).Error; err != nil {
		return errs.Internal(err, "count owners")
	}
	for _, o := range owners {
		if slices.Contains(o.Roles, rbac.RoleOwner) {
			return nil
		}
	}
	return errs.Conflict(errs.CodeLastOwner, "this is the tenant's last active owner; make another user owner first")
}

// DeleteUser marks a user deleted and ends their sessions.
func (s *Service) DeleteUser(ctx context.Context, id string) error {
	var ended []string
	err := s.store.Tx(ctx, func(tx *gorm.DB) error {
		u, err := s.liveUserTx(ctx, tx, id)
		if err != nil {
			return err
		}
		if a := actor.From(ctx); a != nil && a.Type == actor.TypeUser && a.ID == u.ID {
			return errs.Forbidden(errs.CodeForbidden, "you cannot delete your own account; ask another admin")
		}
		if err := s.mayManage(ctx, tx, u, false); err != nil {
			return err
		}
		before := *u
		after := *u
		after.Status = StatusDeleted
		if err := s.keepAnOwner(tx, &before, &after); err != nil {
			return err
		}
		now := s.now()
		if err := tx.Model(u).Updates(map[string]any{"status": StatusDeleted, "deleted_at": now, "updated_at": now}).Error; err != nil {
			return errs.Internal(err, "delete the user")
		}
		if ended, err = revokeSubjectTx(tx, u.ID, "user_deleted", now); err != nil {
			return err
		}
		if err := s.revokeUserKeysTx(tx, u.ID, now); err != nil {
			return err
		}
		return audit.Record(ctx, tx, audit.Entry{EventType: "user.deleted", Resource: "user", ResourceID: u.ID, Action: "delete", Before: before.fill()})
	})
	if err == nil {
		s.markRevoked(ended...)
		s.changed(store.TenantFrom(ctx))
	}
	return err
}

// CountUsers counts the tenant's users by status.
func (s *Service) CountUsers(ctx context.Context) (map[string]int64, error) {
	type row struct {
		Status string
		N      int64
	}
	var rows []row
	err := s.store.Tx(ctx, func(tx *gorm.DB) error {
		return tx.Model(&User{}).Select("status, count(*) AS n").Group("status").Scan(&rows).Error
	})
	if err != nil {
		return nil, errs.Internal(err, "count users")
	}
	out := map[string]int64{StatusActive: 0, StatusInactive: 0, StatusSuspended: 0, StatusDeleted: 0}
	for _, r := range rows {
		out[r.Status] = r.N
	}
	return out, nil
}

func emptyNil(s string) *string {
	s = strings.TrimSpace(s)
	if s == "" {
		return nil
	}
	return &s
}

// CreateFederatedUserTx creates a user who signs in through an identity
// provider: no password (password login is impossible until one is set).
func (s *Service) CreateFederatedUserTx(ctx context.Context, tx *gorm.DB, email, firstName, lastName string, roles []string) (*User, error) {
	f := errs.Fields{}
	email = NormalizeEmail(email)
	if email == "" {
		f.Add("email", "the identity provider gave no valid email address")
	}
	roles = checkRoles(f, roles)
	if err := f.Err(); err != nil {
		return nil, err
	}
	now := s.now()
	u := &User{ID: uuid.Must(uuid.NewV7()).String(), Email: email, Username: usernameFromEmail(email), FirstName: truncate(stripNUL(firstName), 100),
		LastName: truncate(stripNUL(lastName), 100), Status: StatusActive, Roles: roles, RecoveryCodes: []string{}, CreatedAt: now, UpdatedAt: now}
	for i := 0; i < 5; i++ { // usernames are unique; suffix on a clash
		var n int64
		if err := tx.Model(&User{}).Where("username = ? AND status <> ?", u.Username, StatusDeleted).Count(&n).Error; err != nil {
			return nil, err
		}
		if n == 0 {
			break
		}
		u.Username = truncate(usernameFromEmail(email), 56) + "-" + uuid.NewString()[:6]
	}
	if err := s.quota.Reserve(ctx, tx, "users"); err != nil {
		return nil, err
	}
	if err := tx.Create(u).Error; err != nil {
		if store.IsUniqueViolation(err) {
			return nil, errs.Conflict(errs.CodeUserAlreadyExists, "a user with this email already exists in this tenant")
		}
		return nil, err
	}
	u.fill()
	return u, audit.Record(ctx, tx, audit.Entry{EventType: "user.created", Resource: "user", ResourceID: u.ID, Action: "create",
		After: u, Metadata: map[string]any{"via": "oidc"}})
}

// FindByEmailTx finds a live user of the tenant in tx's scope by email.
func (s *Service) FindByEmailTx(tx *gorm.DB, email string) (*User, error) {
	var u User
	err := tx.Where("email = ? AND status <> ?", NormalizeEmail(email), StatusDeleted).Take(&u).Error
	if store.IsNotFound(err) {
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	return u.fill(), nil
}

// GetUserTx reads a user in tx.
func (s *Service) GetUserTx(tx *gorm.DB, id string) (*User, error) { return s.getTx(tx, id) }

func stripNUL(s string) string { return strings.ReplaceAll(s, "\x00", "") }
