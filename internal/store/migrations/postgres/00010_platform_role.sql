-- +goose Up
-- Platform-wide access (operators, background jobs) needs more than the
-- app.platform_scope setting: the connected role must be registered here.
-- The server's tenant connection uses a role that is not, so SQL injected
-- into a tenant query cannot widen its own view by setting the flag.
CREATE TABLE platform_roles (rolname text PRIMARY KEY);

-- +goose StatementBegin
DO $$
DECLARE t text;
BEGIN
    FOREACH t IN ARRAY ARRAY['users', 'refresh_tokens', 'audit_events', 'api_keys', 'roles', 'user_roles',
                             'identity_providers', 'identity_links', 'usage_events', 'usage_counters', 'notifications'] LOOP
        EXECUTE format('DROP POLICY tenant_isolation ON %I', t);
        EXECUTE format($p$CREATE POLICY tenant_isolation ON %I
            USING (tenant_id = NULLIF(current_setting('app.tenant_id', true), '')::uuid
                   OR (current_setting('app.platform_scope', true) = 'on'
                       AND current_user IN (SELECT rolname FROM platform_roles)))
            WITH CHECK (tenant_id = NULLIF(current_setting('app.tenant_id', true), '')::uuid
                   OR (current_setting('app.platform_scope', true) = 'on'
                       AND current_user IN (SELECT rolname FROM platform_roles)))$p$, t);
    END LOOP;
END
$$;
-- +goose StatementEnd

-- +goose Down
-- +goose StatementBegin
DO $$
DECLARE t text;
BEGIN
    FOREACH t IN ARRAY ARRAY['users', 'refresh_tokens', 'audit_events', 'api_keys', 'roles', 'user_roles',
                             'identity_providers', 'identity_links', 'usage_events', 'usage_counters', 'notifications'] LOOP
        EXECUTE format('DROP POLICY tenant_isolation ON %I', t);
        EXECUTE format($p$CREATE POLICY tenant_isolation ON %I
            USING (tenant_id = NULLIF(current_setting('app.tenant_id', true), '')::uuid
                   OR current_setting('app.platform_scope', true) = 'on')
            WITH CHECK (tenant_id = NULLIF(current_setting('app.tenant_id', true), '')::uuid
                   OR current_setting('app.platform_scope', true) = 'on')$p$, t);
    END LOOP;
END
$$;
-- +goose StatementEnd
DROP TABLE platform_roles;
