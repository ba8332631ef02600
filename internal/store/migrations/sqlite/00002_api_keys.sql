-- +goose Up
CREATE TABLE api_keys (
    tenant_id      TEXT NOT NULL,
    id             TEXT NOT NULL,
    user_id        TEXT NOT NULL,
    name           TEXT NOT NULL,
    prefix         TEXT NOT NULL,
    secret_hash    TEXT NOT NULL,
    scopes         TEXT NOT NULL DEFAULT '[]',
    ip_allowlist   TEXT NOT NULL DEFAULT '[]',
    allowed_models TEXT NOT NULL DEFAULT '[]',
    budget_micros  INTEGER,
    expires_at     DATETIME,
    last_used_at   DATETIME,
    revoked_at     DATETIME,
    created_at     DATETIME NOT NULL,
    PRIMARY KEY (tenant_id, id),
    FOREIGN KEY (tenant_id, user_id) REFERENCES users (tenant_id, id)
);
CREATE UNIQUE INDEX api_keys_hash_uq ON api_keys (tenant_id, secret_hash);
CREATE INDEX api_keys_user_idx ON api_keys (tenant_id, user_id);

-- +goose Down
DROP TABLE api_keys;
