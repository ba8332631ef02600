package identity

import (
	"context"
	"time"

	"github.com/google/uuid"
	"gorm.io/gorm"

	"github.com/tenantgate/tenantgate/internal/actor"
	"github.com/tenantgate/tenantgate/internal/audit"
	"github.com/tenantgate/tenantgate/internal/errs"
	"github.com/tenantgate/tenantgate/internal/store"
)

// Operator is a platform operator: manages every tenant, belongs to none.
type Operator struct {
	ID           string     `gorm:"primaryKey" json:"id"`
	Email        string     `json:"email"`
	Name         string     `json:"name"`
	PasswordHash string     `json:"-"`
	Status       string     `json:"status"`
	LastLoginAt  *time.Time `json:"lastLoginAt,omitempty"`
	CreatedAt    time.Time  `json:"createdAt"`
	UpdatedAt    time.Time  `json:"updatedAt"`
}

// TableName maps Operator to operators.
func (Operator) TableName() string { return "operators" }

// ErrOperatorExists is returned when the email is taken.
var ErrOperatorExists = errs.Conflict(errs.CodeUserAlreadyExists, "an operator with this email already exists")

// CreateOperator adds a platform operator.
func (s *Service) CreateOperator(ctx context.Context, email, password, name string) (*Operator, error) {
	f := errs.Fields{}
	e := NormalizeEmail(email)
	if e == "" {
		f.Add("email", "must be a valid email address")
	}
	if p := CheckPassword(password, e); p != "" {
		f.Add("password", p)
	}
	name = f.Text("name", name, 0, 100)
	if err := f.Err(); err != nil {
		return nil, err
	}
	hash, err := HashPassword(password, s.pw)
	if err != nil {
		return nil, errs.Internal(err, "hash the password")
	}
	now := s.now()
	o := &Operator{ID: uuid.Must(uuid.NewV7()).String(), Email: e, Name: name, PasswordHash: hash, Status: StatusActive, CreatedAt: now, UpdatedAt: now}
	ctx = store.WithPlatform(ctx, "create operator")
	err = s.store.Tx(ctx, func(tx *gorm.DB) error {
		var n int64
		if err := tx.Model(&Operator{}).Where("email = ?", e).Count(&n).Error; err != nil {
			return err
		}
		if n > 0 {
			return ErrOperatorExists
		}
		if err := tx.Create(o).Error; err != nil {
			if store.IsUniqueViolation(err) {
				return ErrOperatorExists
			}
			return err
		}
		return audit.Record(ctx, tx, audit.Entry{TenantID: store.PlatformTenantID, EventType: "operator.created",
			Resource: "operator", ResourceID: o.ID, Action: "create", After: o})
	})
	if err != nil {
		return nil, errs.Wrap(err, "create the operator")
	}
	return o, nil
}

func (s *Service) getOperatorTx(tx *gorm.DB, id string) (*Operator, error) {
	var o Operator
	if err := tx.Where("id = ?", id).Take(&o).Error; err != nil {
		return nil, err
	}
	return &o, nil
}

// LoginOperator checks an operator's password and starts a platform session.
func (s *Service) LoginOperator(ctx context.Context, email, password string) (*Operator, *Tokens, error) {
	email = NormalizeEmail(email)
	ctx = sessionScope(ctx, store.PlatformTenantID) // operators are read and written by the platform role only
	var op *Operator
	var tokens *Tokens
	var failure error
	// The hash is verified between a short read and the write transaction,
	// never inside one (it takes tens of milliseconds of CPU); the write
	// re-reads the operator and honours the check only for the same hash.
	var checked Operator
	err := s.store.Tx(ctx, func(tx *gorm.DB) error {
		if err := tx.Where("email = ?", email).Take(&checked).Error; err != nil && !store.IsNotFound(err) {
			return err
		}
		return nil
	})
	if err != nil {
		return nil, nil, errs.Internal(err, "log in")
	}
	hash := s.dummyHash
	if checked.ID != "" {
		hash = checked.PasswordHash
	}
	match, _ := VerifyPassword(password, hash)
	err = s.store.Tx(ctx, func(tx *gorm.DB) error {
		var o Operator
		found := false
		if checked.ID != "" {
			err := tx.Where("id = ?", checked.ID).Take(&o).Error
			if err != nil && !store.IsNotFound(err) {
				return err
			}
			found = err == nil
		}
		if !found || !match || o.PasswordHash != checked.PasswordHash || o.Status != StatusActive {
			failure = errBadCredentials
			return audit.Record(ctx, tx, audit.Entry{EventType: "auth.login_failed", Resource: "operator_session",
				ResourceID: o.ID, Action: "login", Outcome: audit.Failure, Metadata: map[string]any{"email": email}})
		}
		now := s.now()
		if err := tx.Model(&o).Update("last_login_at", now).Error; err != nil {
			return err
		}
		o.LastLoginAt = &now
		op = &o
		var err error
		if tokens, err = s.tokens(ctx, tx, operatorClaims(op, ""), store.PlatformTenantID, SubjectOperator); err != nil {
			return err
		}
		a := &actor.Actor{Type: actor.TypeOperator, ID: o.ID, Email: o.Email}
		if prev := actor.From(ctx); prev != nil {
			a.SourceIP, a.UserAgent, a.RequestID = prev.SourceIP, prev.UserAgent, prev.RequestID
		}
		return audit.Record(actor.With(ctx, a), tx, audit.Entry{EventType: "auth.login", Resource: "operator_session",
			ResourceID: o.ID, Action: "login"})
	})
	if err != nil {
		return nil, nil, errs.Internal(err, "log in")
	}
	if failure != nil {
		return nil, nil, failure
	}
	return op, tokens, nil
}
