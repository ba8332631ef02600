-- +goose Up
-- Platform tables: looked up before a tenant is known (resolution, login of
-- operators, key material). They are not tenant-owned and carry no RLS.
CREATE TABLE tenants (
    id                   uuid PRIMARY KEY,
    slug                 text NOT NULL,
    name                 text NOT NULL,
    status               text NOT NULL,
    status_before_delete text,
    plan                 text NOT NULL,
    deployment_mode      text NOT NULL DEFAULT 'shared',
    settings             jsonb NOT NULL DEFAULT '{}',
    branding             jsonb NOT NULL DEFAULT '{}',
    compliance           jsonb NOT NULL DEFAULT '{}',
    external_org_id      text,
    trial_ends_at        timestamptz,
    created_at           timestamptz NOT NULL,
    updated_at           timestamptz NOT NULL,
    deleted_at           timestamptz,
    purge_at             timestamptz,
    purged_at            timestamptz
);
CREATE INDEX tenants_status_idx ON tenants (status, id);
CREATE INDEX tenants_plan_idx ON tenants (plan, id);

-- Every slug a tenant answers to: its current one and, for 30 days after a
-- rename, the old ones. One table keeps slugs globally unique across both.
CREATE TABLE tenant_slugs (
    slug       text PRIMARY KEY,
    tenant_id  uuid NOT NULL REFERENCES tenants (id),
    kind       text NOT NULL,
    expires_at timestamptz,
    created_at timestamptz NOT NULL
);
CREATE INDEX tenant_slugs_tenant_idx ON tenant_slugs (tenant_id);

CREATE TABLE tenant_domains (
    domain             text PRIMARY KEY,
    tenant_id          uuid NOT NULL REFERENCES tenants (id),
    verification_token text NOT NULL,
    verified_at        timestamptz,
    created_at         timestamptz NOT NULL
);
CREATE INDEX tenant_domains_tenant_idx ON tenant_domains (tenant_id);

CREATE TABLE operators (
    id            uuid PRIMARY KEY,
    email         text NOT NULL UNIQUE,
    name          text NOT NULL DEFAULT '',
    password_hash text NOT NULL,
    status        text NOT NULL,
    last_login_at timestamptz,
    created_at    timestamptz NOT NULL,
    updated_at    timestamptz NOT NULL
);

CREATE TABLE signing_keys (
    kid         text PRIMARY KEY,
    alg         text NOT NULL,
    private_key text NOT NULL, -- AES-GCM sealed under the master key
    public_jwk  text NOT NULL,
    status      text NOT NULL,
    created_at  timestamptz NOT NULL,
    retired_at  timestamptz
);

-- Tenant-owned tables: tenant_id NOT NULL, leading every key and index, and
-- row-level security that is forced even for the table owner.
CREATE TABLE users (
    tenant_id           uuid NOT NULL REFERENCES tenants (id),
    id                  uuid NOT NULL,
    email               text NOT NULL,
    username            text NOT NULL,
    phone               text,
    first_name          text NOT NULL DEFAULT '',
    last_name           text NOT NULL DEFAULT '',
    avatar              text,
    status              text NOT NULL,
    roles               jsonb NOT NULL DEFAULT '[]',
    password_hash       text,
    password_changed_at timestamptz,
    last_login_at       timestamptz,
    created_at          timestamptz NOT NULL,
    updated_at          timestamptz NOT NULL,
    deleted_at          timestamptz,
    PRIMARY KEY (tenant_id, id)
);
CREATE UNIQUE INDEX users_tenant_email_uq ON users (tenant_id, email) WHERE status <> 'deleted';
CREATE UNIQUE INDEX users_tenant_username_uq ON users (tenant_id, username) WHERE status <> 'deleted';
CREATE INDEX users_tenant_status_idx ON users (tenant_id, status, id);

-- Refresh tokens. Operators' live under the all-zero platform tenant id.
CREATE TABLE refresh_tokens (
    tenant_id     uuid NOT NULL,
    id            uuid NOT NULL,
    session_id    uuid NOT NULL,
    subject_type  text NOT NULL,
    subject_id    uuid NOT NULL,
    token_hash    text NOT NULL,
    expires_at    timestamptz NOT NULL,
    used_at       timestamptz,
    revoked_at    timestamptz,
    revoke_reason text,
    source_ip     text,
    user_agent    text,
    created_at    timestamptz NOT NULL,
    PRIMARY KEY (tenant_id, id)
);
CREATE UNIQUE INDEX refresh_tokens_hash_uq ON refresh_tokens (tenant_id, token_hash);
CREATE INDEX refresh_tokens_session_idx ON refresh_tokens (tenant_id, session_id);
CREATE INDEX refresh_tokens_subject_idx ON refresh_tokens (tenant_id, subject_id);

-- Audit events. Platform events (operator logins, ...) use the zero tenant id.
CREATE TABLE audit_events (
    tenant_id   uuid NOT NULL,
    id          uuid NOT NULL,
    actor_type  text NOT NULL,
    actor_id    text,
    service_id  text NOT NULL,
    event_type  text NOT NULL,
    resource    text NOT NULL,
    resource_id text,
    action      text NOT NULL,
    outcome     text NOT NULL,
    occurred_at timestamptz NOT NULL,
    source_ip   text,
    user_agent  text,
    request_id  text,
    metadata    jsonb,
    before_data jsonb,
    after_data  jsonb,
    PRIMARY KEY (tenant_id, id)
);
CREATE INDEX audit_events_tenant_time_idx ON audit_events (tenant_id, occurred_at);
CREATE INDEX audit_events_id_idx ON audit_events (id);

-- +goose StatementBegin
DO $$
DECLARE t text;
BEGIN
    FOREACH t IN ARRAY ARRAY['users', 'refresh_tokens', 'audit_events'] LOOP
        EXECUTE format('ALTER TABLE %I ENABLE ROW LEVEL SECURITY', t);
        EXECUTE format('ALTER TABLE %I FORCE ROW LEVEL SECURITY', t);
        EXECUTE format($p$CREATE POLICY tenant_isolation ON %I
            USING (tenant_id = NULLIF(current_setting('app.tenant_id', true), '')::uuid
                   OR current_setting('app.platform_scope', true) = 'on')
            WITH CHECK (tenant_id = NULLIF(current_setting('app.tenant_id', true), '')::uuid
                   OR current_setting('app.platform_scope', true) = 'on')$p$, t);
    END LOOP;
END
$$;
-- +goose StatementEnd

-- +goose Down
DROP TABLE audit_events;
DROP TABLE refresh_tokens;
DROP TABLE users;
DROP TABLE signing_keys;
DROP TABLE operators;
DROP TABLE tenant_domains;
DROP TABLE tenant_slugs;
DROP TABLE tenants;
