-- +goose Up
CREATE TABLE api_keys (
    tenant_id      uuid NOT NULL,
    id             uuid NOT NULL,
    user_id        uuid NOT NULL,
    name           text NOT NULL,
    prefix         text NOT NULL,
    secret_hash    text NOT NULL,
    scopes         jsonb NOT NULL DEFAULT '[]',
    ip_allowlist   jsonb NOT NULL DEFAULT '[]',
    allowed_models jsonb NOT NULL DEFAULT '[]',
    budget_micros  bigint,
    expires_at     timestamptz,
    last_used_at   timestamptz,
    revoked_at     timestamptz,
    created_at     timestamptz NOT NULL,
    PRIMARY KEY (tenant_id, id),
    FOREIGN KEY (tenant_id, user_id) REFERENCES users (tenant_id, id)
);
CREATE UNIQUE INDEX api_keys_hash_uq ON api_keys (tenant_id, secret_hash);
CREATE INDEX api_keys_user_idx ON api_keys (tenant_id, user_id);
ALTER TABLE api_keys ENABLE ROW LEVEL SECURITY;
ALTER TABLE api_keys FORCE ROW LEVEL SECURITY;
CREATE POLICY tenant_isolation ON api_keys
    USING (tenant_id = NULLIF(current_setting('app.tenant_id', true), '')::uuid
           OR current_setting('app.platform_scope', true) = 'on')
    WITH CHECK (tenant_id = NULLIF(current_setting('app.tenant_id', true), '')::uuid
           OR current_setting('app.platform_scope', true) = 'on');

-- +goose Down
DROP TABLE api_keys;
