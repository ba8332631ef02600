package identity

import (
	"context"
	"crypto/rand"
	"fmt"
	"math/big"
	"strings"
	"time"

	"github.com/pquerna/otp"
	"github.com/pquerna/otp/totp"
	"gorm.io/gorm"

	"github.com/tenantgate/tenantgate/internal/actor"
	"github.com/tenantgate/tenantgate/internal/audit"
	"github.com/tenantgate/tenantgate/internal/errs"
	"github.com/tenantgate/tenantgate/internal/secret"
)

// TOTP parameters: RFC 6238 defaults (30 s steps, 6 digits, SHA-1), which
// every authenticator app supports; one step of clock skew either way.
const (
	totpPeriod = 30
	totpSkew   = 1
	recoveryN  = 10
)

// Codes in the error answers of two-factor authentication.
const (
	CodeMFARequired           = "MFA_REQUIRED"
	CodeMFAEnrollmentRequired = "MFA_ENROLLMENT_REQUIRED"
)

func (s *Service) sealTOTP(userID, secretB32 string) (string, error) {
	if s.box == nil {
		return "", errs.E(errs.KindUnavailable, errs.CodeServiceUnavailable, "two-factor authentication needs a master key on this server")
	}
	return s.box.Seal([]byte(secretB32), []byte("totp:"+userID)), nil
}

func (s *Service) openTOTP(userID, sealed string) (string, error) {
	if s.box == nil {
		return "", fmt.Errorf("no master key")
	}
	raw, err := s.box.Open(sealed, []byte("totp:"+userID))
	return string(raw), err
}

// checkTOTP validates a code and returns its time step; a step at or before
// lastStep is refused, so an intercepted code cannot be replayed.
func checkTOTP(secretB32, code string, now time.Time, lastStep int64) (int64, bool) {
	code = strings.TrimSpace(code)
	if len(code) != 6 {
		return 0, false
	}
	step := now.Unix() / totpPeriod
	for d := int64(-totpSkew); d <= totpSkew; d++ {
		st := step + d
		if st <= lastStep {
			continue
		}
		want, err := totp.GenerateCodeCustom(secretB32, time.Unix(st*totpPeriod, 0), totp.ValidateOpts{
			Period: totpPeriod, Digits: otp.DigitsSix, Algorithm: otp.AlgorithmSHA1})
		if err == nil && secret.Equal(want, code) {
			return st, true
		}
	}
	return 0, false
}

func newRecoveryCodes() (plain, hashed []string) {
	const alphabet = "abcdefghjkmnpqrstuvwxyz23456789"
	for i := 0; i < recoveryN; i++ {
		var b strings.Builder
		for j := 0; j < 10; j++ {
			if j == 5 {
				b.WriteByte('-')
			}
			n, _ := rand.Int(rand.Reader, big.NewInt(int64(len(alphabet))))
			b.WriteByte(alphabet[n.Int64()])
		}
		plain = append(plain, b.String())
		hashed = append(hashed, secret.Hash(b.String()))
	}
	return plain, hashed
}

// verifySecondFactor checks a TOTP code or an unused recovery code for u and
// records its use in tx. It reports whether the code was good.
func (s *Service) verifySecondFactor(tx *gorm.DB, u *User, code string) (bool, error) {
	if u.TOTPSecret == nil {
		return false, nil
	}
	code = strings.ToLower(strings.TrimSpace(code))
	if len(code) == 11 && code[5] == '-' { // a recovery code, spent on use
		h := secret.Hash(code)
		for i, c := range u.RecoveryCodes {
			if secret.Equal(c, h) {
				left := append(append([]string{}, u.RecoveryCodes[:i]...), u.RecoveryCodes[i+1:]...)
				// Compare-and-swap: of two sign-ins racing with one code, one wins.
				res := tx.Model(&User{}).Where("id = ? AND recovery_codes = ?", u.ID, jsonList(u.RecoveryCodes)).
					Update("recovery_codes", jsonList(left))
				if res.Error != nil {
					return false, res.Error
				}
				u.RecoveryCodes = left
				return res.RowsAffected == 1, nil
			}
		}
		return false, nil
	}
	sec, err := s.openTOTP(u.ID, *u.TOTPSecret)
	if err != nil {
		return false, err
	}
	step, ok := checkTOTP(sec, code, s.now(), u.TOTPLastStep)
	if !ok {
		return false, nil
	}
	// Only one sign-in may spend a time step, even two racing with the same code.
	res := tx.Model(&User{}).Where("id = ? AND totp_last_step < ?", u.ID, step).Update("totp_last_step", step)
	if res.Error != nil {
		return false, res.Error
	}
	u.TOTPLastStep = step
	return res.RowsAffected == 1, nil
}

// TOTPSetup is the answer of starting two-factor setup.
type TOTPSetup struct {
	Secret     string `json:"secret"`
	OTPAuthURL string `json:"otpauthUrl"`
}

// SetupTOTP creates a new, unconfirmed TOTP secret for the calling user;
// the current password is required so a stolen session cannot enrol.
func (s *Service) SetupTOTP(ctx context.Context, password, issuer string) (*TOTPSetup, error) {
	a := actor.From(ctx)
	var out *TOTPSetup
	err := s.store.Tx(ctx, func(tx *gorm.DB) error {
		u, err := s.getTx(tx, a.ID)
		if err != nil {
			return err
		}
		if ok, _ := VerifyPassword(password, deref(u.PasswordHash)); !ok {
			return errs.Invalid("the password is wrong", map[string]string{"password": "must be your current password"})
		}
		if u.TOTPEnabledAt != nil {
			return errs.Conflict("MFA_ALREADY_ENABLED", "two-factor authentication is already on; disable it first to change devices")
		}
		key, err := totp.Generate(totp.GenerateOpts{Issuer: issuer, AccountName: u.Email, Period: totpPeriod,
			Digits: otp.DigitsSix, Algorithm: otp.AlgorithmSHA1})
		if err != nil {
			return errs.Internal(err, "make a TOTP secret")
		}
		sealed, err := s.sealTOTP(u.ID, key.Secret())
		if err != nil {
			return err
		}
		if err := tx.Model(u).Update("totp_pending_secret", sealed).Error; err != nil {
			return err
		}
		out = &TOTPSetup{Secret: key.Secret(), OTPAuthURL: key.URL()}
		return nil
	})
	return out, err
}

// EnableTOTP confirms setup with a code from the app and returns the
// recovery codes, shown once.
func (s *Service) EnableTOTP(ctx context.Context, code string) ([]string, error) {
	a := actor.From(ctx)
	var codes []string
	err := s.store.Tx(ctx, func(tx *gorm.DB) error {
		u, err := s.getTx(tx, a.ID)
		if err != nil {
			return err
		}
		if u.TOTPEnabledAt != nil {
			return errs.Conflict("MFA_ALREADY_ENABLED", "two-factor authentication is already on")
		}
		if u.TOTPPendingSecret == nil {
			return errs.Conflict("MFA_NOT_SET_UP", "start with POST /api/v1/users/me/2fa/setup")
		}
		sec, err := s.openTOTP(u.ID, *u.TOTPPendingSecret)
		if err != nil {
			return errs.Internal(err, "open the TOTP secret")
		}
		step, ok := checkTOTP(sec, code, s.now(), 0)
		if !ok {
			return errs.Invalid("the code is wrong", map[string]string{"code": "must be the 6-digit code your app shows now"})
		}
		plain, hashed := newRecoveryCodes()
		now := s.now()
		if err := tx.Model(u).Updates(map[string]any{"totp_secret": *u.TOTPPendingSecret, "totp_pending_secret": nil,
			"totp_enabled_at": now, "totp_last_step": step, "recovery_codes": jsonList(hashed)}).Error; err != nil {
			return err
		}
		codes = plain
		return audit.Record(ctx, tx, audit.Entry{EventType: "user.2fa_enabled", Resource: "user", ResourceID: u.ID, Action: "update"})
	})
	return codes, err
}

// DisableTOTP turns two-factor authentication off for the calling user
// (password and a current code or recovery code required), or for a user
// of the tenant when admin is set (an admin resetting a lost device).
func (s *Service) DisableTOTP(ctx context.Context, userID, password, code string, admin bool) error {
	return s.store.Tx(ctx, func(tx *gorm.DB) error {
		u, err := s.getTx(tx, userID)
		if err != nil {
			return err
		}
		if admin {
			// The rank rules first: a caller who may not manage the user
			// learns nothing about their second factor.
			if err := s.mayManage(ctx, tx, u, false); err != nil {
				return err
			}
		}
		if u.TOTPEnabledAt == nil && u.TOTPPendingSecret == nil {
			return errs.Conflict("MFA_NOT_ENABLED", "two-factor authentication is not on for this user")
		}
		if !admin {
			f := errs.Fields{}
			if ok, _ := VerifyPassword(password, deref(u.PasswordHash)); !ok {
				f.Add("password", "must be your current password")
			}
			if u.TOTPEnabledAt != nil {
				if ok, err := s.verifySecondFactor(tx, u, code); err != nil {
					return err
				} else if !ok {
					f.Add("code", "must be a current code from your app or an unused recovery code")
				}
			}
			if err := f.Err(); err != nil {
				return err
			}
		}
		if err := tx.Model(u).Updates(map[string]any{"totp_secret": nil, "totp_pending_secret": nil, "totp_enabled_at": nil,
			"totp_last_step": 0, "recovery_codes": "[]"}).Error; err != nil {
			return err
		}
		return audit.Record(ctx, tx, audit.Entry{EventType: "user.2fa_disabled", Resource: "user", ResourceID: u.ID, Action: "update",
			Metadata: map[string]any{"byAdmin": admin}})
	})
}

func jsonList(xs []string) string {
	if len(xs) == 0 {
		return "[]"
	}
	return `["` + strings.Join(xs, `","`) + `"]` // hex hashes: no characters to escape
}

func deref(p *string) string {
	if p == nil {
		return ""
	}
	return *p
}
