-- +goose Up
-- Same schema as postgres/00013_billing.sql.
CREATE TABLE billing_accounts (
    tenant_id                    TEXT NOT NULL REFERENCES tenants (id),
    balance_micros               INTEGER NOT NULL DEFAULT 0,
    low_balance_threshold_micros INTEGER,
    low_balance_notified         BOOLEAN NOT NULL DEFAULT FALSE,
    currency                     TEXT NOT NULL,
    revision                     INTEGER NOT NULL DEFAULT 0,
    updated_at                   DATETIME NOT NULL,
    PRIMARY KEY (tenant_id)
);

CREATE TABLE ledger_entries (
    tenant_id            TEXT NOT NULL REFERENCES tenants (id),
    id                   TEXT NOT NULL,
    kind                 TEXT NOT NULL CHECK (kind IN ('topup', 'redemption', 'usage', 'adjustment')),
    amount_micros        INTEGER NOT NULL,
    balance_after_micros INTEGER NOT NULL,
    reference            TEXT NOT NULL,
    description          TEXT NOT NULL DEFAULT '',
    actor                TEXT NOT NULL DEFAULT '',
    created_at           DATETIME NOT NULL,
    PRIMARY KEY (tenant_id, id),
    UNIQUE (tenant_id, kind, reference)
);
CREATE INDEX ledger_entries_kind_idx ON ledger_entries (tenant_id, kind, id);

CREATE TABLE key_spend (
    tenant_id    TEXT NOT NULL,
    key_id       TEXT NOT NULL,
    spent_micros INTEGER NOT NULL DEFAULT 0,
    revision     INTEGER NOT NULL DEFAULT 0,
    updated_at   DATETIME NOT NULL,
    PRIMARY KEY (tenant_id, key_id)
);

CREATE TABLE model_prices (
    tenant_id                    TEXT NOT NULL,
    model                        TEXT NOT NULL,
    input_per_mtok_micros        INTEGER NOT NULL,
    cached_input_per_mtok_micros INTEGER,
    output_per_mtok_micros       INTEGER NOT NULL,
    updated_at                   DATETIME NOT NULL,
    PRIMARY KEY (tenant_id, model)
);

CREATE TABLE redemption_codes (
    id                 TEXT PRIMARY KEY,
    batch_id           TEXT NOT NULL,
    code_hash          TEXT NOT NULL UNIQUE,
    last4              TEXT NOT NULL,
    amount_micros      INTEGER NOT NULL CHECK (amount_micros > 0),
    expires_at         DATETIME,
    note               TEXT NOT NULL DEFAULT '',
    created_by         TEXT NOT NULL DEFAULT '',
    created_at         DATETIME NOT NULL,
    disabled_at        DATETIME,
    redeemed_tenant_id TEXT,
    redeemed_at        DATETIME
);
CREATE INDEX redemption_codes_batch_idx ON redemption_codes (batch_id, id);
CREATE INDEX redemption_codes_redeemed_idx ON redemption_codes (redeemed_tenant_id);

-- +goose Down
DROP TABLE redemption_codes;
DROP TABLE model_prices;
DROP TABLE key_spend;
DROP TABLE ledger_entries;
DROP TABLE billing_accounts;
