-- +goose Up
CREATE TABLE usage_events (
    tenant_id   TEXT NOT NULL REFERENCES tenants (id),
    id          TEXT NOT NULL,
    meter       TEXT NOT NULL,
    value       INTEGER NOT NULL,
    occurred_at DATETIME NOT NULL,
    attributes  TEXT NOT NULL DEFAULT '{}',
    received_at DATETIME NOT NULL,
    PRIMARY KEY (tenant_id, id)
);
CREATE INDEX usage_events_meter_time_idx ON usage_events (tenant_id, meter, occurred_at);

CREATE TABLE usage_counters (
    tenant_id    TEXT NOT NULL,
    meter        TEXT NOT NULL,
    period       TEXT NOT NULL,
    period_start DATETIME NOT NULL,
    value        INTEGER NOT NULL,
    PRIMARY KEY (tenant_id, meter, period, period_start)
);

CREATE TABLE notifications (
    tenant_id      TEXT NOT NULL,
    id             TEXT NOT NULL,
    recipient_type TEXT NOT NULL,
    recipient_id   TEXT NOT NULL,
    channel        TEXT NOT NULL,
    subject        TEXT NOT NULL,
    content        TEXT NOT NULL,
    priority       TEXT NOT NULL,
    status         TEXT NOT NULL,
    metadata       TEXT NOT NULL DEFAULT '{}',
    created_at     DATETIME NOT NULL,
    PRIMARY KEY (tenant_id, id)
);

-- +goose Down
DROP TABLE notifications;
DROP TABLE usage_counters;
DROP TABLE usage_events;
