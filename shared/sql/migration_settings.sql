-- The migrator's own settings, for its transaction only (shared/migrate.py).
--
-- Set inside a function, as the request paths set theirs: a top-level SET or set_config would pin the
-- migrator's RDS Proxy session for as long as its client connection lives. The function has no SET
-- clause of its own (one would undo every setting made inside it when it returns), and it is never
-- called on a request path.

CREATE OR REPLACE FUNCTION pq_set_migration_timeout(timeout_ms integer) RETURNS void
LANGUAGE plpgsql AS $$
BEGIN
    -- is_local: both end with the migrator's transaction; the role's 5 s (0005_role_settings.sql) holds
    -- everywhere else. Each statement may take timeout_ms, and (PostgreSQL 17 and later) so may the
    -- whole transaction from here on, so that the migrations end inside the migrate function's own
    -- timeout however many statements they are.
    PERFORM set_config('statement_timeout', timeout_ms::text, true);
    IF current_setting('server_version_num')::integer >= 170000 THEN
        PERFORM set_config('transaction_timeout', timeout_ms::text, true);
    END IF;
END
$$;
