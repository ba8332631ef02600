-- +goose Up
-- The plan catalogue (a platform table; operators edit it).
CREATE TABLE plans (
    name         TEXT PRIMARY KEY,
    display_name TEXT NOT NULL,
    features     TEXT NOT NULL DEFAULT '{}',
    limits       TEXT NOT NULL DEFAULT '{}',
    isolation    TEXT NOT NULL DEFAULT 'shared',
    paid         BOOLEAN NOT NULL DEFAULT 0,
    sort_order   INTEGER NOT NULL DEFAULT 0,
    updated_at   DATETIME NOT NULL
);
-- Per-tenant overrides of features and limits, set by operators.
ALTER TABLE tenants ADD COLUMN entitlement_overrides TEXT NOT NULL DEFAULT '{}';

INSERT INTO plans (name, display_name, features, limits, isolation, paid, sort_order, updated_at) VALUES
('free', 'Free',
 '{"apiAccess":false,"customDomain":false,"sso":false,"auditExport":false,"whiteLabel":false,"analytics":false,"byok":false,"dedicatedDatabase":false,"dedicatedInstance":false}',
 '{"users":5,"apiKeys":0,"roles":2,"customDomains":0,"webhooks":0,"storageBytes":104857600,"requestsPerMinute":60,"apiCallsPerHour":1000,"monthlyTokens":100000,"monthlyMessages":1000}',
 'shared', 0, 10, CURRENT_TIMESTAMP),
('starter', 'Starter',
 '{"apiAccess":true,"customDomain":false,"sso":false,"auditExport":false,"whiteLabel":false,"analytics":false,"byok":false,"dedicatedDatabase":false,"dedicatedInstance":false}',
 '{"users":20,"apiKeys":5,"roles":5,"customDomains":0,"webhooks":5,"storageBytes":1073741824,"requestsPerMinute":300,"apiCallsPerHour":10000,"monthlyTokens":1000000,"monthlyMessages":10000}',
 'shared', 1, 20, CURRENT_TIMESTAMP),
('pro', 'Professional',
 '{"apiAccess":true,"customDomain":true,"sso":true,"auditExport":true,"whiteLabel":false,"analytics":true,"byok":true,"dedicatedDatabase":false,"dedicatedInstance":false}',
 '{"users":100,"apiKeys":25,"roles":20,"customDomains":2,"webhooks":20,"storageBytes":10737418240,"requestsPerMinute":1200,"apiCallsPerHour":100000,"monthlyTokens":10000000,"monthlyMessages":50000}',
 'shared', 1, 30, CURRENT_TIMESTAMP),
('business', 'Business',
 '{"apiAccess":true,"customDomain":true,"sso":true,"auditExport":true,"whiteLabel":true,"analytics":true,"byok":true,"dedicatedDatabase":true,"dedicatedInstance":false}',
 '{"users":500,"apiKeys":100,"roles":100,"customDomains":5,"webhooks":100,"storageBytes":107374182400,"requestsPerMinute":6000,"apiCallsPerHour":1000000,"monthlyTokens":100000000,"monthlyMessages":500000}',
 'dedicated_db', 1, 40, CURRENT_TIMESTAMP),
('enterprise', 'Enterprise',
 '{"apiAccess":true,"customDomain":true,"sso":true,"auditExport":true,"whiteLabel":true,"analytics":true,"byok":true,"dedicatedDatabase":true,"dedicatedInstance":true}',
 '{"users":-1,"apiKeys":-1,"roles":-1,"customDomains":5,"webhooks":-1,"storageBytes":-1,"requestsPerMinute":30000,"apiCallsPerHour":-1,"monthlyTokens":-1,"monthlyMessages":-1}',
 'dedicated_instance', 1, 50, CURRENT_TIMESTAMP);

-- +goose Down
ALTER TABLE tenants DROP COLUMN entitlement_overrides;
DROP TABLE plans;
