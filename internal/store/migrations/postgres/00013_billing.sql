-- +goose Up
-- Billing: one account per tenant (its balance in micro-units), the ledger
-- every change of it is written to, per-key spend for key budgets, model
-- prices (platform prices under the all-zero tenant id, tenant overrides under
-- the tenant's), and redemption codes (a platform table, like tenants).
CREATE TABLE billing_accounts (
    tenant_id                    uuid NOT NULL REFERENCES tenants (id),
    balance_micros               bigint NOT NULL DEFAULT 0,
    low_balance_threshold_micros bigint,
    low_balance_notified         boolean NOT NULL DEFAULT false,
    currency                     text NOT NULL,
    -- revision grows by one with every change, so a process applies only
    -- newer states of the account to its in-memory copy.
    revision                     bigint NOT NULL DEFAULT 0,
    updated_at                   timestamptz NOT NULL,
    PRIMARY KEY (tenant_id)
);

CREATE TABLE ledger_entries (
    tenant_id            uuid NOT NULL REFERENCES tenants (id),
    id                   uuid NOT NULL,
    kind                 text NOT NULL CHECK (kind IN ('topup', 'redemption', 'usage', 'adjustment')),
    amount_micros        bigint NOT NULL,
    balance_after_micros bigint NOT NULL,
    reference            text NOT NULL,
    description          text NOT NULL DEFAULT '',
    actor                text NOT NULL DEFAULT '',
    created_at           timestamptz NOT NULL,
    PRIMARY KEY (tenant_id, id),
    -- The same top-up key, redeemed code or usage batch counts once.
    UNIQUE (tenant_id, kind, reference)
);
CREATE INDEX ledger_entries_kind_idx ON ledger_entries (tenant_id, kind, id);

CREATE TABLE key_spend (
    tenant_id    uuid NOT NULL,
    key_id       uuid NOT NULL,
    spent_micros bigint NOT NULL DEFAULT 0,
    revision     bigint NOT NULL DEFAULT 0, -- the account revision of the last change
    updated_at   timestamptz NOT NULL,
    PRIMARY KEY (tenant_id, key_id)
);

CREATE TABLE model_prices (
    tenant_id                    uuid NOT NULL,
    model                        text NOT NULL,
    input_per_mtok_micros        bigint NOT NULL,
    cached_input_per_mtok_micros bigint,
    output_per_mtok_micros       bigint NOT NULL,
    updated_at                   timestamptz NOT NULL,
    PRIMARY KEY (tenant_id, model)
);

CREATE TABLE redemption_codes (
    id                 uuid PRIMARY KEY,
    batch_id           uuid NOT NULL,
    code_hash          text NOT NULL UNIQUE,
    last4              text NOT NULL,
    amount_micros      bigint NOT NULL CHECK (amount_micros > 0),
    expires_at         timestamptz,
    note               text NOT NULL DEFAULT '',
    created_by         text NOT NULL DEFAULT '',
    created_at         timestamptz NOT NULL,
    disabled_at        timestamptz,
    redeemed_tenant_id uuid,
    redeemed_at        timestamptz
);
CREATE INDEX redemption_codes_batch_idx ON redemption_codes (batch_id, id);
CREATE INDEX redemption_codes_redeemed_idx ON redemption_codes (redeemed_tenant_id);

SELECT tenantgate_enable_rls('billing_accounts');
SELECT tenantgate_enable_rls('ledger_entries');
SELECT tenantgate_enable_rls('key_spend');
SELECT tenantgate_enable_rls('model_prices');

-- +goose Down
DROP TABLE redemption_codes;
DROP TABLE model_prices;
DROP TABLE key_spend;
DROP TABLE ledger_entries;
DROP TABLE billing_accounts;
