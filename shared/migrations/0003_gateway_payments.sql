-- Gateway-funded payments (Razorpay, Cashfree): the attempt ledger, refunds, the shared rate
-- limiter, and the functions the processor calls around each gateway request. No function here
-- is ever called while a gateway request is in flight: each is one short transaction in one
-- round trip, before or after the call.

ALTER TABLE payment_jobs ADD COLUMN gateway_ref text
    CHECK (gateway_ref IS NULL OR length(gateway_ref) BETWEEN 1 AND 64);
ALTER TABLE payment_jobs ADD CONSTRAINT payment_jobs_gateway_ref_by_method
    CHECK ((method = 'wallet') = (gateway_ref IS NULL));
COMMENT ON COLUMN payment_jobs.gateway_ref IS
    'What the shopper paid at the gateway: a Razorpay payment id or a Cashfree order id.';

-- One gateway payment backs one job, ever: a second job for the same payment is refused at enqueue,
-- and this index makes the race between two requests impossible too. Failed jobs count as well: a
-- payment captured and then refunded (Cashfree still lists it as SUCCESS) must never pay again.
CREATE UNIQUE INDEX payment_jobs_one_job_per_gateway_payment
    ON payment_jobs (method, gateway_ref)
    WHERE gateway_ref IS NOT NULL;
CREATE UNIQUE INDEX payment_transactions_one_per_gateway_payment
    ON payment_transactions (method, gateway_ref) WHERE gateway_ref IS NOT NULL;

CREATE TABLE gateway_attempts (
    job_id                 uuid PRIMARY KEY REFERENCES payment_jobs (id),
    gateway                text NOT NULL CHECK (gateway IN ('razorpay', 'cashfree')),
    gateway_ref            text NOT NULL,
    deliveries             integer NOT NULL DEFAULT 0,
    throttled              integer NOT NULL DEFAULT 0,
    unavailable            integer NOT NULL DEFAULT 0,
    capture_sent_at        timestamptz,
    captured_amount_paise  bigint,
    captured_currency      char(3),
    refund_ref             text NOT NULL,
    refund_sent_at         timestamptz,
    refund_reason          text,
    last_error             text,
    created_at             timestamptz NOT NULL DEFAULT now(),
    updated_at             timestamptz NOT NULL DEFAULT now()
);
COMMENT ON TABLE gateway_attempts IS
    'What we did at the gateway for a job, written before each request leaves. capture_sent_at set '
    'means a capture may have happened: the next delivery settles it by fetching the payment, never '
    'by capturing again. refund_ref is the idempotency reference sent with a refund (Cashfree '
    'refund_id, Razorpay receipt), fixed per job so a retried refund finds the first one.';
COMMENT ON COLUMN gateway_attempts.throttled IS '429 answers received (each one a retry later).';
COMMENT ON COLUMN gateway_attempts.unavailable IS '5xx answers, timeouts and lost connections received.';

CREATE TABLE gateway_refunds (
    id                 bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    job_id             uuid NOT NULL UNIQUE REFERENCES payment_jobs (id),
    order_id           bigint NOT NULL REFERENCES orders (id),
    method             text NOT NULL,
    gateway_ref        text NOT NULL,
    refund_ref         text NOT NULL,
    gateway_refund_id  text NOT NULL,
    amount_paise       bigint NOT NULL CHECK (amount_paise > 0),
    currency           char(3) NOT NULL,
    reason             text NOT NULL,
    created_at         timestamptz NOT NULL DEFAULT now()
);
COMMENT ON TABLE gateway_refunds IS
    'Money a gateway captured for an order we could not fulfil, and sent back. UNIQUE (job_id): a '
    'job refunds at most once. The order stays as it was (pending), as after any failed payment.';

CREATE TABLE gateway_rate_limits (
    gateway     text PRIMARY KEY,
    tokens      double precision NOT NULL,
    updated_at  timestamptz NOT NULL
);
COMMENT ON TABLE gateway_rate_limits IS
    'One token bucket per gateway, shared by every processor instance: a request leaves only with '
    'a token taken here. The row lock serialises takers; the refill is computed from updated_at.';

-- Takes p_n tokens from the gateway's bucket (capacity p_burst, refilled at p_rate per second).
-- granted = false takes nothing and says how long until p_n tokens are there. The clock is read
-- after the row lock, so refills are computed from monotonic timestamps whatever the contention.
CREATE FUNCTION pq_take_tokens(p_gateway text, p_rate double precision, p_burst double precision, p_n integer)
RETURNS TABLE (granted boolean, wait_ms integer)
LANGUAGE plpgsql AS $$
DECLARE
    v_tokens double precision;
    v_at     timestamptz;
    v_now    timestamptz;
BEGIN
    SELECT l.tokens, l.updated_at INTO v_tokens, v_at FROM gateway_rate_limits l
     WHERE l.gateway = p_gateway FOR UPDATE;
    IF NOT FOUND THEN
        INSERT INTO gateway_rate_limits (gateway, tokens, updated_at)
        VALUES (p_gateway, p_burst, clock_timestamp()) ON CONFLICT (gateway) DO NOTHING;
        SELECT l.tokens, l.updated_at INTO v_tokens, v_at FROM gateway_rate_limits l
         WHERE l.gateway = p_gateway FOR UPDATE;
    END IF;
    v_now := clock_timestamp();
    v_tokens := least(p_burst, v_tokens + p_rate * greatest(0, extract(epoch FROM v_now - v_at)));
    IF v_tokens >= p_n THEN
        UPDATE gateway_rate_limits SET tokens = v_tokens - p_n, updated_at = v_now WHERE gateway = p_gateway;
        RETURN QUERY SELECT true, 0;
    ELSE
        UPDATE gateway_rate_limits SET tokens = v_tokens, updated_at = v_now WHERE gateway = p_gateway;
        RETURN QUERY SELECT false, ceil((p_n - v_tokens) / p_rate * 1000)::integer;
    END IF;
END;
$$;

-- pq_enqueue_job with the gateway reference; outcomes as before, plus gateway_ref_in_use (job_id
-- of the job that already used this gateway payment, whatever its state).
DROP FUNCTION pq_enqueue_job(text, text, text, bigint, text);
CREATE FUNCTION pq_enqueue_job(
    p_user_id text, p_idempotency_key text, p_request_hash text, p_order_id bigint, p_method text,
    p_gateway_ref text
) RETURNS TABLE (outcome text, job_id uuid, status text, queue_seq bigint, reason text, finished bigint)
LANGUAGE plpgsql AS $$
DECLARE
    v_job payment_jobs%ROWTYPE;
    v_order_status text;
BEGIN
    SELECT * INTO v_job FROM payment_jobs j
     WHERE j.user_id = p_user_id AND j.idempotency_key = p_idempotency_key;
    IF FOUND THEN
        RETURN QUERY SELECT CASE WHEN v_job.request_hash = p_request_hash THEN 'replayed' ELSE 'key_reused' END,
                            v_job.id, v_job.status, v_job.queue_seq,
                            CASE WHEN v_job.request_hash = p_request_hash THEN v_job.reason END, pq_finished_count();
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
        INSERT INTO payment_jobs (user_id, idempotency_key, request_hash, order_id, method, gateway_ref)
        VALUES (p_user_id, p_idempotency_key, p_request_hash, p_order_id, p_method, p_gateway_ref)
        RETURNING * INTO v_job;
    EXCEPTION WHEN unique_violation THEN
        -- A concurrent request won the race: the same key (replay), another live job for the same
        -- order, or another job for the same gateway payment.
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
        IF FOUND THEN
            RETURN QUERY SELECT 'payment_in_progress', v_job.id, v_job.status, v_job.queue_seq, NULL::text,
                                pq_finished_count();
            RETURN;
        END IF;
        SELECT * INTO v_job FROM payment_jobs j
         WHERE j.method = p_method AND j.gateway_ref = p_gateway_ref;
        RETURN QUERY SELECT 'gateway_ref_in_use', v_job.id, v_job.status, v_job.queue_seq, NULL::text,
                            pq_finished_count();
        RETURN;
    END;
    RETURN QUERY SELECT 'created', v_job.id, v_job.status, v_job.queue_seq, NULL::text, pq_finished_count();
END;
$$;

-- Why an order cannot be fulfilled for a job right now (NULL: it can), and its items aggregated
-- per product with their stock. The caller decides whether the product rows are locked.
CREATE FUNCTION pq_order_problem(p_order orders, p_job payment_jobs, OUT problem text, OUT items jsonb)
LANGUAGE plpgsql STABLE AS $$
BEGIN
    IF p_order.id IS NULL OR p_order.order_status <> 'pending' OR p_order.user_id <> p_job.user_id THEN
        problem := 'order_not_payable';
        RETURN;
    END IF;
    IF EXISTS (SELECT 1 FROM jsonb_array_elements(p_order.items) AS e
                WHERE jsonb_typeof(e) <> 'object'
                   OR coalesce(e->>'product_id', '') !~ '^[0-9]{1,18}$'
                   OR coalesce(e->>'quantity', '') !~ '^[1-9][0-9]{0,8}$'
                   OR coalesce(e->>'unit_price_paise', '') !~ '^[0-9]{1,15}$') THEN
        problem := 'invalid_order';
        RETURN;
    END IF;
    SELECT jsonb_agg(jsonb_build_object('product_id', i.product_id, 'quantity', i.quantity,
                                        'unit_price_paise', i.unit_price_paise, 'stock', p.stock)
                     ORDER BY i.product_id)
      INTO items
      FROM (SELECT (e->>'product_id')::bigint AS product_id,
                   sum((e->>'quantity')::integer)::integer AS quantity,
                   max((e->>'unit_price_paise')::bigint) AS unit_price_paise
              FROM jsonb_array_elements(p_order.items) AS e
             GROUP BY 1) AS i
      LEFT JOIN products p ON p.id = i.product_id;
    IF EXISTS (SELECT 1 FROM jsonb_array_elements(items) AS x WHERE x->'stock' = 'null'::jsonb)
       OR (SELECT sum((x->>'quantity')::bigint * (x->>'unit_price_paise')::bigint)
             FROM jsonb_array_elements(items) AS x) <> p_order.total_paise THEN
        problem := 'invalid_order';
    ELSIF EXISTS (SELECT 1 FROM jsonb_array_elements(items) AS x
                   WHERE (x->>'stock')::integer < (x->>'quantity')::integer) THEN
        problem := 'out_of_stock';
    END IF;
END;
$$;

-- Before a gateway request (p_step: fetch | capture | refund): takes p_n tokens and, when they are
-- granted, records that a capture or refund is about to leave. Nothing is recorded without a token.
CREATE FUNCTION pq_gateway_step(p_job_id uuid, p_step text, p_gateway text, p_rate double precision,
                                p_burst double precision, p_n integer, p_refund_reason text)
RETURNS TABLE (granted boolean, wait_ms integer)
LANGUAGE plpgsql AS $$
DECLARE
    v_granted boolean;
    v_wait    integer;
BEGIN
    SELECT t.granted, t.wait_ms INTO v_granted, v_wait FROM pq_take_tokens(p_gateway, p_rate, p_burst, p_n) t;
    IF v_granted AND p_step IN ('capture', 'refund') THEN
        UPDATE gateway_attempts
           SET capture_sent_at = CASE WHEN p_step = 'capture' THEN coalesce(capture_sent_at, clock_timestamp())
                                      ELSE capture_sent_at END,
               refund_sent_at = CASE WHEN p_step = 'refund' THEN coalesce(refund_sent_at, clock_timestamp())
                                     ELSE refund_sent_at END,
               refund_reason = coalesce(refund_reason, p_refund_reason),
               updated_at = clock_timestamp()
         WHERE job_id = p_job_id;
    END IF;
    RETURN QUERY SELECT v_granted, v_wait;
END;
$$;

-- The first step of every delivery of a gateway job, in one round trip: lock the job, answer a
-- redelivery of a finished job, mark it processing, record the attempt, say whether the order can
-- still be fulfilled, and take the token for the first request (the fetch). Outcomes:
--   proceed                            -> the columns describe the job, its order and its attempt
--   already_succeeded | already_failed -> a redelivery; nothing changed
--   job_not_found                      -> a message whose job does not exist (poison)
CREATE FUNCTION pq_gateway_begin(p_job_id uuid, p_rate double precision, p_burst double precision)
RETURNS TABLE (outcome text, reason text, payment_id bigint, gateway text, gateway_ref text, order_id bigint,
               amount_paise bigint, currency text, problem text, capture_sent boolean, refund_ref text,
               refund_sent boolean, refund_reason text, deliveries integer, granted boolean, wait_ms integer)
LANGUAGE plpgsql AS $$
DECLARE
    v_job     payment_jobs%ROWTYPE;
    v_order   orders%ROWTYPE;
    v_check   record;
    v_attempt gateway_attempts%ROWTYPE;
    v_granted boolean;
    v_wait    integer;
BEGIN
    SELECT * INTO v_job FROM payment_jobs j WHERE j.id = p_job_id FOR UPDATE;
    IF NOT FOUND THEN
        RETURN QUERY SELECT 'job_not_found', NULL::text, NULL::bigint, NULL::text, NULL::text, NULL::bigint,
                            NULL::bigint, NULL::text, NULL::text, NULL::boolean, NULL::text, NULL::boolean,
                            NULL::text, NULL::integer, NULL::boolean, NULL::integer;
        RETURN;
    END IF;
    IF v_job.status IN ('succeeded', 'failed') OR v_job.gateway_ref IS NULL THEN
        RETURN QUERY SELECT CASE WHEN v_job.gateway_ref IS NULL THEN 'not_a_gateway_job'
                                 ELSE 'already_' || v_job.status END,
                            v_job.reason, v_job.payment_id, v_job.method, v_job.gateway_ref, v_job.order_id,
                            NULL::bigint, NULL::text, NULL::text, NULL::boolean, NULL::text, NULL::boolean,
                            NULL::text, NULL::integer, NULL::boolean, NULL::integer;
        RETURN;
    END IF;
    SELECT * INTO v_order FROM orders o WHERE o.id = v_job.order_id;
    SELECT * INTO v_check FROM pq_order_problem(v_order, v_job);

    IF v_job.status = 'queued' THEN
        UPDATE payment_jobs SET status = 'processing' WHERE id = v_job.id;
    END IF;
    INSERT INTO gateway_attempts AS a (job_id, gateway, gateway_ref, deliveries, refund_ref)
    VALUES (v_job.id, v_job.method, v_job.gateway_ref, 1, 'pq' || replace(v_job.id::text, '-', ''))
    ON CONFLICT (job_id) DO UPDATE SET deliveries = a.deliveries + 1, updated_at = clock_timestamp()
    RETURNING * INTO v_attempt;
    SELECT t.granted, t.wait_ms INTO v_granted, v_wait FROM pq_take_tokens(v_job.method, p_rate, p_burst, 1) t;

    RETURN QUERY SELECT 'proceed', NULL::text, NULL::bigint, v_job.method, v_job.gateway_ref, v_job.order_id,
                        v_order.total_paise, v_order.currency::text, v_check.problem,
                        v_attempt.capture_sent_at IS NOT NULL, v_attempt.refund_ref,
                        v_attempt.refund_sent_at IS NOT NULL, v_attempt.refund_reason, v_attempt.deliveries,
                        v_granted, v_wait;
END;
$$;

-- Counts a 429 or an unavailable gateway against the job's attempt (for operators and metrics).
CREATE FUNCTION pq_gateway_setback(p_job_id uuid, p_kind text, p_error text) RETURNS void
LANGUAGE sql AS $$
    UPDATE gateway_attempts
       SET throttled = throttled + (p_kind = 'throttled')::integer,
           unavailable = unavailable + (p_kind <> 'throttled')::integer,
           last_error = left(p_error, 200), updated_at = clock_timestamp()
     WHERE job_id = p_job_id
$$;

-- Ends a gateway job that moved no money (declined, mismatched or unfulfillable before capture).
CREATE FUNCTION pq_gateway_fail(p_job_id uuid, p_reason text)
RETURNS TABLE (outcome text, reason text, payment_id bigint, event jsonb)
LANGUAGE plpgsql AS $$
DECLARE
    v_job payment_jobs%ROWTYPE;
BEGIN
    SELECT * INTO v_job FROM payment_jobs j WHERE j.id = p_job_id FOR UPDATE;
    IF v_job.status IN ('succeeded', 'failed') THEN
        RETURN QUERY SELECT 'already_' || v_job.status, v_job.reason, v_job.payment_id, NULL::jsonb;
        RETURN;
    END IF;
    RETURN QUERY SELECT 'failed', p_reason, NULL::bigint, pq_fail_job(v_job, p_reason);
END;
$$;

-- The payment the gateway captured, completed in one transaction: the seed's steps 4 and 6-9
-- (payment transaction, order items, stock, order paid, cart) plus the job and its outbox event.
-- No wallet is touched. Locks: job, order, products by id (the wallet path's order, minus the
-- wallet). If the order can no longer be fulfilled or the captured amount is not the order's,
-- nothing changes but the attempt and the outcome is refund_required with the reason.
CREATE FUNCTION pq_complete_gateway_payment(p_job_id uuid, p_amount_paise bigint, p_currency text)
RETURNS TABLE (outcome text, reason text, payment_id bigint, event jsonb)
LANGUAGE plpgsql AS $$
DECLARE
    v_job     payment_jobs%ROWTYPE;
    v_order   orders%ROWTYPE;
    v_check   record;
    v_payment bigint;
    v_event   jsonb;
BEGIN
    SELECT * INTO v_job FROM payment_jobs j WHERE j.id = p_job_id FOR UPDATE;
    IF v_job.status IN ('succeeded', 'failed') THEN
        RETURN QUERY SELECT 'already_' || v_job.status, v_job.reason, v_job.payment_id, NULL::jsonb;
        RETURN;
    END IF;
    UPDATE gateway_attempts SET captured_amount_paise = p_amount_paise, captured_currency = p_currency,
                                updated_at = clock_timestamp()
     WHERE job_id = v_job.id;

    SELECT * INTO v_order FROM orders o WHERE o.id = v_job.order_id FOR UPDATE;
    IF NOT FOUND OR v_order.total_paise <> p_amount_paise OR v_order.currency <> p_currency THEN
        RETURN QUERY SELECT 'refund_required',
                            CASE WHEN NOT FOUND THEN 'order_not_payable' ELSE 'amount_mismatch' END,
                            NULL::bigint, NULL::jsonb;
        RETURN;
    END IF;
    PERFORM 1 FROM products
      WHERE id IN (SELECT (e->>'product_id')::bigint FROM jsonb_array_elements(v_order.items) AS e
                    WHERE coalesce(e->>'product_id', '') ~ '^[0-9]{1,18}$')
      ORDER BY id FOR UPDATE;
    SELECT * INTO v_check FROM pq_order_problem(v_order, v_job);
    IF v_check.problem IS NOT NULL THEN
        RETURN QUERY SELECT 'refund_required', v_check.problem, NULL::bigint, NULL::jsonb;
        RETURN;
    END IF;

    -- Step 4: the payment transaction (UNIQUE order_id and gateway payment: the double-charge guards).
    INSERT INTO payment_transactions (order_id, job_id, user_id, method, amount_paise, currency, gateway_ref)
    VALUES (v_order.id, v_job.id, v_job.user_id, v_job.method, p_amount_paise, p_currency, v_job.gateway_ref)
    RETURNING id INTO v_payment;
    -- Step 7: order items and stock.
    INSERT INTO order_items (order_id, product_id, quantity, unit_price_paise)
    SELECT v_order.id, (x->>'product_id')::bigint, (x->>'quantity')::integer, (x->>'unit_price_paise')::bigint
      FROM jsonb_array_elements(v_check.items) AS x;
    UPDATE products p SET stock = p.stock - (x->>'quantity')::integer
      FROM jsonb_array_elements(v_check.items) AS x
     WHERE p.id = (x->>'product_id')::bigint;
    -- Step 8: the order is paid.
    UPDATE orders SET order_status = 'paid', paid_at = now(), payment_method = v_job.method WHERE id = v_order.id;
    -- Step 9: what was bought leaves the cart.
    DELETE FROM cart_items c
     USING jsonb_array_elements(v_check.items) AS x
     WHERE c.user_id = v_job.user_id AND c.product_id = (x->>'product_id')::bigint;
    -- The job, and the event that leaves through the outbox after commit.
    UPDATE payment_jobs SET status = 'succeeded', payment_id = v_payment, finished_at = now() WHERE id = v_job.id;
    PERFORM nextval('payment_finished_seq');
    INSERT INTO outbox_events (job_id, event_type, payload)
    VALUES (v_job.id, 'PaymentSucceeded', jsonb_build_object(
        'job_id', v_job.id, 'user_id', v_job.user_id, 'order_id', v_order.id,
        'method', v_job.method, 'payment_id', v_payment, 'gateway_ref', v_job.gateway_ref,
        'amount_paise', p_amount_paise, 'currency', p_currency))
    RETURNING jsonb_build_object('id', id, 'type', event_type, 'occurred_at', created_at,
                                 'data', payload) INTO v_event;
    RETURN QUERY SELECT 'succeeded', NULL::text, v_payment, v_event;
END;
$$;

-- The gateway confirmed the refund of a payment we could not fulfil: record it and fail the job.
CREATE FUNCTION pq_gateway_refunded(p_job_id uuid, p_reason text, p_gateway_refund_id text,
                                    p_amount_paise bigint, p_currency text)
RETURNS TABLE (outcome text, reason text, payment_id bigint, event jsonb)
LANGUAGE plpgsql AS $$
DECLARE
    v_job payment_jobs%ROWTYPE;
BEGIN
    SELECT * INTO v_job FROM payment_jobs j WHERE j.id = p_job_id FOR UPDATE;
    IF v_job.status IN ('succeeded', 'failed') THEN
        RETURN QUERY SELECT 'already_' || v_job.status, v_job.reason, v_job.payment_id, NULL::jsonb;
        RETURN;
    END IF;
    INSERT INTO gateway_refunds (job_id, order_id, method, gateway_ref, refund_ref, gateway_refund_id,
                                 amount_paise, currency, reason)
    SELECT v_job.id, v_job.order_id, v_job.method, v_job.gateway_ref, a.refund_ref, p_gateway_refund_id,
           p_amount_paise, p_currency, p_reason
      FROM gateway_attempts a WHERE a.job_id = v_job.id;
    RETURN QUERY SELECT 'failed', p_reason, NULL::bigint, pq_fail_job(v_job, p_reason);
END;
$$;
