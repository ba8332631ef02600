// Package identity owns who can sign in: tenant users, platform operators,
// passwords (argon2id), sessions with rotating refresh tokens, and the
// EdDSA-signed access tokens with their public JWKS.
package identity

import (
	"context"
	"fmt"
	"strings"
	"sync/atomic"
	"time"

	"gorm.io/gorm"

	"github.com/tenantgate/tenantgate/internal/actor"
	"github.com/tenantgate/tenantgate/internal/audit"
	"github.com/tenantgate/tenantgate/internal/errs"
	"github.com/tenantgate/tenantgate/internal/kv"
	"github.com/tenantgate/tenantgate/internal/rbac"
	"github.com/tenantgate/tenantgate/internal/secret"
	"github.com/tenantgate/tenantgate/internal/store"
)

// Service is the identity service.
type Service struct {
	store     *store.Store
	signer    *Signer
	pw        PasswordParams
	box       *secret.Box // seals TOTP secrets
	kv        kv.Store    // login failure counters and lockouts
	lockout   Lockout
	now       func() time.Time
	dummyHash string // verified against when an account does not exist, so timing tells nothing
	keys      keyCache
	keyUse    keyUse
	keyTTL    atomic.Int64 // of a cached key (KeyCacheTTL), in nanoseconds
	revoked   revocations
	changed   func(tenantID string) // told when a user's roles or status change
	quota     Reserver
	ranks     Ranks
}

// Ranks applies the rank rules from every source of a user's roles (the
// RBAC engine implements it; run.go wires it with UseRanks). Both methods
// work in the caller's transaction.
type Ranks interface {
	// ActingRankTx is the rank the caller in ctx acts with.
	ActingRankTx(ctx context.Context, tx *gorm.DB) (int, error)
	// MayManageTx refuses when the user ranks above the caller in ctx.
	MayManageTx(ctx context.Context, tx *gorm.DB, userID string) error
}

// UseRanks wires the rank rules; call it once, before the service is used.
func (s *Service) UseRanks(r Ranks) { s.ranks = r }

// noRanks refuses every change a rank rule guards: without the RBAC engine
// a user's assigned roles are unknown, so no rank can be trusted.
type noRanks struct{}

func (noRanks) ActingRankTx(ctx context.Context, _ *gorm.DB) (int, error) {
	if a := actor.From(ctx); a == nil || a.Type != actor.TypeUser {
		return rbac.Unbounded, nil
	}
	return 0, errs.Internal(fmt.Errorf("identity: rank rules are not wired (UseRanks)"), "check your rank")
}

func (n noRanks) MayManageTx(ctx context.Context, tx *gorm.DB, _ string) error {
	_, err := n.ActingRankTx(ctx, tx)
	return err
}

func (s *Service) ranksOrFail() Ranks {
	if s.ranks == nil {
		return noRanks{}
	}
	return s.ranks
}

// Reserver checks, inside a creating transaction, that one more of a
// countable resource fits the tenant's plan (the quota service).
type Reserver interface {
	Reserve(ctx context.Context, tx *gorm.DB, resource string) error
}

type noQuota struct{}

func (noQuota) Reserve(context.Context, *gorm.DB, string) error { return nil }

// Options configure the service.
type Options struct {
	Password PasswordParams
	Box      *secret.Box // required for two-factor authentication
	KV       kv.Store    // default: in memory (one process)
	Lockout  Lockout     // default: DefaultLockout
	// UserChanged is called after a user's roles or status change (the RBAC
	// engine drops its cached decisions for the tenant).
	UserChanged func(tenantID string)
	// Quota reserves users and API keys at creation (default: unlimited).
	Quota Reserver
	// Now is the clock for expiries, lockouts and sessions (default: the
	// system clock; tests move it instead of sleeping).
	Now func() time.Time
}

// Lockout is the login backoff policy: after AccountAfter failures for one
// account (or IPAfter from one address) within Window, further attempts are
// refused for Base, doubling with every further failure up to Max.
type Lockout struct {
	AccountAfter int64
	IPAfter      int64
	Window       time.Duration
	Base         time.Duration
	Max          time.Duration
}

// DefaultLockout: 5 failures per account or 20 per address in 15 minutes.
var DefaultLockout = Lockout{AccountAfter: 5, IPAfter: 20, Window: 15 * time.Minute, Base: 30 * time.Second, Max: 15 * time.Minute}

// New builds the service.
func New(s *store.Store, signer *Signer, o Options) *Service {
	if o.Password == (PasswordParams{}) {
		o.Password = DefaultPasswordParams
	}
	if o.KV == nil {
		o.KV = kv.NewMemory()
	}
	if o.Lockout == (Lockout{}) {
		o.Lockout = DefaultLockout
	}
	dummy, err := HashPassword("not-a-real-password-1", o.Password)
	if err != nil {
		panic(err)
	}
	if o.UserChanged == nil {
		o.UserChanged = func(string) {}
	}
	if o.Quota == nil {
		o.Quota = noQuota{}
	}
	clock := o.Now
	if clock == nil {
		clock = time.Now
	}
	svc := &Service{store: s, signer: signer, pw: o.Password, box: o.Box, kv: o.KV, lockout: o.Lockout,
		now: func() time.Time { return clock().UTC() }, dummyHash: dummy, changed: o.UserChanged, quota: o.Quota}
	svc.keyTTL.Store(int64(KeyCacheTTL))
	return svc
}

// Signer returns the token signer.
func (s *Service) Signer() *Signer { return s.signer }

var errBadCredentials = errs.Unauthenticated(errs.CodeInvalidCredentials, "the email or password is wrong")

// checkPassword is the one password check of tenant users (login and the
// service API alike). ok is true only for a user that has a password and
// gave it; an unknown user, or a federated one without a password, is
// checked against a dummy hash so the time taken tells nothing. The hash is
// verified outside any transaction: argon2id takes tens of milliseconds of
// CPU, and on SQLite a transaction holds the one write lock all that time.
// Callers that then write re-read the user in their transaction and call
// stillSame, so a password changed meanwhile is not honoured.
func (s *Service) checkPassword(ctx context.Context, email, password string) (u User, ok bool, err error) {
	err = s.store.Tx(ctx, func(tx *gorm.DB) error {
		if err := tx.Where("email = ? AND status <> ?", email, StatusDeleted).Take(&u).Error; err != nil && !store.IsNotFound(err) {
			return err
		}
		return nil
	})
	if err != nil {
		return u, false, err
	}
	found := u.ID != "" && u.PasswordHash != nil
	hash := s.dummyHash
	if found {
		hash = *u.PasswordHash
	}
	match, _ := VerifyPassword(password, hash)
	return u, found && match, nil
}

// stillSame re-reads, inside tx, the user a password was checked for, and
// reports whether it still has that password (a change or a removal in
// between voids the check); cur is its current row.
func stillSame(tx *gorm.DB, checked User) (cur User, same bool, err error) {
	err = tx.Where("id = ?", checked.ID).Take(&cur).Error
	if store.IsNotFound(err) {
		return cur, false, nil
	}
	if err != nil {
		return cur, false, err
	}
	same = cur.PasswordHash != nil && checked.PasswordHash != nil && *cur.PasswordHash == *checked.PasswordHash
	return cur, same, nil
}

// Login checks a tenant user's password (the tenant comes from ctx's scope)
// and, when the user has two-factor authentication on, the one-time code,
// then starts a session. Every attempt is audited; repeated failures lock
// the account (and the source address) out for a growing time.
func (s *Service) Login(ctx context.Context, email, password, code string) (*User, *Tokens, error) {
	email = NormalizeEmail(email)
	tenantID := store.TenantFrom(ctx)
	acctKey := "login:acct:" + tenantID + ":" + email
	if err := s.checkLockout(ctx, acctKey); err != nil {
		return nil, nil, err
	}
	var user *User
	var tokens *Tokens
	var failure error
	counted := false // whether the failure counts toward a lockout
	checked, ok, err := s.checkPassword(ctx, email, password)
	if err != nil {
		return nil, nil, errs.Internal(err, "log in")
	}
	err = s.store.Tx(ctx, func(tx *gorm.DB) error {
		u := checked
		if ok {
			var err error
			var same bool
			if u, same, err = stillSame(tx, checked); err != nil {
				return err
			}
			ok = same
		}
		reason := ""
		amr := []string{"pwd"}
		switch {
		case !ok:
			reason, failure, counted = "bad_credentials", errBadCredentials, true
		case u.Status != StatusActive:
			reason = "account_" + u.Status
			failure = errs.Forbidden(errs.CodeForbidden, "this account is %s; ask an admin of your organisation", u.Status)
		case u.TOTPEnabledAt != nil && strings.TrimSpace(code) == "":
			return (error)(nil) // not a failure: ask for the code
		case u.TOTPEnabledAt != nil:
			good, err := s.verifySecondFactor(tx, &u, code)
			if err != nil {
				return err
			}
			if !good {
				reason, counted = "bad_second_factor", true
				failure = errs.Unauthenticated(errs.CodeInvalidCredentials, "the one-time code is wrong or was already used")
			} else {
				amr = append(amr, "otp")
			}
		}
		if failure != nil {
			meta := map[string]any{"email": email, "reason": reason}
			return audit.Record(ctx, tx, audit.Entry{TenantID: tenantID, EventType: "auth.login_failed", Resource: "session",
				ResourceID: u.ID, Action: "login", Outcome: audit.Failure, Metadata: meta})
		}
		now := s.now()
		if err := tx.Model(&u).Update("last_login_at", now).Error; err != nil {
			return err
		}
		u.LastLoginAt = &now
		user = u.fill()
		c := userClaims(user, "")
		c.AMR = amr
		var err2 error
		if tokens, err2 = s.tokens(ctx, tx, c, user.TenantID, SubjectUser); err2 != nil {
			return err2
		}
		return audit.Record(actor.With(ctx, userActor(ctx, user)), tx, audit.Entry{TenantID: tenantID, EventType: "auth.login",
			Resource: "session", ResourceID: user.ID, Action: "login", Metadata: map[string]any{"amr": amr}})
	})
	if err != nil {
		return nil, nil, errs.Internal(err, "log in")
	}
	if failure != nil {
		if counted {
			s.recordFailure(ctx, acctKey, tenantID, email)
		}
		return nil, nil, failure
	}
	if user == nil {
		return nil, nil, errs.Unauthenticated(CodeMFARequired, "this account uses two-factor authentication: send the code from your authenticator app (or a recovery code) as otp")
	}
	_ = s.kv.Del(ctx, "fail:"+acctKey)
	return user, tokens, nil
}

// checkLockout refuses an attempt while the account or the source address is locked out.
func (s *Service) checkLockout(ctx context.Context, acctKey string) error {
	keys := []string{"lock:" + acctKey}
	if a := actor.From(ctx); a != nil && a.SourceIP != "" && a.Type != actor.TypeService {
		keys = append(keys, "lock:login:ip:"+a.SourceIP)
	}
	for _, k := range keys {
		ttl, err := s.kv.TTL(ctx, k)
		if err != nil {
			// Only with the fail-closed policy: fail-open gives this service a
			// store that falls back to memory (kv.Fallback), so this never fails.
			return &errs.Error{Kind: errs.KindUnavailable, Code: errs.CodeServiceUnavailable, RetryAfter: 1, Err: err,
				Msg: "login protection is unavailable (its shared store does not answer) and this server refuses logins meanwhile; try again shortly"}
		}
		if ttl > 0 {
			secs := int((ttl + time.Second - 1) / time.Second)
			return &errs.Error{Kind: errs.KindRateLimited, Code: errs.CodeRateLimited, RetryAfter: secs,
				Msg: fmt.Sprintf("too many failed sign-in attempts; try again in %d seconds", secs)}
		}
	}
	return nil
}

// recordFailure counts a failed attempt and locks out when a threshold is crossed.
func (s *Service) recordFailure(ctx context.Context, acctKey, tenantID, email string) {
	lock := func(key string, n, after int64, what string) {
		if n < after {
			return
		}
		d := s.lockout.Base << min(n-after, 20)
		if d > s.lockout.Max || d <= 0 {
			d = s.lockout.Max
		}
		if err := s.kv.SetTTL(ctx, "lock:"+key, d); err != nil {
			return
		}
		_ = s.store.Tx(store.WithTenant(ctx, tenantID), func(tx *gorm.DB) error {
			return audit.Record(ctx, tx, audit.Entry{TenantID: tenantID, EventType: "auth.login_locked", Resource: "session",
				Action: "lock", Outcome: audit.Failure, Metadata: map[string]any{"email": email, "scope": what, "failures": n,
					"lockedForSeconds": int(d.Seconds())}})
		})
	}
	if n, err := s.kv.Incr(ctx, "fail:"+acctKey, s.lockout.Window); err == nil {
		lock(acctKey, n, s.lockout.AccountAfter, "account")
	}
	// A service validating for many users shares one address: count accounts only.
	if a := actor.From(ctx); a != nil && a.SourceIP != "" && a.Type != actor.TypeService {
		ipKey := "login:ip:" + a.SourceIP
		if n, err := s.kv.Incr(ctx, "fail:"+ipKey, s.lockout.Window); err == nil {
			lock(ipKey, n, s.lockout.IPAfter, "address")
		}
	}
}

// userActor is the actor a just-authenticated user acts as.
func userActor(ctx context.Context, u *User) *actor.Actor {
	a := &actor.Actor{Type: actor.TypeUser, ID: u.ID, TenantID: u.TenantID, Email: u.Email, Username: u.Username, Roles: u.Roles}
	if prev := actor.From(ctx); prev != nil {
		a.SourceIP, a.UserAgent, a.RequestID = prev.SourceIP, prev.UserAgent, prev.RequestID
	}
	return a
}

// PermanentRoles returns a user's built-in roles and whether the user is
// active, for the RBAC engine.
func (s *Service) PermanentRoles(ctx context.Context, userID string) ([]string, bool, error) {
	if !store.ValidID(userID) {
		return nil, false, nil
	}
	var roles []string
	var active bool
	err := s.store.Tx(ctx, func(tx *gorm.DB) error {
		var err error
		roles, active, err = s.PermanentRolesTx(tx, userID)
		return err
	})
	return roles, active, err
}

// PermanentRolesTx is PermanentRoles read through tx, the transaction the
// caller is in.
func (s *Service) PermanentRolesTx(tx *gorm.DB, userID string) ([]string, bool, error) {
	if !store.ValidID(userID) {
		return nil, false, nil
	}
	var u User
	err := tx.Select("id", "roles", "status").Where("id = ?", userID).Take(&u).Error
	if store.IsNotFound(err) {
		return nil, false, nil
	}
	if err != nil {
		return nil, false, err
	}
	return u.Roles, u.Status == StatusActive, nil
}

// CheckCredentials validates a tenant user's email and password for another
// service (the tenant comes from ctx's scope), with the same lockout and
// audit as a login, but starts no session.
func (s *Service) CheckCredentials(ctx context.Context, email, password string) (*User, error) {
	email = NormalizeEmail(email)
	tenantID := store.TenantFrom(ctx)
	acctKey := "login:acct:" + tenantID + ":" + email
	if err := s.checkLockout(ctx, acctKey); err != nil {
		return nil, err
	}
	var user *User
	checked, ok, err := s.checkPassword(ctx, email, password)
	if err != nil {
		return nil, errs.Internal(err, "validate credentials")
	}
	err = s.store.Tx(ctx, func(tx *gorm.DB) error {
		u := checked
		if ok {
			var err error
			if u, ok, err = stillSame(tx, checked); err != nil {
				return err
			}
		}
		if !ok || u.Status != StatusActive {
			return audit.Record(ctx, tx, audit.Entry{TenantID: tenantID, EventType: "auth.credentials_rejected", Resource: "user",
				ResourceID: u.ID, Action: "validate", Outcome: audit.Failure, Metadata: map[string]any{"email": email}})
		}
		user = u.fill()
		return nil
	})
	if err != nil {
		return nil, errs.Internal(err, "validate credentials")
	}
	if user == nil {
		s.recordFailure(ctx, acctKey, tenantID, email)
		return nil, nil
	}
	_ = s.kv.Del(ctx, "fail:"+acctKey)
	return user, nil
}

// RevokeUserSessions ends every session of a user (for another service).
func (s *Service) RevokeUserSessions(ctx context.Context, userID, reason string) (int, error) {
	var ended []string
	err := s.store.Tx(ctx, func(tx *gorm.DB) error {
		var err error
		if ended, err = revokeSubjectTx(tx, userID, "service:"+reason, s.now()); err != nil {
			return err
		}
		return audit.Record(ctx, tx, audit.Entry{EventType: "session.revoked_all", Resource: "user", ResourceID: userID, Action: "revoke",
			Metadata: map[string]any{"reason": reason, "sessions": len(ended)}})
	})
	if err != nil {
		return 0, errs.Internal(err, "revoke sessions")
	}
	s.markRevoked(ended...)
	return len(ended), nil
}

// FindUser reads a user by id in any tenant (platform scope): the service
// API's lookup, which does not know the tenant.
func (s *Service) FindUser(ctx context.Context, userID string) (*User, error) {
	return store.Read(store.WithPlatform(ctx, "service user lookup"), s.store, func(tx *gorm.DB) (*User, error) { return s.getTx(tx, userID) })
}

// CountUsersTx counts the tenant's users that take a seat (all but deleted).
func CountUsersTx(tx *gorm.DB) (int64, error) {
	var n int64
	err := tx.Model(&User{}).Where("status <> ?", StatusDeleted).Count(&n).Error
	return n, err
}

// CountAPIKeysTx counts the tenant's unrevoked API keys.
func CountAPIKeysTx(tx *gorm.DB) (int64, error) {
	var n int64
	err := tx.Model(&APIKey{}).Where("revoked_at IS NULL").Count(&n).Error
	return n, err
}
