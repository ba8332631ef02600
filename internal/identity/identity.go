// Package identity owns who can sign in: tenant users, platform operators,
// passwords (argon2id), sessions with rotating refresh tokens, and the
// EdDSA-signed access tokens with their public JWKS.
package identity

import (
	"context"
	"time"

	"gorm.io/gorm"

	"github.com/tenantgate/tenantgate/internal/actor"
	"github.com/tenantgate/tenantgate/internal/audit"
	"github.com/tenantgate/tenantgate/internal/errs"
	"github.com/tenantgate/tenantgate/internal/store"
)

// Service is the identity service.
type Service struct {
	store     *store.Store
	signer    *Signer
	pw        PasswordParams
	now       func() time.Time
	dummyHash string // verified against when an account does not exist, so timing tells nothing
	keys      keyCache
	revoked   revocations
}

// New builds the service.
func New(s *store.Store, signer *Signer, pw PasswordParams) *Service {
	dummy, err := HashPassword("not-a-real-password-1", pw)
	if err != nil {
		panic(err)
	}
	return &Service{store: s, signer: signer, pw: pw, now: func() time.Time { return time.Now().UTC() }, dummyHash: dummy}
}

// Signer returns the token signer.
func (s *Service) Signer() *Signer { return s.signer }

var errBadCredentials = errs.Unauthenticated(errs.CodeInvalidCredentials, "the email or password is wrong")

// Login checks a tenant user's password (the tenant comes from ctx's scope)
// and starts a session. Every attempt, good or bad, is audited.
func (s *Service) Login(ctx context.Context, email, password string) (*User, *Tokens, error) {
	email = NormalizeEmail(email)
	tenantID := store.TenantFrom(ctx)
	var user *User
	var tokens *Tokens
	var failure error
	err := s.store.Tx(ctx, func(tx *gorm.DB) error {
		var u User
		err := tx.Where("email = ? AND status <> ?", email, StatusDeleted).Take(&u).Error
		if err != nil && !store.IsNotFound(err) {
			return err
		}
		found := err == nil && u.PasswordHash != nil
		hash := s.dummyHash
		if found {
			hash = *u.PasswordHash
		}
		ok, _ := VerifyPassword(password, hash)
		reason := ""
		switch {
		case !found || !ok:
			reason, failure = "bad_credentials", errBadCredentials
		case u.Status != StatusActive:
			reason = "account_" + u.Status
			failure = errs.Forbidden(errs.CodeForbidden, "this account is %s; ask an admin of your organisation", u.Status)
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
		var err2 error
		if tokens, err2 = s.IssueUserTokensTx(ctx, tx, user); err2 != nil {
			return err2
		}
		return audit.Record(actor.With(ctx, userActor(ctx, user)), tx, audit.Entry{TenantID: tenantID, EventType: "auth.login",
			Resource: "session", ResourceID: user.ID, Action: "login"})
	})
	if err != nil {
		return nil, nil, errs.Internal(err, "log in")
	}
	if failure != nil {
		return nil, nil, failure
	}
	return user, tokens, nil
}

// userActor is the actor a just-authenticated user acts as.
func userActor(ctx context.Context, u *User) *actor.Actor {
	a := &actor.Actor{Type: actor.TypeUser, ID: u.ID, TenantID: u.TenantID, Email: u.Email, Username: u.Username, Roles: u.Roles}
	if prev := actor.From(ctx); prev != nil {
		a.SourceIP, a.UserAgent, a.RequestID = prev.SourceIP, prev.UserAgent, prev.RequestID
	}
	return a
}
