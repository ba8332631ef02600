-- +goose Up
-- Revoked sessions are polled across tenants by every server process so that
-- their access tokens are refused everywhere until they expire.
CREATE INDEX refresh_tokens_revoked_idx ON refresh_tokens (revoked_at) WHERE revoked_at IS NOT NULL;

-- +goose Down
DROP INDEX refresh_tokens_revoked_idx;
