-- +goose Up
-- AI gateway: upstream channels (platform ones under the all-zero tenant id),
-- per-tenant gateway settings, and the request log.
CREATE TABLE ai_channels (
    tenant_id       uuid NOT NULL,
    id              uuid NOT NULL,
    name            text NOT NULL,
    provider        text NOT NULL,
    base_url        text NOT NULL DEFAULT '',
    keys_sealed     text NOT NULL,
    key_count       integer NOT NULL,
    headers_sealed  text NOT NULL DEFAULT '',
    models          jsonb NOT NULL DEFAULT '[]',
    model_mapping   jsonb NOT NULL DEFAULT '{}',
    plans           jsonb NOT NULL DEFAULT '[]',
    priority        integer NOT NULL DEFAULT 0,
    weight          integer NOT NULL DEFAULT 1,
    max_concurrency integer NOT NULL DEFAULT 0,
    timeout_ms      integer NOT NULL DEFAULT 0,
    proxy_url       text NOT NULL DEFAULT '',
    api_version     text NOT NULL DEFAULT '',
    status          text NOT NULL,
    status_reason   text NOT NULL DEFAULT '',
    status_at       timestamptz,
    created_at      timestamptz NOT NULL,
    updated_at      timestamptz NOT NULL,
    PRIMARY KEY (tenant_id, id)
);
CREATE UNIQUE INDEX ai_channels_name_idx ON ai_channels (tenant_id, name);

CREATE TABLE ai_settings (
    tenant_id          uuid NOT NULL PRIMARY KEY,
    store_content      boolean NOT NULL DEFAULT false,
    allow_unpriced     boolean NOT NULL DEFAULT false,
    byok_only          boolean NOT NULL DEFAULT false,
    redact_patterns    jsonb NOT NULL DEFAULT '[]',
    log_retention_days integer NOT NULL DEFAULT 90,
    updated_at         timestamptz NOT NULL
);

CREATE TABLE ai_request_logs (
    tenant_id         uuid NOT NULL,
    id                uuid NOT NULL,
    request_id        text NOT NULL DEFAULT '',
    user_id           text NOT NULL DEFAULT '',
    key_id            text NOT NULL DEFAULT '',
    channel_id        text NOT NULL DEFAULT '',
    byok              boolean NOT NULL DEFAULT false,
    op                text NOT NULL,
    model             text NOT NULL,
    upstream_model    text NOT NULL DEFAULT '',
    prompt_tokens     bigint NOT NULL DEFAULT 0,
    cached_tokens     bigint NOT NULL DEFAULT 0,
    completion_tokens bigint NOT NULL DEFAULT 0,
    cost_micros       bigint NOT NULL DEFAULT 0,
    latency_ms        integer NOT NULL DEFAULT 0,
    ttft_ms           integer,
    status            integer NOT NULL,
    error             text NOT NULL DEFAULT '',
    stream            boolean NOT NULL DEFAULT false,
    estimated         boolean NOT NULL DEFAULT false,
    attempts          integer NOT NULL DEFAULT 1,
    prompt            text,
    completion        text,
    created_at        timestamptz NOT NULL,
    PRIMARY KEY (tenant_id, id)
);
CREATE INDEX ai_request_logs_model_idx ON ai_request_logs (tenant_id, model, id);
CREATE INDEX ai_request_logs_key_idx ON ai_request_logs (tenant_id, key_id, id);
CREATE INDEX ai_request_logs_time_idx ON ai_request_logs (tenant_id, created_at);

SELECT tenantgate_enable_rls('ai_channels');
SELECT tenantgate_enable_rls('ai_settings');
SELECT tenantgate_enable_rls('ai_request_logs');

-- A key's own token rate for the gateway.
ALTER TABLE api_keys ADD COLUMN tokens_per_minute integer;

-- Token rate per plan for the gateway.
UPDATE plans SET limits = limits || jsonb_build_object('tokensPerMinute',
    CASE name WHEN 'free' THEN 10000 WHEN 'starter' THEN 100000 WHEN 'pro' THEN 1000000
              WHEN 'business' THEN 5000000 ELSE -1 END)
WHERE NOT limits ? 'tokensPerMinute';

-- +goose Down
ALTER TABLE api_keys DROP COLUMN tokens_per_minute;
UPDATE plans SET limits = limits - 'tokensPerMinute';
DROP TABLE ai_request_logs;
DROP TABLE ai_settings;
DROP TABLE ai_channels;
