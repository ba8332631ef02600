package identity

import (
	"context"
	"log/slog"
	"sync"
	"time"

	"gorm.io/gorm"

	"github.com/tenantgate/tenantgate/internal/store"
)

// revocations is the set of ended sessions whose access tokens may still be
// unexpired. Checking it costs no database round trip: this process adds a
// session the moment it ends one, and SyncRevocations reads the ones other
// processes ended.
type revocations struct {
	mu       sync.RWMutex
	sessions map[string]time.Time // session id → when its last access token expires
	since    time.Time            // high-water mark of the database poll
}

func (r *revocations) add(until time.Time, sids ...string) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.sessions == nil {
		r.sessions = map[string]time.Time{}
	}
	for _, sid := range sids {
		r.sessions[sid] = until
	}
}

func (r *revocations) has(sid string) bool {
	r.mu.RLock()
	defer r.mu.RUnlock()
	_, ok := r.sessions[sid]
	return ok
}

func (r *revocations) prune(now time.Time) {
	r.mu.Lock()
	defer r.mu.Unlock()
	for sid, until := range r.sessions {
		if now.After(until) {
			delete(r.sessions, sid)
		}
	}
}

// SessionRevoked reports whether an access token's session has ended.
func (s *Service) SessionRevoked(sid string) bool { return sid != "" && s.revoked.has(sid) }

// markRevoked records sessions this process just ended (after commit).
func (s *Service) markRevoked(sids ...string) {
	s.revoked.add(s.now().Add(s.signer.cfg.AccessTTL+time.Minute), sids...)
}

// SyncRevocations reads sessions ended since the last call, in every tenant.
func (s *Service) SyncRevocations(ctx context.Context) error {
	now := s.now()
	s.revoked.mu.RLock()
	since := s.revoked.since
	s.revoked.mu.RUnlock()
	if since.IsZero() {
		since = now.Add(-s.signer.cfg.AccessTTL - time.Minute)
	}
	type row struct{ SessionID string }
	var rows []row
	err := s.store.Tx(store.WithPlatform(ctx, "session revocation sync"), func(tx *gorm.DB) error {
		return tx.Model(&refreshToken{}).Distinct("session_id").Where("revoked_at >= ?", since.Add(-2*time.Second)).Scan(&rows).Error
	})
	if err != nil {
		return err
	}
	sids := make([]string, len(rows))
	for i, r := range rows {
		sids[i] = r.SessionID
	}
	s.revoked.add(now.Add(s.signer.cfg.AccessTTL+time.Minute), sids...)
	s.revoked.mu.Lock()
	s.revoked.since = now
	s.revoked.mu.Unlock()
	s.revoked.prune(now)
	return nil
}

// RunRevocationSync keeps the revocation set current until ctx ends.
func (s *Service) RunRevocationSync(ctx context.Context, every time.Duration, log *slog.Logger) {
	t := time.NewTicker(every)
	defer t.Stop()
	for {
		if err := s.SyncRevocations(ctx); err != nil && ctx.Err() == nil {
			log.Warn("could not read revoked sessions; will retry", "err", err)
		}
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
	}
}
