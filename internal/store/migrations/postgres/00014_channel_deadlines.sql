-- +goose Up
-- How long a channel's answer may go without a byte once its headers came
-- (idle), and how long one call may last in all (0: the defaults).
ALTER TABLE ai_channels ADD COLUMN idle_timeout_ms INTEGER NOT NULL DEFAULT 0;
ALTER TABLE ai_channels ADD COLUMN max_duration_ms INTEGER NOT NULL DEFAULT 0;

-- +goose Down
ALTER TABLE ai_channels DROP COLUMN max_duration_ms;
ALTER TABLE ai_channels DROP COLUMN idle_timeout_ms;
