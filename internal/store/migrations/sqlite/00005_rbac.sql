-- +goose Up
CREATE TABLE roles (
    tenant_id      TEXT NOT NULL REFERENCES tenants (id),
    id             TEXT NOT NULL,
    name           TEXT NOT NULL,
    display_name   TEXT NOT NULL DEFAULT '',
    description    TEXT NOT NULL DEFAULT '',
    level          INTEGER NOT NULL DEFAULT 0,
    parent_role_id TEXT,
    grants         TEXT NOT NULL DEFAULT '[]',
    is_active      BOOLEAN NOT NULL DEFAULT 1,
    metadata       TEXT NOT NULL DEFAULT '{}',
    created_at     DATETIME NOT NULL,
    updated_at     DATETIME NOT NULL,
    PRIMARY KEY (tenant_id, id)
);
CREATE UNIQUE INDEX roles_tenant_name_uq ON roles (tenant_id, name);

CREATE TABLE user_roles (
    tenant_id   TEXT NOT NULL,
    id          TEXT NOT NULL,
    user_id     TEXT NOT NULL,
    role_id     TEXT NOT NULL,
    assigned_by TEXT NOT NULL,
    valid_from  DATETIME,
    valid_until DATETIME,
    is_active   BOOLEAN NOT NULL DEFAULT 1,
    metadata    TEXT NOT NULL DEFAULT '{}',
    created_at  DATETIME NOT NULL,
    PRIMARY KEY (tenant_id, id),
    FOREIGN KEY (tenant_id, user_id) REFERENCES users (tenant_id, id)
);
CREATE UNIQUE INDEX user_roles_uq ON user_roles (tenant_id, user_id, role_id);

-- +goose Down
DROP TABLE user_roles;
DROP TABLE roles;
