-- +goose Up
-- The one way to protect a new tenant table: future migrations call
--   SELECT tenantgate_enable_rls('my_table');
-- instead of repeating the policy (whose platform-role form is easy to get wrong).
-- +goose StatementBegin
CREATE FUNCTION tenantgate_enable_rls(tbl regclass) RETURNS void LANGUAGE plpgsql AS $$
BEGIN
    EXECUTE format('ALTER TABLE %s ENABLE ROW LEVEL SECURITY', tbl);
    EXECUTE format('ALTER TABLE %s FORCE ROW LEVEL SECURITY', tbl);
    EXECUTE format($p$CREATE POLICY tenant_isolation ON %s
        USING (tenant_id = NULLIF(current_setting('app.tenant_id', true), '')::uuid
               OR (current_setting('app.platform_scope', true) = 'on'
                   AND current_user IN (SELECT rolname FROM platform_roles)))
        WITH CHECK (tenant_id = NULLIF(current_setting('app.tenant_id', true), '')::uuid
               OR (current_setting('app.platform_scope', true) = 'on'
                   AND current_user IN (SELECT rolname FROM platform_roles)))$p$, tbl);
END
$$;
-- +goose StatementEnd

-- +goose Down
DROP FUNCTION tenantgate_enable_rls(regclass);
