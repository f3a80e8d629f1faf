-- Who may do what (the roles: 0014_function_roles.sql). Applied after every other SQL file, and again
-- whenever anything else was applied (shared/migrate.py): a function dropped and created again (a new
-- signature) has lost its grants, and one replaced with CREATE OR REPLACE is back to SECURITY INVOKER
-- with only the SET clauses its new text names. This file is the whole truth each time: what it does
-- not grant, nobody has.
--
-- The rule: a role writes only through the functions it may execute, which run as their owner
-- (SECURITY DEFINER, below); it reads with SELECT on what it reads, through plain queries and the STABLE
-- functions, which run as the caller (so that a query's filter still reaches into pq_gateway_books'
-- body: a SQL function is inlined only when it is not SECURITY DEFINER). pq_status, the read paths, is
-- granted no function that can write (tests/integration/test_db_roles.py holds it).

-- Start from nothing: no one but the owner may run a function of ours (PostgreSQL grants EXECUTE to
-- PUBLIC on every new function) or touch a table of ours.
DO $$
DECLARE
    groups CONSTANT text := 'pq_enqueue, pq_line, pq_status, pq_webhook, pq_merchant, pq_redeliver, pq_operator, '
                            'pq_processor, pq_sweeper';
    me CONSTANT oid := (SELECT oid FROM pg_roles WHERE rolname = current_user);
    o record;
BEGIN
    FOR o IN SELECT p.oid::regprocedure AS name FROM pg_proc p
              WHERE p.pronamespace = 'public'::regnamespace AND p.proowner = me
                AND NOT EXISTS (SELECT 1 FROM pg_depend d  -- an extension's functions are the extension's
                                 WHERE d.classid = 'pg_proc'::regclass AND d.objid = p.oid AND d.deptype = 'e') LOOP
        EXECUTE format('REVOKE ALL ON FUNCTION %s FROM PUBLIC, %s', o.name, groups);
    END LOOP;
    FOR o IN SELECT c.oid::regclass AS name, c.relkind FROM pg_class c
              WHERE c.relnamespace = 'public'::regnamespace AND c.relowner = me AND c.relkind IN ('r', 'p', 'v', 'S')
                AND NOT EXISTS (SELECT 1 FROM pg_depend d
                                 WHERE d.classid = 'pg_class'::regclass AND d.objid = c.oid AND d.deptype = 'e') LOOP
        EXECUTE format('REVOKE ALL ON %s %s FROM %s', CASE o.relkind WHEN 'S' THEN 'SEQUENCE' ELSE 'TABLE' END,
                       o.name, groups);
    END LOOP;
END
$$;

-- The functions each group may call. Every signature of a name: a database upgraded from an older
-- release may still hold one its code called. What a job looks like to whoever shows one
-- (shared/services/reads.py job_view) reads the books for a gateway job: pq_refund_status,
-- pq_gateway_books and their tables, wherever a job is answered.
DO $$
DECLARE
    g record;
    f record;
    name text;
BEGIN
    FOR g IN SELECT * FROM (VALUES
        -- a shopper's intake (shared/services/intake.py, checkout.py)
        ('pq_enqueue', ARRAY['pq_enqueue_job', 'pq_enqueue_gateway_job', 'pq_mark_jobs_sent', 'pq_checkout_for_order',
                             'pq_checkout_route', 'pq_checkout_open', 'pq_checkout_created', 'pq_checkout_unclaimed',
                             'pq_take_tokens', 'pq_refund_status', 'pq_gateway_books']),
        -- a shopper leaving the line (shared/services/line.py cancel_job), its event published at once
        ('pq_line', ARRAY['pq_cancel_job', 'pq_leave_line', 'pq_mark_events_published', 'pq_refund_status',
                          'pq_gateway_books']),
        -- the reads (shared/services/reads.py, orders.py, checkout.py get_checkout, operator.py's metrics
        -- and health, merchant.py's lists): STABLE functions only
        ('pq_status', ARRAY['pq_finished_count', 'pq_processed_count', 'pq_job_ended_ahead', 'pq_line_serving',
                            'pq_gateway_books', 'pq_refund_status', 'pq_dead_lettered_jobs']),
        -- the gateways' webhooks (shared/services/webhooks.py), and the jobs they start or wake, sent
        ('pq_webhook', ARRAY['pq_webhook_record', 'pq_mark_jobs_sent']),
        -- the shop backend's writes (shared/services/merchant.py), each answered with the order or the job
        ('pq_merchant', ARRAY['pq_merchant_create_order', 'pq_merchant_adjust_wallet', 'pq_merchant_enqueue',
                              'pq_refund_status', 'pq_gateway_books']),
        -- an owed refund tried again, a poison message dropped (shared/services/operator.py retry_refund,
        -- drop_dead_letter)
        ('pq_operator', ARRAY['pq_refund_operator_retry', 'pq_drop_dead_letter']),
        -- payments.fifo's consumer (shared/services/processing.py, wallet.py, gateway.py; the handler's
        -- failures, sold-out line and outbox relay)
        ('pq_processor', ARRAY['pq_process_payment', 'pq_gateway_begin', 'pq_gateway_step', 'pq_gateway_setback',
                               'pq_gateway_limited', 'pq_gateway_fail', 'pq_gateway_park',
                               'pq_complete_gateway_payment', 'pq_refund_request', 'pq_refund_refused',
                               'pq_refund_withdrawn', 'pq_gateway_refunded', 'pq_gateway_refunds_seen',
                               'pq_record_delivery_failure',
                               'pq_end_sold_out_jobs', 'pq_mark_events_published', 'pq_mark_jobs_sent']),
        -- the minute's sweep (shared/services/outbox.py sweep, line.py, reconcile.py)
        ('pq_sweeper', ARRAY['pq_unsent_jobs', 'pq_mark_jobs_sent', 'pq_unpublished_events', 'pq_outbox_row',
                             'pq_mark_events_published', 'pq_end_sold_out_jobs', 'pq_checkouts_to_reconcile',
                             'pq_checkout_looked_at', 'pq_checkout_found', 'pq_checkout_reconciled',
                             'pq_refund_settled', 'pq_refund_refusal_explained',
                             'pq_refunds_to_check', 'pq_refunds_to_retry', 'pq_wake_parked_jobs', 'pq_take_tokens',
                             'pq_books_check', 'pq_books_unaccounted', 'pq_gateway_books'])
    ) AS v(grantee, functions) LOOP
        FOREACH name IN ARRAY g.functions LOOP
            IF NOT EXISTS (SELECT 1 FROM pg_proc WHERE proname = name AND pronamespace = 'public'::regnamespace) THEN
                RAISE EXCEPTION 'grants.sql grants % a function that does not exist: %', g.grantee, name;
            END IF;
            FOR f IN SELECT p.oid::regprocedure AS signature FROM pg_proc p
                      WHERE p.proname = name AND p.pronamespace = 'public'::regnamespace LOOP
                EXECUTE format('GRANT EXECUTE ON FUNCTION %s TO %I', f.signature, g.grantee);
            END LOOP;
        END LOOP;
    END LOOP;
END
$$;

-- What each group reads.
GRANT SELECT ON payment_jobs, gateway_payments, gateway_refunds, payment_transactions
   TO pq_enqueue, pq_line, pq_merchant;
GRANT SELECT ON payment_jobs, line_finished, orders, products, gateway_checkouts, gateway_payments,
                gateway_refunds, payment_transactions, delivery_failures, wallets, wallet_transactions,
                outbox_events
   TO pq_status;
GRANT SELECT (id, job_id, owed_at, method, gateway_refund_id) ON gateway_refunds TO pq_webhook;
GRANT SELECT ON orders, products TO pq_merchant;
GRANT SELECT ON payment_jobs, outbox_events TO pq_sweeper;
-- the books it checks (pq_books_check: the sweeper's books step)
GRANT SELECT ON gateway_payments, gateway_refunds, payment_transactions, gateway_books_open TO pq_sweeper;
-- and pq_redeliver, a merchant's event published again (merchant.py redeliver_event), its delivery columns:
-- the one table write not through a function.
GRANT SELECT (id, event_type, created_at, payload, published_at, redeliveries, redelivery_requested_at),
      UPDATE (published_at, redeliveries, redelivery_requested_at)
   ON outbox_events TO pq_redeliver;

-- Each function's login is a member of the groups of what it serves (shared/routes.py says which function
-- serves each route); any other membership in our groups is taken away.
DO $$
DECLARE
    wanted CONSTANT text[][] := ARRAY[
        ['pq_fn_enqueue', 'pq_enqueue'], ['pq_fn_enqueue', 'pq_webhook'], ['pq_fn_enqueue', 'pq_merchant'],
        -- status also serves a shopper leaving the line, an operator's refund retry and a merchant's event
        -- redelivery: the writes of those three routes, and no other.
        ['pq_fn_status', 'pq_status'], ['pq_fn_status', 'pq_line'], ['pq_fn_status', 'pq_operator'],
        ['pq_fn_status', 'pq_redeliver'],
        ['pq_fn_process_payment', 'pq_processor'],
        ['pq_fn_sweeper', 'pq_sweeper']];
    m record;
BEGIN
    FOR m IN SELECT member.rolname AS login, grp.rolname AS grp
               FROM pg_auth_members a
               JOIN pg_roles member ON member.oid = a.member
               JOIN pg_roles grp ON grp.oid = a.roleid
              WHERE member.rolname LIKE 'pq\_fn\_%' AND grp.rolname LIKE 'pq\_%' LOOP
        IF NOT EXISTS (SELECT 1 FROM generate_subscripts(wanted, 1) i
                        WHERE wanted[i][1] = m.login AND wanted[i][2] = m.grp) THEN
            EXECUTE format('REVOKE %I FROM %I', m.grp, m.login);
        END IF;
    END LOOP;
    FOR i IN 1 .. array_length(wanted, 1) LOOP
        IF NOT pg_has_role(wanted[i][1], wanted[i][2], 'MEMBER') THEN
            EXECUTE format('GRANT %I TO %I', wanted[i][2], wanted[i][1]);
        END IF;
    END LOOP;
END
$$;

-- A function a role may call that writes runs as its owner, with a search_path nobody else can put
-- anything on (0014 revoked CREATE on public); every other function of ours runs as its caller.
DO $$
DECLARE
    me CONSTANT oid := (SELECT oid FROM pg_roles WHERE rolname = current_user);
    f record;
BEGIN
    FOR f IN SELECT p.oid::regprocedure AS name,
                    p.provolatile = 'v' AND EXISTS (
                        SELECT 1 FROM aclexplode(p.proacl) a JOIN pg_roles r ON r.oid = a.grantee
                         WHERE a.privilege_type = 'EXECUTE' AND r.rolname LIKE 'pq\_%') AS definer
               FROM pg_proc p
              WHERE p.pronamespace = 'public'::regnamespace AND p.proowner = me
                AND NOT EXISTS (SELECT 1 FROM pg_depend d
                                 WHERE d.classid = 'pg_proc'::regclass AND d.objid = p.oid AND d.deptype = 'e') LOOP
        IF f.definer THEN
            EXECUTE format('ALTER FUNCTION %s SECURITY DEFINER SET search_path = public, pg_temp', f.name);
        ELSE
            EXECUTE format('ALTER FUNCTION %s SECURITY INVOKER RESET search_path', f.name);
        END IF;
    END LOOP;
END
$$;
