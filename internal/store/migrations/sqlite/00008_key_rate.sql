-- +goose Up
-- An API key's own request rate (per minute); NULL: only the tenant's plan rate applies.
ALTER TABLE api_keys ADD COLUMN rate_limit_per_minute integer;

-- +goose Down
ALTER TABLE api_keys DROP COLUMN rate_limit_per_minute;
