-- The money moves here: each function is one transaction in one round trip from the caller.

-- Number of jobs that have reached a terminal state (O(1): reads one sequence).
CREATE FUNCTION pq_finished_count() RETURNS bigint
LANGUAGE sql STABLE AS $$
    SELECT CASE WHEN is_called THEN last_value ELSE 0 END FROM payment_finished_seq
$$;

-- Records a payment request. Validation that needs the database happens here so that a
-- refused request records nothing. Outcomes:
--   created | replayed                 -> job_id, status, queue_seq set
--   key_reused                         -> same idempotency key, different body
--   order_not_found                    -> no such order for this user (another user's looks the same)
--   order_not_payable                  -> reason = the order's status
--   payment_in_progress                -> job_id of the live job for this order
CREATE FUNCTION pq_enqueue_job(
    p_user_id text, p_idempotency_key text, p_request_hash text, p_order_id bigint, p_method text
) RETURNS TABLE (outcome text, job_id uuid, status text, queue_seq bigint, reason text, finished bigint)
LANGUAGE plpgsql AS $$
DECLARE
    v_job payment_jobs%ROWTYPE;
    v_order_status text;
BEGIN
    SELECT * INTO v_job FROM payment_jobs j
     WHERE j.user_id = p_user_id AND j.idempotency_key = p_idempotency_key;
    IF FOUND THEN
        IF v_job.request_hash <> p_request_hash THEN
            RETURN QUERY SELECT 'key_reused', v_job.id, v_job.status, v_job.queue_seq, NULL::text, pq_finished_count();
        ELSE
            RETURN QUERY SELECT 'replayed', v_job.id, v_job.status, v_job.queue_seq, v_job.reason, pq_finished_count();
        END IF;
        RETURN;
    END IF;

    SELECT o.order_status INTO v_order_status FROM orders o
     WHERE o.id = p_order_id AND o.user_id = p_user_id;
    IF NOT FOUND THEN
        RETURN QUERY SELECT 'order_not_found', NULL::uuid, NULL::text, NULL::bigint, NULL::text, pq_finished_count();
        RETURN;
    END IF;
    IF v_order_status <> 'pending' THEN
        RETURN QUERY SELECT 'order_not_payable', NULL::uuid, NULL::text, NULL::bigint, v_order_status, pq_finished_count();
        RETURN;
    END IF;

    BEGIN
        INSERT INTO payment_jobs (user_id, idempotency_key, request_hash, order_id, method)
        VALUES (p_user_id, p_idempotency_key, p_request_hash, p_order_id, p_method)
        RETURNING * INTO v_job;
    EXCEPTION WHEN unique_violation THEN
        -- A concurrent request won the race: either the same key (replay) or another live job
        -- for the same order.
        SELECT * INTO v_job FROM payment_jobs j
         WHERE j.user_id = p_user_id AND j.idempotency_key = p_idempotency_key;
        IF FOUND THEN
            RETURN QUERY SELECT
                CASE WHEN v_job.request_hash = p_request_hash THEN 'replayed' ELSE 'key_reused' END,
                v_job.id, v_job.status, v_job.queue_seq, v_job.reason, pq_finished_count();
            RETURN;
        END IF;
        SELECT * INTO v_job FROM payment_jobs j
         WHERE j.order_id = p_order_id AND j.status IN ('queued', 'processing');
        RETURN QUERY SELECT 'payment_in_progress', v_job.id, v_job.status, v_job.queue_seq, NULL::text, pq_finished_count();
        RETURN;
    END;
    RETURN QUERY SELECT 'created', v_job.id, v_job.status, v_job.queue_seq, NULL::text, pq_finished_count();
END;
$$;

-- Ends a job with a business failure: nothing but the job and its event change.
CREATE FUNCTION pq_fail_job(p_job payment_jobs, p_reason text) RETURNS jsonb
LANGUAGE plpgsql AS $$
DECLARE
    v_event jsonb;
BEGIN
    UPDATE payment_jobs SET status = 'failed', reason = p_reason, finished_at = now()
     WHERE id = p_job.id;
    PERFORM nextval('payment_finished_seq');
    INSERT INTO outbox_events (job_id, event_type, payload)
    VALUES (p_job.id, 'PaymentFailed', jsonb_build_object(
        'job_id', p_job.id, 'user_id', p_job.user_id, 'order_id', p_job.order_id,
        'method', p_job.method, 'reason', p_reason))
    RETURNING jsonb_build_object('id', id, 'type', event_type, 'occurred_at', created_at,
                                 'data', payload) INTO v_event;
    RETURN v_event;
END;
$$;

-- The seed's steps 1-9 as one transaction. Rows are locked in one fixed order -- job, order,
-- wallet, then products by ascending id -- so concurrent payments cannot deadlock; the shared
-- (hot) product rows come last so they are held for the shortest time. Every check
-- runs before the first write, so a business failure changes nothing but the job. Outcomes:
--   succeeded | failed (reason set)    -> event is the outbox event to publish after commit
--   already_succeeded | already_failed -> a redelivery; nothing changed, no event
--   job_not_found                      -> a message whose job does not exist (poison)
--   not_a_wallet_job                   -> a gateway job sent down the wallet path (poison)
CREATE FUNCTION pq_process_payment(p_job_id uuid)
RETURNS TABLE (outcome text, reason text, payment_id bigint, event jsonb)
LANGUAGE plpgsql AS $$
DECLARE
    v_job       payment_jobs%ROWTYPE;
    v_order     orders%ROWTYPE;
    v_wallet    wallets%ROWTYPE;
    v_items     jsonb;
    v_short     bigint;
    v_payment   bigint;
    v_event     jsonb;
BEGIN
    -- The job row serialises redeliveries of the same message.
    SELECT * INTO v_job FROM payment_jobs WHERE id = p_job_id FOR UPDATE;
    IF NOT FOUND THEN
        RETURN QUERY SELECT 'job_not_found', NULL::text, NULL::bigint, NULL::jsonb;
        RETURN;
    END IF;
    IF v_job.status IN ('succeeded', 'failed') THEN
        RETURN QUERY SELECT 'already_' || v_job.status, v_job.reason, v_job.payment_id, NULL::jsonb;
        RETURN;
    END IF;
    -- A gateway job is paid at the gateway (shared/gateway_payments.py), never from the wallet,
    -- whatever its queue message says.
    IF v_job.method <> 'wallet' THEN
        RETURN QUERY SELECT 'not_a_wallet_job', NULL::text, NULL::bigint, NULL::jsonb;
        RETURN;
    END IF;

    -- Step 1: fetch (and lock) the order.
    SELECT * INTO v_order FROM orders WHERE id = v_job.order_id FOR UPDATE;
    IF NOT FOUND OR v_order.order_status <> 'pending' OR v_order.user_id <> v_job.user_id THEN
        RETURN QUERY SELECT 'failed', 'order_not_payable', NULL::bigint, pq_fail_job(v_job, 'order_not_payable');
        RETURN;
    END IF;

    -- Step 6 (parsed early, so that every check precedes every write): the order's items, one
    -- entry per product. A malformed item is a permanent failure, not a retry.
    IF EXISTS (SELECT 1 FROM jsonb_array_elements(v_order.items) AS e
                WHERE jsonb_typeof(e) <> 'object'
                   OR coalesce(e->>'product_id', '') !~ '^[0-9]{1,18}$'
                   OR coalesce(e->>'quantity', '') !~ '^[1-9][0-9]{0,8}$'
                   OR coalesce(e->>'unit_price_paise', '') !~ '^[0-9]{1,15}$') THEN
        RETURN QUERY SELECT 'failed', 'invalid_order', NULL::bigint, pq_fail_job(v_job, 'invalid_order');
        RETURN;
    END IF;
    -- Step 2: fetch (and lock) the wallet.
    SELECT * INTO v_wallet FROM wallets WHERE user_id = v_job.user_id FOR UPDATE;
    IF NOT FOUND OR v_wallet.balance_paise < v_order.total_paise THEN
        RETURN QUERY SELECT 'failed', 'insufficient_balance', NULL::bigint, pq_fail_job(v_job, 'insufficient_balance');
        RETURN;
    END IF;

    -- A product already short of stock fails the payment without taking its row lock. Stock only
    -- goes down while a sale runs, so the answer is true when read; and once the hot product has
    -- sold out, the buyers still queued for it no longer line up behind each other's lock (each
    -- lock is held until its commit is flushed).
    IF EXISTS (SELECT 1
                 FROM (SELECT (e->>'product_id')::bigint AS product_id, sum((e->>'quantity')::integer) AS quantity
                         FROM jsonb_array_elements(v_order.items) AS e GROUP BY 1) AS i
                 JOIN products p ON p.id = i.product_id
                WHERE p.stock < i.quantity) THEN
        RETURN QUERY SELECT 'failed', 'out_of_stock', NULL::bigint, pq_fail_job(v_job, 'out_of_stock');
        RETURN;
    END IF;

    -- Lock the products in ascending id order (the sort runs below the row locks).
    PERFORM 1 FROM products
      WHERE id IN (SELECT (e->>'product_id')::bigint FROM jsonb_array_elements(v_order.items) AS e)
      ORDER BY id FOR UPDATE;
    SELECT jsonb_agg(jsonb_build_object('product_id', i.product_id, 'quantity', i.quantity,
                                        'unit_price_paise', i.unit_price_paise, 'stock', p.stock)
                     ORDER BY i.product_id)
      INTO v_items
      FROM (SELECT (e->>'product_id')::bigint AS product_id,
                   sum((e->>'quantity')::integer)::integer AS quantity,
                   max((e->>'unit_price_paise')::bigint) AS unit_price_paise
              FROM jsonb_array_elements(v_order.items) AS e
             GROUP BY 1) AS i
      LEFT JOIN products p ON p.id = i.product_id;
    IF EXISTS (SELECT 1 FROM jsonb_array_elements(v_items) AS x WHERE x->'stock' = 'null'::jsonb)
       OR (SELECT sum((x->>'quantity')::bigint * (x->>'unit_price_paise')::bigint)
             FROM jsonb_array_elements(v_items) AS x) <> v_order.total_paise THEN
        RETURN QUERY SELECT 'failed', 'invalid_order', NULL::bigint, pq_fail_job(v_job, 'invalid_order');
        RETURN;
    END IF;

    SELECT count(*) INTO v_short FROM jsonb_array_elements(v_items) AS x
     WHERE (x->>'stock')::integer < (x->>'quantity')::integer;
    IF v_short > 0 THEN
        RETURN QUERY SELECT 'failed', 'out_of_stock', NULL::bigint, pq_fail_job(v_job, 'out_of_stock');
        RETURN;
    END IF;

    -- Steps 3 and 5: debit the wallet and record the wallet transaction.
    UPDATE wallets SET balance_paise = balance_paise - v_order.total_paise, updated_at = now()
     WHERE id = v_wallet.id;
    INSERT INTO wallet_transactions (wallet_id, order_id, job_id, kind, amount_paise, balance_after_paise, note)
    VALUES (v_wallet.id, v_order.id, v_job.id, 'debit', v_order.total_paise,
            v_wallet.balance_paise - v_order.total_paise, 'order payment');

    -- Step 4: the payment transaction (UNIQUE order_id: the double-charge guard).
    INSERT INTO payment_transactions (order_id, job_id, user_id, method, amount_paise, currency)
    VALUES (v_order.id, v_job.id, v_job.user_id, v_job.method, v_order.total_paise, v_order.currency)
    RETURNING id INTO v_payment;

    -- Step 7: order items and stock, every product in one statement each.
    INSERT INTO order_items (order_id, product_id, quantity, unit_price_paise)
    SELECT v_order.id, (x->>'product_id')::bigint, (x->>'quantity')::integer, (x->>'unit_price_paise')::bigint
      FROM jsonb_array_elements(v_items) AS x;
    UPDATE products p SET stock = p.stock - (x->>'quantity')::integer
      FROM jsonb_array_elements(v_items) AS x
     WHERE p.id = (x->>'product_id')::bigint;

    -- Step 8: the order is paid.
    UPDATE orders SET order_status = 'paid', paid_at = now(), payment_method = v_job.method
     WHERE id = v_order.id;

    -- Step 9: what was bought leaves the cart.
    DELETE FROM cart_items c
     USING jsonb_array_elements(v_items) AS x
     WHERE c.user_id = v_job.user_id AND c.product_id = (x->>'product_id')::bigint;

    -- Step 10 happens after commit: the event goes to the outbox in this transaction.
    UPDATE payment_jobs SET status = 'succeeded', payment_id = v_payment, finished_at = now()
     WHERE id = v_job.id;
    PERFORM nextval('payment_finished_seq');
    INSERT INTO outbox_events (job_id, event_type, payload)
    VALUES (v_job.id, 'PaymentSucceeded', jsonb_build_object(
        'job_id', v_job.id, 'user_id', v_job.user_id, 'order_id', v_order.id,
        'method', v_job.method, 'payment_id', v_payment,
        'amount_paise', v_order.total_paise, 'currency', v_order.currency))
    RETURNING jsonb_build_object('id', id, 'type', event_type, 'occurred_at', created_at,
                                 'data', payload) INTO v_event;

    RETURN QUERY SELECT 'succeeded', NULL::text, v_payment, v_event;
END;
$$;
