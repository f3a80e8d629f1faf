-- Least privilege in the database (issue 21): a role per path, a login per function.
--
-- Until now every function logged in as the master user, which owns everything: enqueue could call the
-- payment function, status could write. From here the master user is the migrator's alone (it owns the
-- schema and the functions); each other function logs in as a role of its own that can do only what its
-- paths do. What each group may do lives in shared/sql/grants.sql, applied after the functions on every
-- migration (a function dropped and created again loses its grants; one replaced keeps them).
--
-- Group roles (NOLOGIN), one per path:
--   pq_enqueue    POST /v1/payments, POST /v1/checkouts: a shopper's intake
--   pq_line       DELETE /v1/payments/{job_id}: a shopper leaving the line
--   pq_status     every GET: reads, and nothing else
--   pq_webhook    POST /v1/webhooks/*: the gateways' word, recorded
--   pq_merchant   the shop backend's writes (POST /v1/merchant/orders, payments, wallet-adjustments)
--   pq_redeliver  POST /v1/merchant/events/{event_id}/redeliver
--   pq_operator   POST /v1/refunds/{refund_id}/retry
--   pq_processor  payments.fifo's consumer
--   pq_sweeper    the sweep every minute
-- Login roles, one per function (shared/db_roles.py names them; grants.sql makes each a member of the
-- groups of the routes it serves). On RDS they authenticate through RDS Proxy with IAM (end-to-end IAM
-- authentication: no password anywhere), which needs the rds_iam role; locally they exist all the same,
-- so that tests can log in as each function does.
--
-- Roles belong to the server, not to this database: a role another database of the same server made
-- first (the tests' template, a second environment) is taken as it is; two migrators racing to make it
-- are both fine.
DO $$
DECLARE
    r text;
BEGIN
    FOREACH r IN ARRAY ARRAY['pq_enqueue', 'pq_line', 'pq_status', 'pq_webhook', 'pq_merchant', 'pq_redeliver',
                             'pq_operator', 'pq_processor', 'pq_sweeper',
                             'pq_fn_enqueue', 'pq_fn_status', 'pq_fn_process_payment', 'pq_fn_sweeper'] LOOP
        IF NOT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = r) THEN
            BEGIN
                EXECUTE format('CREATE ROLE %I %s', r, CASE WHEN r LIKE 'pq\_fn\_%' THEN 'LOGIN' ELSE 'NOLOGIN' END);
            EXCEPTION WHEN duplicate_object OR unique_violation THEN
                NULL;  -- another database's migrator made it a moment ago
            END;
        END IF;
        IF r LIKE 'pq\_fn\_%' THEN
            -- "CREATE USER ... ; GRANT rds_iam TO ..." (Amazon RDS User Guide, "Creating a database account
            -- using IAM authentication", PostgreSQL): the proxy logs in as this role with an IAM token.
            IF EXISTS (SELECT 1 FROM pg_roles WHERE rolname = 'rds_iam') THEN
                EXECUTE format('GRANT rds_iam TO %I', r);
            END IF;
            -- The request paths' statement timeout (0005_role_settings.sql says why it is a role setting):
            -- role settings are not inherited, so each login gets its own.
            EXECUTE format('ALTER ROLE %I IN DATABASE %I SET statement_timeout = %L', r, current_database(), '5s');
        END IF;
    END LOOP;
END
$$;

-- PostgreSQL lets every role (PUBLIC) execute a new function. Not ours: a function runs only for the
-- roles grants.sql names. This covers the functions the migrator creates from now on; grants.sql revokes
-- it from the ones that exist.
ALTER DEFAULT PRIVILEGES REVOKE EXECUTE ON FUNCTIONS FROM PUBLIC;

-- The functions a role may call run as their owner (SECURITY DEFINER, grants.sql) with search_path
-- public, pg_temp. Nobody else may create objects in public, so nothing can be slipped in ahead of ours
-- (PostgreSQL docs, CREATE FUNCTION, "Writing SECURITY DEFINER Functions Safely"; already so on
-- PostgreSQL 15 and later, whose public schema only its owner may create in).
REVOKE CREATE ON SCHEMA public FROM PUBLIC;
