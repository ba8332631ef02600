-- +goose Up
ALTER TABLE users ADD COLUMN totp_secret text;          -- sealed under the master key
ALTER TABLE users ADD COLUMN totp_pending_secret text;  -- set up but not yet confirmed
ALTER TABLE users ADD COLUMN totp_enabled_at timestamptz;
ALTER TABLE users ADD COLUMN totp_last_step bigint NOT NULL DEFAULT 0; -- refuses a code twice
ALTER TABLE users ADD COLUMN recovery_codes jsonb NOT NULL DEFAULT '[]'; -- SHA-256 of each unused code
ALTER TABLE refresh_tokens ADD COLUMN amr text NOT NULL DEFAULT 'pwd';

-- +goose Down
ALTER TABLE refresh_tokens DROP COLUMN amr;
ALTER TABLE users DROP COLUMN recovery_codes;
ALTER TABLE users DROP COLUMN totp_last_step;
ALTER TABLE users DROP COLUMN totp_enabled_at;
ALTER TABLE users DROP COLUMN totp_pending_secret;
ALTER TABLE users DROP COLUMN totp_secret;
