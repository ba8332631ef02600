-- +goose Up
-- The platform's own rows in tenant tables (tenant_id all zeros: platform
-- channels and prices, operator sessions, platform audit events) belong to
-- the platform role: the server's role cannot read or write them even by
-- setting app.tenant_id to the zero id (SQL injected into tenant work could).
-- +goose StatementBegin
CREATE OR REPLACE FUNCTION tenantgate_enable_rls(tbl regclass) RETURNS void LANGUAGE plpgsql AS $$
BEGIN
    EXECUTE format('ALTER TABLE %s ENABLE ROW LEVEL SECURITY', tbl);
    EXECUTE format('ALTER TABLE %s FORCE ROW LEVEL SECURITY', tbl);
    EXECUTE format('DROP POLICY IF EXISTS tenant_isolation ON %s', tbl);
    EXECUTE format($p$CREATE POLICY tenant_isolation ON %s
        USING ((tenant_id = NULLIF(current_setting('app.tenant_id', true), '')::uuid
                AND (tenant_id <> '00000000-0000-0000-0000-000000000000'::uuid
                     OR current_user IN (SELECT rolname FROM platform_roles)))
               OR (current_setting('app.platform_scope', true) = 'on'
                   AND current_user IN (SELECT rolname FROM platform_roles)))
        WITH CHECK ((tenant_id = NULLIF(current_setting('app.tenant_id', true), '')::uuid
                AND (tenant_id <> '00000000-0000-0000-0000-000000000000'::uuid
                     OR current_user IN (SELECT rolname FROM platform_roles)))
               OR (current_setting('app.platform_scope', true) = 'on'
                   AND current_user IN (SELECT rolname FROM platform_roles)))$p$, tbl);
END
$$;
-- +goose StatementEnd
-- +goose StatementBegin
DO $$
DECLARE t regclass;
BEGIN
    FOR t IN SELECT format('%I.%I', schemaname, tablename)::regclass FROM pg_policies WHERE policyname = 'tenant_isolation' LOOP
        PERFORM tenantgate_enable_rls(t);
    END LOOP;
END
$$;
-- +goose StatementEnd

-- +goose Down
SELECT 1;
