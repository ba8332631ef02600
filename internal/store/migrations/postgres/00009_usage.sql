-- +goose Up
-- Metered usage events, idempotent on (tenant, id).
CREATE TABLE usage_events (
    tenant_id   uuid NOT NULL REFERENCES tenants (id),
    id          text NOT NULL,
    meter       text NOT NULL,
    value       bigint NOT NULL,
    occurred_at timestamptz NOT NULL,
    attributes  jsonb NOT NULL DEFAULT '{}',
    received_at timestamptz NOT NULL,
    PRIMARY KEY (tenant_id, id)
);
CREATE INDEX usage_events_meter_time_idx ON usage_events (tenant_id, meter, occurred_at);

-- Running totals of metered limits per period (hour or month).
CREATE TABLE usage_counters (
    tenant_id    uuid NOT NULL,
    meter        text NOT NULL,
    period       text NOT NULL,
    period_start timestamptz NOT NULL,
    value        bigint NOT NULL,
    PRIMARY KEY (tenant_id, meter, period, period_start)
);

-- Notification records (seed 004 NotificationMessage), sent by a later capability.
CREATE TABLE notifications (
    tenant_id      uuid NOT NULL,
    id             uuid NOT NULL,
    recipient_type text NOT NULL,
    recipient_id   text NOT NULL,
    channel        text NOT NULL,
    subject        text NOT NULL,
    content        text NOT NULL,
    priority       text NOT NULL,
    status         text NOT NULL,
    metadata       jsonb NOT NULL DEFAULT '{}',
    created_at     timestamptz NOT NULL,
    PRIMARY KEY (tenant_id, id)
);

-- +goose StatementBegin
DO $$
DECLARE t text;
BEGIN
    FOREACH t IN ARRAY ARRAY['usage_events', 'usage_counters', 'notifications'] LOOP
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
DROP TABLE notifications;
DROP TABLE usage_counters;
DROP TABLE usage_events;
