package identity

import (
	"context"
	"strings"
	"time"

	"github.com/google/uuid"
	"gorm.io/gorm"

	"github.com/tenantgate/tenantgate/internal/actor"
	"github.com/tenantgate/tenantgate/internal/audit"
	"github.com/tenantgate/tenantgate/internal/errs"
	"github.com/tenantgate/tenantgate/internal/rbac"
	"github.com/tenantgate/tenantgate/internal/secret"
	"github.com/tenantgate/tenantgate/internal/store"
)

// Subject types of a session.
const (
	SubjectUser     = "user"
	SubjectOperator = "operator"
)

// refreshToken is one refresh token of a session. Each refresh marks the token
// used and issues the next one in the same session; presenting a used token
// again is treated as theft and ends the whole session.
type refreshToken struct {
	TenantID     string `gorm:"primaryKey"`
	ID           string `gorm:"primaryKey"`
	SessionID    string
	SubjectType  string
	SubjectID    string
	TokenHash    string
	Amr          string // space-separated authentication methods of the session
	ExpiresAt    time.Time
	UsedAt       *time.Time
	RevokedAt    *time.Time
	RevokeReason *string
	SourceIP     *string
	UserAgent    *string
	CreatedAt    time.Time
}

func (refreshToken) TableName() string { return "refresh_tokens" }
func (refreshToken) TenantOwned()      {}

// Refresh tokens read "tgr_" + the tenant id (32 hex digits; zeros for
// operators) + "_" + 43 characters of secret. Carrying the tenant lets the
// server open the right tenant scope before it looks the token up.
const refreshPrefix = "tgr_"

// RefreshTokenTenant returns the tenant id a refresh token belongs to
// (store.PlatformTenantID for operators), or false when it is malformed.
func RefreshTokenTenant(tok string) (string, bool) {
	rest, ok := strings.CutPrefix(tok, refreshPrefix)
	if !ok || len(rest) != 32+1+43 || rest[32] != '_' {
		return "", false
	}
	h := rest[:32]
	id := h[0:8] + "-" + h[8:12] + "-" + h[12:16] + "-" + h[16:20] + "-" + h[20:32]
	if !store.ValidID(id) {
		return "", false
	}
	return id, true
}

func (s *Service) newRefreshTx(ctx context.Context, tx *gorm.DB, tenantID, sessionID, subjType, subjID string, amr []string) (string, error) {
	tok := secret.Token(refreshPrefix + strings.ReplaceAll(tenantID, "-", "") + "_")
	now := s.now()
	a := actor.From(ctx)
	rt := refreshToken{TenantID: tenantID, ID: uuid.Must(uuid.NewV7()).String(), SessionID: sessionID, SubjectType: subjType,
		SubjectID: subjID, TokenHash: secret.Hash(tok), Amr: strings.Join(amrOrPwd(amr), " "), ExpiresAt: now.Add(s.signer.cfg.RefreshTTL), CreatedAt: now}
	if a != nil {
		rt.SourceIP, rt.UserAgent = emptyNil(a.SourceIP), emptyNil(truncate(a.UserAgent, 512))
	}
	if err := tx.Create(&rt).Error; err != nil {
		return "", errs.Internal(err, "store the refresh token")
	}
	return tok, nil
}

// truncate keeps at most n bytes of s, never cutting a character in half
// (PostgreSQL refuses invalid UTF-8).
func truncate(s string, n int) string {
	if len(s) > n {
		return strings.ToValidUTF8(s[:n], "")
	}
	return s
}

// userClaims are the access-token claims of a tenant user.
func userClaims(u *User, sessionID string) Claims {
	return Claims{Subject: u.ID, Tenant: u.TenantID, Username: u.Username, Email: u.Email, Roles: u.Roles,
		Permissions: rbac.PermissionsOf(u.Roles), SessionID: sessionID}
}

func operatorClaims(o *Operator, sessionID string) Claims {
	return Claims{Subject: o.ID, Username: o.Email, Email: o.Email, Roles: []string{rbac.RolePlatformAdmin},
		Permissions: []string{string(rbac.PlatformTenants), string(rbac.PlatformAudit)}, SessionID: sessionID}
}

func (s *Service) tokens(ctx context.Context, tx *gorm.DB, c Claims, tenantID, subjType string) (*Tokens, error) {
	if c.SessionID == "" {
		c.SessionID = uuid.Must(uuid.NewV7()).String()
	}
	c.AMR = amrOrPwd(c.AMR)
	refresh, err := s.newRefreshTx(ctx, tx, tenantID, c.SessionID, subjType, c.Subject, c.AMR)
	if err != nil {
		return nil, err
	}
	access, _, err := s.signer.Sign(c)
	if err != nil {
		return nil, errs.Internal(err, "sign the access token")
	}
	return &Tokens{AccessToken: access, RefreshToken: refresh, TokenType: "Bearer", ExpiresIn: int(s.signer.cfg.AccessTTL.Seconds())}, nil
}

// IssueUserTokensTx starts a session for u inside tx. amr says how the user
// authenticated ("pwd" when empty).
func (s *Service) IssueUserTokensTx(ctx context.Context, tx *gorm.DB, u *User, amr ...string) (*Tokens, error) {
	c := userClaims(u, "")
	c.AMR = amr
	return s.tokens(ctx, tx, c, u.TenantID, SubjectUser)
}

// sessionScope is the scope of work on a session of tenantID: the tenant's,
// or for an operator's session (store.PlatformTenantID) the platform
// tenant's on the platform role, the only role that may read operators.
func sessionScope(ctx context.Context, tenantID string) context.Context {
	if tenantID == store.PlatformTenantID {
		return store.WithTenantOnPlatform(ctx, tenantID, "operator session")
	}
	return store.WithTenant(ctx, tenantID)
}

var errBadRefresh = errs.Unauthenticated(errs.CodeTokenInvalid, "the refresh token is not valid; log in again")

// Refresh rotates a refresh token: the presented one is spent and a new pair
// is returned. A token presented a second time ends its session.
func (s *Service) Refresh(ctx context.Context, tok string) (*Tokens, error) {
	tenantID, ok := RefreshTokenTenant(tok)
	if !ok {
		return nil, errBadRefresh
	}
	ctx = sessionScope(ctx, tenantID)
	var out *Tokens
	var failure error
	var ended string
	err := s.store.Tx(ctx, func(tx *gorm.DB) error {
		var rt refreshToken
		if err := tx.Where("token_hash = ?", secret.Hash(tok)).Take(&rt).Error; err != nil {
			if store.IsNotFound(err) {
				failure = errBadRefresh
				return nil
			}
			return err
		}
		now := s.now()
		switch {
		case rt.RevokedAt != nil:
			failure = errs.Unauthenticated(errs.CodeTokenInvalid, "this session has ended; log in again")
			return nil
		case rt.UsedAt != nil:
			// Reuse of a spent token: someone else holds a copy. End the session
			// and keep that decision even though the request fails.
			if err := revokeSessionTx(tx, rt.SessionID, "refresh_token_reuse", now); err != nil {
				return err
			}
			ended = rt.SessionID
			failure = errs.Unauthenticated(errs.CodeTokenInvalid, "this refresh token was already used; the session has been ended for safety, log in again")
			return audit.Record(actor.With(ctx, &actor.Actor{Type: actor.Type(rt.SubjectType), ID: rt.SubjectID}), tx, audit.Entry{
				TenantID: tenantID, EventType: "session.reuse_detected", Resource: "session", ResourceID: rt.SessionID,
				Action: "revoke", Outcome: audit.Failure})
		case !now.Before(rt.ExpiresAt):
			failure = errs.Unauthenticated(errs.CodeTokenExpired, "the refresh token has expired; log in again")
			return nil
		}
		var claims Claims
		switch rt.SubjectType {
		case SubjectUser:
			u, err := s.getTx(tx, rt.SubjectID)
			if err != nil || u.Status != StatusActive {
				failure = errs.Unauthenticated(errs.CodeUnauthorized, "this account can no longer sign in")
				ended = rt.SessionID
				return revokeSessionTx(tx, rt.SessionID, "account_inactive", now)
			}
			claims = userClaims(u, rt.SessionID)
		case SubjectOperator:
			o, err := s.getOperatorTx(tx, rt.SubjectID)
			if err != nil || o.Status != StatusActive {
				failure = errs.Unauthenticated(errs.CodeUnauthorized, "this account can no longer sign in")
				ended = rt.SessionID
				return revokeSessionTx(tx, rt.SessionID, "account_inactive", now)
			}
			claims = operatorClaims(o, rt.SessionID)
		default:
			failure = errBadRefresh
			return nil
		}
		claims.AMR = strings.Fields(rt.Amr) // a refreshed session keeps how it was authenticated
		res := tx.Model(&refreshToken{}).Where("id = ? AND used_at IS NULL", rt.ID).Update("used_at", now)
		if res.Error != nil {
			return res.Error
		}
		if res.RowsAffected != 1 { // a concurrent refresh spent it first
			failure = errBadRefresh
			return nil
		}
		var err error
		out, err = s.tokens(ctx, tx, claims, tenantID, rt.SubjectType)
		return err
	})
	if err != nil {
		return nil, errs.Internal(err, "refresh the session")
	}
	if failure != nil {
		if ended != "" {
			s.markRevoked(ended) // reuse or a lost account ended the session
		}
		return nil, failure
	}
	return out, nil
}

// Logout ends the session a refresh token belongs to. Unknown tokens are
// ignored, so logout is idempotent.
func (s *Service) Logout(ctx context.Context, tok string) error {
	tenantID, ok := RefreshTokenTenant(tok)
	if !ok {
		return errBadRefresh
	}
	ctx = sessionScope(ctx, tenantID)
	var sid string
	err := s.store.Tx(ctx, func(tx *gorm.DB) error {
		var rt refreshToken
		if err := tx.Where("token_hash = ?", secret.Hash(tok)).Take(&rt).Error; err != nil {
			if store.IsNotFound(err) {
				return nil
			}
			return err
		}
		sid = rt.SessionID
		if err := revokeSessionTx(tx, rt.SessionID, "logout", s.now()); err != nil {
			return err
		}
		return audit.Record(ctx, tx, audit.Entry{TenantID: tenantID, EventType: "auth.logout", Resource: "session",
			ResourceID: rt.SessionID, Action: "logout"})
	})
	if err == nil && sid != "" {
		s.markRevoked(sid)
	}
	return err
}

// LogoutSession ends one session by id (from the access token's sid).
func (s *Service) LogoutSession(ctx context.Context, tenantID, sessionID string) error {
	ctx = sessionScope(ctx, tenantID)
	err := s.store.Tx(ctx, func(tx *gorm.DB) error {
		if err := revokeSessionTx(tx, sessionID, "logout", s.now()); err != nil {
			return err
		}
		return audit.Record(ctx, tx, audit.Entry{TenantID: tenantID, EventType: "auth.logout", Resource: "session",
			ResourceID: sessionID, Action: "logout"})
	})
	if err == nil {
		s.markRevoked(sessionID)
	}
	return err
}

// Session is one signed-in session (a chain of refresh tokens).
type Session struct {
	ID        string    `json:"id"`
	SourceIP  *string   `json:"sourceIp,omitempty"`
	UserAgent *string   `json:"userAgent,omitempty"`
	LastSeen  time.Time `json:"lastSeenAt"`
	ExpiresAt time.Time `json:"expiresAt"`
	Current   bool      `json:"current"`
}

// ListSessions lists the calling user's live sessions, most recent first.
func (s *Service) ListSessions(ctx context.Context) ([]Session, error) {
	a := actor.From(ctx)
	var rows []refreshToken
	err := s.store.Tx(ctx, func(tx *gorm.DB) error {
		return tx.Where("subject_id = ? AND revoked_at IS NULL AND used_at IS NULL AND expires_at > ?", a.ID, s.now()).
			Order("created_at DESC").Limit(200).Find(&rows).Error
	})
	if err != nil {
		return nil, errs.Internal(err, "list sessions")
	}
	out := make([]Session, 0, len(rows))
	for _, r := range rows {
		out = append(out, Session{ID: r.SessionID, SourceIP: r.SourceIP, UserAgent: r.UserAgent, LastSeen: r.CreatedAt,
			ExpiresAt: r.ExpiresAt, Current: r.SessionID == a.SessionID})
	}
	return out, nil
}

// RevokeOwnSession ends one of the calling user's sessions.
func (s *Service) RevokeOwnSession(ctx context.Context, sid string) error {
	a := actor.From(ctx)
	notFound := errs.NotFound(errs.CodeNotFound, "no session %q of yours", sid)
	if !store.ValidID(sid) {
		return notFound
	}
	err := s.store.Tx(ctx, func(tx *gorm.DB) error {
		res := tx.Model(&refreshToken{}).Where("session_id = ? AND subject_id = ? AND revoked_at IS NULL", sid, a.ID).
			Updates(map[string]any{"revoked_at": s.now(), "revoke_reason": "revoked_by_user"})
		if res.Error != nil {
			return res.Error
		}
		if res.RowsAffected == 0 {
			return notFound
		}
		return audit.Record(ctx, tx, audit.Entry{EventType: "session.revoked", Resource: "session", ResourceID: sid, Action: "revoke"})
	})
	if err != nil {
		return errs.Wrap(err, "revoke the session")
	}
	s.markRevoked(sid)
	return nil
}

func revokeSessionTx(tx *gorm.DB, sessionID, reason string, now time.Time) error {
	return tx.Model(&refreshToken{}).Where("session_id = ? AND revoked_at IS NULL", sessionID).
		Updates(map[string]any{"revoked_at": now, "revoke_reason": reason}).Error
}

// revokeSubjectTx ends every session of a user or operator and returns their ids.
func revokeSubjectTx(tx *gorm.DB, subjectID, reason string, now time.Time) ([]string, error) {
	var sids []string
	if err := tx.Model(&refreshToken{}).Distinct("session_id").Where("subject_id = ? AND revoked_at IS NULL", subjectID).
		Pluck("session_id", &sids).Error; err != nil {
		return nil, err
	}
	if len(sids) == 0 {
		return nil, nil
	}
	return sids, tx.Model(&refreshToken{}).Where("subject_id = ? AND revoked_at IS NULL", subjectID).
		Updates(map[string]any{"revoked_at": now, "revoke_reason": reason}).Error
}

func amrOrPwd(amr []string) []string {
	if len(amr) == 0 {
		return []string{"pwd"}
	}
	return amr
}

// ImpersonationTTL is how long an impersonation token lives; it has no refresh.
const ImpersonationTTL = 15 * time.Minute

// Impersonate issues an operator a short-lived access token acting as a user
// of the tenant in ctx. The token names the operator in its act claim, may be
// read-only, and its issue is audited in the tenant's log.
func (s *Service) Impersonate(ctx context.Context, userID string, readOnly bool, reason string) (*Tokens, *User, error) {
	a := actor.From(ctx)
	if !a.IsOperator() {
		return nil, nil, errs.Forbidden(errs.CodePermissionDenied, "only platform operators can impersonate")
	}
	if strings.TrimSpace(reason) == "" || len(reason) > 500 {
		return nil, nil, errs.Invalid("say why", map[string]string{"reason": "is required (1 to 500 characters); it is written to the tenant's audit log"})
	}
	var out *Tokens
	var user *User
	err := s.store.Tx(ctx, func(tx *gorm.DB) error {
		u, err := s.getTx(tx, userID)
		if err != nil {
			return err
		}
		if u.Status != StatusActive {
			return errs.Conflict(errs.CodeForbidden, "this user is %s and cannot be impersonated", u.Status)
		}
		c := userClaims(u, uuid.Must(uuid.NewV7()).String())
		c.Actor, c.ReadOnly, c.AMR = a.ID, readOnly, []string{"imp"}
		signer := *s.signer
		signer.cfg.AccessTTL = min(ImpersonationTTL, s.signer.cfg.AccessTTL)
		tok, _, err := signer.Sign(c)
		if err != nil {
			return err
		}
		out = &Tokens{AccessToken: tok, TokenType: "Bearer", ExpiresIn: int(signer.cfg.AccessTTL.Seconds())}
		user = u
		return audit.Record(ctx, tx, audit.Entry{EventType: "platform.impersonation_started", Resource: "user", ResourceID: u.ID,
			Action: "impersonate", Metadata: map[string]any{"reason": reason, "readOnly": readOnly, "sessionId": c.SessionID}})
	})
	if err != nil {
		return nil, nil, errs.Wrap(err, "impersonate")
	}
	return out, user, nil
}
