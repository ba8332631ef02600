-- +goose Up
CREATE TABLE identity_providers (
    tenant_id       TEXT NOT NULL REFERENCES tenants (id),
    id              TEXT NOT NULL,
    name            TEXT NOT NULL,
    issuer          TEXT NOT NULL,
    client_id       TEXT NOT NULL,
    client_secret   TEXT NOT NULL,
    scopes          TEXT NOT NULL DEFAULT '["openid","email","profile"]',
    claim_email     TEXT NOT NULL DEFAULT 'email',
    claim_name      TEXT NOT NULL DEFAULT 'name',
    claim_roles     TEXT NOT NULL DEFAULT '',
    allowed_domains TEXT NOT NULL DEFAULT '[]',
    jit             BOOLEAN NOT NULL DEFAULT 1,
    default_role    TEXT NOT NULL DEFAULT 'user',
    enabled         BOOLEAN NOT NULL DEFAULT 1,
    created_at      DATETIME NOT NULL,
    updated_at      DATETIME NOT NULL,
    PRIMARY KEY (tenant_id, id)
);
CREATE UNIQUE INDEX identity_providers_issuer_uq ON identity_providers (tenant_id, issuer, client_id);

CREATE TABLE identity_links (
    tenant_id     TEXT NOT NULL,
    id            TEXT NOT NULL,
    issuer        TEXT NOT NULL,
    subject       TEXT NOT NULL,
    user_id       TEXT NOT NULL,
    email         TEXT NOT NULL DEFAULT '',
    created_at    DATETIME NOT NULL,
    last_login_at DATETIME,
    PRIMARY KEY (tenant_id, id),
    FOREIGN KEY (tenant_id, user_id) REFERENCES users (tenant_id, id)
);
CREATE UNIQUE INDEX identity_links_subject_uq ON identity_links (tenant_id, issuer, subject);
CREATE INDEX identity_links_user_idx ON identity_links (tenant_id, user_id);

CREATE UNIQUE INDEX tenants_external_org_idx ON tenants (external_org_id) WHERE external_org_id IS NOT NULL;

-- +goose Down
DROP INDEX tenants_external_org_idx;
DROP TABLE identity_links;
DROP TABLE identity_providers;
