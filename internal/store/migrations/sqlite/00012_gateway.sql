-- +goose Up
CREATE TABLE ai_channels (
    tenant_id       TEXT NOT NULL,
    id              TEXT NOT NULL,
    name            TEXT NOT NULL,
    provider        TEXT NOT NULL,
    base_url        TEXT NOT NULL DEFAULT '',
    keys_sealed     TEXT NOT NULL,
    key_count       INTEGER NOT NULL,
    headers_sealed  TEXT NOT NULL DEFAULT '',
    models          TEXT NOT NULL DEFAULT '[]',
    model_mapping   TEXT NOT NULL DEFAULT '{}',
    plans           TEXT NOT NULL DEFAULT '[]',
    priority        INTEGER NOT NULL DEFAULT 0,
    weight          INTEGER NOT NULL DEFAULT 1,
    max_concurrency INTEGER NOT NULL DEFAULT 0,
    timeout_ms      INTEGER NOT NULL DEFAULT 0,
    proxy_url       TEXT NOT NULL DEFAULT '',
    api_version     TEXT NOT NULL DEFAULT '',
    status          TEXT NOT NULL,
    status_reason   TEXT NOT NULL DEFAULT '',
    status_at       DATETIME,
    created_at      DATETIME NOT NULL,
    updated_at      DATETIME NOT NULL,
    PRIMARY KEY (tenant_id, id)
);
CREATE UNIQUE INDEX ai_channels_name_idx ON ai_channels (tenant_id, name);

CREATE TABLE ai_settings (
    tenant_id          TEXT NOT NULL PRIMARY KEY,
    store_content      BOOLEAN NOT NULL DEFAULT 0,
    allow_unpriced     BOOLEAN NOT NULL DEFAULT 0,
    byok_only          BOOLEAN NOT NULL DEFAULT 0,
    redact_patterns    TEXT NOT NULL DEFAULT '[]',
    log_retention_days INTEGER NOT NULL DEFAULT 90,
    updated_at         DATETIME NOT NULL
);

CREATE TABLE ai_request_logs (
    tenant_id         TEXT NOT NULL,
    id                TEXT NOT NULL,
    request_id        TEXT NOT NULL DEFAULT '',
    user_id           TEXT NOT NULL DEFAULT '',
    key_id            TEXT NOT NULL DEFAULT '',
    channel_id        TEXT NOT NULL DEFAULT '',
    byok              BOOLEAN NOT NULL DEFAULT 0,
    op                TEXT NOT NULL,
    model             TEXT NOT NULL,
    upstream_model    TEXT NOT NULL DEFAULT '',
    prompt_tokens     INTEGER NOT NULL DEFAULT 0,
    cached_tokens     INTEGER NOT NULL DEFAULT 0,
    completion_tokens INTEGER NOT NULL DEFAULT 0,
    cost_micros       INTEGER NOT NULL DEFAULT 0,
    latency_ms        INTEGER NOT NULL DEFAULT 0,
    ttft_ms           INTEGER,
    status            INTEGER NOT NULL,
    error             TEXT NOT NULL DEFAULT '',
    stream            BOOLEAN NOT NULL DEFAULT 0,
    estimated         BOOLEAN NOT NULL DEFAULT 0,
    attempts          INTEGER NOT NULL DEFAULT 1,
    prompt            TEXT,
    completion        TEXT,
    created_at        DATETIME NOT NULL,
    PRIMARY KEY (tenant_id, id)
);
CREATE INDEX ai_request_logs_model_idx ON ai_request_logs (tenant_id, model, id);
CREATE INDEX ai_request_logs_key_idx ON ai_request_logs (tenant_id, key_id, id);
CREATE INDEX ai_request_logs_time_idx ON ai_request_logs (tenant_id, created_at);

ALTER TABLE api_keys ADD COLUMN tokens_per_minute INTEGER;

UPDATE plans SET limits = json_set(limits, '$.tokensPerMinute',
    CASE name WHEN 'free' THEN 10000 WHEN 'starter' THEN 100000 WHEN 'pro' THEN 1000000
              WHEN 'business' THEN 5000000 ELSE -1 END)
WHERE json_extract(limits, '$.tokensPerMinute') IS NULL;

-- +goose Down
ALTER TABLE api_keys DROP COLUMN tokens_per_minute;
UPDATE plans SET limits = json_remove(limits, '$.tokensPerMinute');
DROP TABLE ai_request_logs;
DROP TABLE ai_settings;
DROP TABLE ai_channels;
