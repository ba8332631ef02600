-- +goose Up
-- Same schema as postgres/00001_foundation.sql. SQLite has no row-level
-- security: on SQLite the application filter is the isolation.
CREATE TABLE tenants (
    id                   TEXT PRIMARY KEY,
    slug                 TEXT NOT NULL,
    name                 TEXT NOT NULL,
    status               TEXT NOT NULL,
    status_before_delete TEXT,
    plan                 TEXT NOT NULL,
    deployment_mode      TEXT NOT NULL DEFAULT 'shared',
    settings             TEXT NOT NULL DEFAULT '{}',
    branding             TEXT NOT NULL DEFAULT '{}',
    compliance           TEXT NOT NULL DEFAULT '{}',
    external_org_id      TEXT,
    trial_ends_at        DATETIME,
    created_at           DATETIME NOT NULL,
    updated_at           DATETIME NOT NULL,
    deleted_at           DATETIME,
    purge_at             DATETIME,
    purged_at            DATETIME
);
CREATE INDEX tenants_status_idx ON tenants (status, id);
CREATE INDEX tenants_plan_idx ON tenants (plan, id);

CREATE TABLE tenant_slugs (
    slug       TEXT PRIMARY KEY,
    tenant_id  TEXT NOT NULL REFERENCES tenants (id),
    kind       TEXT NOT NULL,
    expires_at DATETIME,
    created_at DATETIME NOT NULL
);
CREATE INDEX tenant_slugs_tenant_idx ON tenant_slugs (tenant_id);

CREATE TABLE tenant_domains (
    domain             TEXT PRIMARY KEY,
    tenant_id          TEXT NOT NULL REFERENCES tenants (id),
    verification_token TEXT NOT NULL,
    verified_at        DATETIME,
    created_at         DATETIME NOT NULL
);
CREATE INDEX tenant_domains_tenant_idx ON tenant_domains (tenant_id);

CREATE TABLE operators (
    id            TEXT PRIMARY KEY,
    email         TEXT NOT NULL UNIQUE,
    name          TEXT NOT NULL DEFAULT '',
    password_hash TEXT NOT NULL,
    status        TEXT NOT NULL,
    last_login_at DATETIME,
    created_at    DATETIME NOT NULL,
    updated_at    DATETIME NOT NULL
);

CREATE TABLE signing_keys (
    kid         TEXT PRIMARY KEY,
    alg         TEXT NOT NULL,
    private_key TEXT NOT NULL,
    public_jwk  TEXT NOT NULL,
    status      TEXT NOT NULL,
    created_at  DATETIME NOT NULL,
    retired_at  DATETIME
);

CREATE TABLE users (
    tenant_id           TEXT NOT NULL REFERENCES tenants (id),
    id                  TEXT NOT NULL,
    email               TEXT NOT NULL,
    username            TEXT NOT NULL,
    phone               TEXT,
    first_name          TEXT NOT NULL DEFAULT '',
    last_name           TEXT NOT NULL DEFAULT '',
    avatar              TEXT,
    status              TEXT NOT NULL,
    roles               TEXT NOT NULL DEFAULT '[]',
    password_hash       TEXT,
    password_changed_at DATETIME,
    last_login_at       DATETIME,
    created_at          DATETIME NOT NULL,
    updated_at          DATETIME NOT NULL,
    deleted_at          DATETIME,
    PRIMARY KEY (tenant_id, id)
);
CREATE UNIQUE INDEX users_tenant_email_uq ON users (tenant_id, email) WHERE status <> 'deleted';
CREATE UNIQUE INDEX users_tenant_username_uq ON users (tenant_id, username) WHERE status <> 'deleted';
CREATE INDEX users_tenant_status_idx ON users (tenant_id, status, id);

CREATE TABLE refresh_tokens (
    tenant_id     TEXT NOT NULL,
    id            TEXT NOT NULL,
    session_id    TEXT NOT NULL,
    subject_type  TEXT NOT NULL,
    subject_id    TEXT NOT NULL,
    token_hash    TEXT NOT NULL,
    expires_at    DATETIME NOT NULL,
    used_at       DATETIME,
    revoked_at    DATETIME,
    revoke_reason TEXT,
    source_ip     TEXT,
    user_agent    TEXT,
    created_at    DATETIME NOT NULL,
    PRIMARY KEY (tenant_id, id)
);
CREATE UNIQUE INDEX refresh_tokens_hash_uq ON refresh_tokens (tenant_id, token_hash);
CREATE INDEX refresh_tokens_session_idx ON refresh_tokens (tenant_id, session_id);
CREATE INDEX refresh_tokens_subject_idx ON refresh_tokens (tenant_id, subject_id);

CREATE TABLE audit_events (
    tenant_id   TEXT NOT NULL,
    id          TEXT NOT NULL,
    actor_type  TEXT NOT NULL,
    actor_id    TEXT,
    service_id  TEXT NOT NULL,
    event_type  TEXT NOT NULL,
    resource    TEXT NOT NULL,
    resource_id TEXT,
    action      TEXT NOT NULL,
    outcome     TEXT NOT NULL,
    occurred_at DATETIME NOT NULL,
    source_ip   TEXT,
    user_agent  TEXT,
    request_id  TEXT,
    metadata    TEXT,
    before_data TEXT,
    after_data  TEXT,
    PRIMARY KEY (tenant_id, id)
);
CREATE INDEX audit_events_tenant_time_idx ON audit_events (tenant_id, occurred_at);
CREATE INDEX audit_events_id_idx ON audit_events (id);

-- +goose Down
DROP TABLE audit_events;
DROP TABLE refresh_tokens;
DROP TABLE users;
DROP TABLE signing_keys;
DROP TABLE operators;
DROP TABLE tenant_domains;
DROP TABLE tenant_slugs;
DROP TABLE tenants;
