-- +goose Up
-- A tenant's own OpenID Connect identity providers.
CREATE TABLE identity_providers (
    tenant_id       uuid NOT NULL REFERENCES tenants (id),
    id              uuid NOT NULL,
    name            text NOT NULL,
    issuer          text NOT NULL,
    client_id       text NOT NULL,
    client_secret   text NOT NULL, -- sealed under the master key
    scopes          jsonb NOT NULL DEFAULT '["openid","email","profile"]',
    claim_email     text NOT NULL DEFAULT 'email',
    claim_name      text NOT NULL DEFAULT 'name',
    claim_roles     text NOT NULL DEFAULT '',
    allowed_domains jsonb NOT NULL DEFAULT '[]',
    jit             boolean NOT NULL DEFAULT true,
    default_role    text NOT NULL DEFAULT 'user',
    enabled         boolean NOT NULL DEFAULT true,
    created_at      timestamptz NOT NULL,
    updated_at      timestamptz NOT NULL,
    PRIMARY KEY (tenant_id, id)
);
CREATE UNIQUE INDEX identity_providers_issuer_uq ON identity_providers (tenant_id, issuer, client_id);

-- Which external identity (issuer + subject) is which user (seed 000 §5.1.2).
CREATE TABLE identity_links (
    tenant_id     uuid NOT NULL,
    id            uuid NOT NULL,
    issuer        text NOT NULL,
    subject       text NOT NULL,
    user_id       uuid NOT NULL,
    email         text NOT NULL DEFAULT '',
    created_at    timestamptz NOT NULL,
    last_login_at timestamptz,
    PRIMARY KEY (tenant_id, id),
    FOREIGN KEY (tenant_id, user_id) REFERENCES users (tenant_id, id)
);
CREATE UNIQUE INDEX identity_links_subject_uq ON identity_links (tenant_id, issuer, subject);
CREATE INDEX identity_links_user_idx ON identity_links (tenant_id, user_id);

CREATE UNIQUE INDEX tenants_external_org_idx ON tenants (external_org_id) WHERE external_org_id IS NOT NULL;

-- +goose StatementBegin
DO $$
DECLARE t text;
BEGIN
    FOREACH t IN ARRAY ARRAY['identity_providers', 'identity_links'] LOOP
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
DROP INDEX tenants_external_org_idx;
DROP TABLE identity_links;
DROP TABLE identity_providers;
