-- The statement timeout of the role the functions connect as, in this database, set on the server.
--
-- It cannot travel as a startup parameter: RDS Proxy refuses any connection that carries
-- `options` ("Feature not supported: RDS Proxy currently doesn't support command-line options",
-- psycopg/psycopg2 issue 1577) and so does PgBouncer ("unsupported startup parameter: options"),
-- and a `SET` at the start of each session would pin every client to its own database connection
-- (AWS, "Avoiding pinning an RDS Proxy", PostgreSQL section). A role setting is applied by the
-- server when the proxy opens its connection, so it costs nothing per request.
--
-- A payment holds its row locks for about a millisecond: a statement still running after 5 s means
-- something is wrong, and cutting it off frees its locks and its connection. Scoped to this
-- database, so other databases on the same server (and the server's maintenance sessions) keep
-- their own settings. Migrations raise it for their own transaction (shared/migrate.py).
-- Connections the proxy opened before this ran keep the old value until they are replaced.
DO $$
BEGIN
    EXECUTE format('ALTER ROLE %I IN DATABASE %I SET statement_timeout = %L',
                   current_user, current_database(), '5s');
END
$$;
