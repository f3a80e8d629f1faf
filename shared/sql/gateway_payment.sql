-- Gateway-funded payments (Razorpay, Cashfree): the functions the processor calls around each gateway
-- request (shared/services/gateway.py). None is ever called while a gateway request is in flight:
-- each is one short transaction in one round trip, before or after the call. Completion shares the
-- wallet path's fulfilment (fulfilment.sql).

-- A token of p_bucket for the job's next request (granted): the one the job reserved, once its slot
-- has come, or one the bucket has now. Otherwise wait_ms says how long until the job's slot (reserved:
-- it holds one already, or takes it now when the slot is within p_reserve_ms) or until the bucket has
-- a token (reserved = false: past p_reserve_ms nothing is taken). A reservation used more than
-- p_burst / p_rate seconds after its slot is forfeited and a token taken anew: the bucket counted it at
-- its slot, and a token sent that late can add one burst to a window it was not counted in
-- (shared/gateway_limits.py keeps a burst more than the bucket's minute under the published limit).
DROP FUNCTION IF EXISTS pq_gateway_token(uuid, text, double precision, double precision, integer, integer);
CREATE FUNCTION pq_gateway_token(p_job_id uuid, p_bucket text, p_rate double precision, p_burst double precision,
                                 p_n integer, p_reserve_ms integer,
                                 OUT granted boolean, OUT wait_ms integer, OUT reserved boolean)
LANGUAGE plpgsql SET enable_seqscan = off AS $$
DECLARE
    v_slot timestamptz;
    v_now  timestamptz;
BEGIN
    SELECT (a.reservations ->> p_bucket)::timestamptz INTO v_slot
      FROM gateway_attempts a WHERE a.job_id = p_job_id FOR UPDATE;
    v_now := clock_timestamp();
    IF v_slot > v_now THEN  -- early (a duplicate message, a job sent again): the slot is still ahead
        granted := false;
        reserved := true;
        wait_ms := ceil(extract(epoch FROM v_slot - v_now) * 1000)::integer;
        RETURN;
    END IF;
    IF v_slot IS NOT NULL THEN
        UPDATE gateway_attempts a SET reservations = a.reservations - p_bucket WHERE a.job_id = p_job_id;
        IF p_rate > 0 AND v_now <= v_slot + make_interval(secs => p_burst / p_rate) THEN
            granted := true;
            reserved := false;
            wait_ms := 0;
            RETURN;
        END IF;
    END IF;
    SELECT t.granted, t.wait_ms, t.reserved INTO granted, wait_ms, reserved
      FROM pq_take_tokens(p_bucket, p_rate, p_burst, p_n, p_reserve_ms) t;
    IF reserved THEN
        UPDATE gateway_attempts a
           SET reservations = a.reservations
                              || jsonb_build_object(p_bucket, clock_timestamp() + make_interval(secs => wait_ms / 1000.0))
         WHERE a.job_id = p_job_id;
    END IF;
END;
$$;

-- Before a gateway request (p_step: fetch | capture | refund): a token (pq_gateway_token, reserving
-- within p_reserve_ms) and, when it is granted, records that a capture or refund is about to leave.
-- Nothing is recorded without a token.
DROP FUNCTION IF EXISTS pq_gateway_step(uuid, text, text, double precision, double precision, integer, text);
DROP FUNCTION IF EXISTS pq_gateway_step(uuid, text, text, double precision, double precision, integer, text, integer);
CREATE FUNCTION pq_gateway_step(p_job_id uuid, p_step text, p_gateway text, p_rate double precision,
                                p_burst double precision, p_n integer, p_refund_reason text,
                                p_reserve_ms integer DEFAULT 0,
                                OUT granted boolean, OUT wait_ms integer, OUT reserved boolean)
LANGUAGE plpgsql SET enable_seqscan = off AS $$
BEGIN
    SELECT t.granted, t.wait_ms, t.reserved INTO granted, wait_ms, reserved
      FROM pq_gateway_token(p_job_id, p_gateway, p_rate, p_burst, p_n, p_reserve_ms) t;
    IF granted AND p_step IN ('capture', 'refund') THEN
        UPDATE gateway_attempts
           SET capture_sent_at = CASE WHEN p_step = 'capture' THEN coalesce(capture_sent_at, clock_timestamp())
                                      ELSE capture_sent_at END,
               refund_sent_at = CASE WHEN p_step = 'refund' THEN coalesce(refund_sent_at, clock_timestamp())
                                     ELSE refund_sent_at END,
               refund_reason = coalesce(refund_reason, p_refund_reason),
               updated_at = clock_timestamp()
         WHERE job_id = p_job_id;
    END IF;
END;
$$;

-- Why a gateway job's order cannot be fulfilled with a payment of p_amount_paise p_currency (reason NULL:
-- it can), and its items as pq_order_problem aggregates them. The one rule for a gateway payment, asked by
-- two steps (shared/services/gateway.py, Phase):
--   pq_gateway_begin, before any money moves: the amount the job's checkout asks for, without locks. A
--     "no" decides what the gateway package does before anything is captured: an authorisation is not
--     captured but released, and a payment that goes back anyway is not read for refunds first.
--   pq_complete_gateway_payment, for every captured payment: the payment's amount, under the order's lock
--     and then the products' (pq_lock_stock), which is the answer the money follows: fulfilled, or its
--     refund booked in the same transaction.
-- reason: cancelled (its shopper left the line while a job of its payment waited), amount_mismatch (the
-- order's total is not the payment's), else pq_order_problem's.
DROP FUNCTION IF EXISTS pq_gateway_unfulfillable(payment_jobs, orders, bigint, text);
CREATE FUNCTION pq_gateway_unfulfillable(p_job payment_jobs, p_order orders, p_amount_paise bigint,
                                         p_currency text, OUT reason text, OUT items jsonb)
LANGUAGE plpgsql STABLE AS $$
BEGIN
    -- Its shopper left the line (pq_leave_line), with this job or an earlier one for the same payment: a job
    -- made for it later (a late success webhook, the reconciliation's look) must not pay the order with it.
    IF p_job.cancel_requested_at IS NOT NULL
       OR EXISTS (SELECT 1 FROM payment_jobs j
                   WHERE j.method = p_job.method AND j.gateway_ref = p_job.gateway_ref
                     AND j.cancel_requested_at IS NOT NULL) THEN
        reason := 'cancelled';
        RETURN;
    END IF;
    IF p_order.id IS NOT NULL AND (p_order.total_paise <> p_amount_paise OR p_order.currency <> p_currency) THEN
        reason := 'amount_mismatch';
        RETURN;
    END IF;
    SELECT c.problem, c.items INTO reason, items FROM pq_order_problem(p_order, p_job) c;
END;
$$;

-- The first step of every delivery of a gateway job (Phase.BEGIN), in one round trip: lock the job,
-- answer a redelivery of a finished job, mark it processing, record the attempt, give the early answer
-- of pq_gateway_unfulfillable (unfulfillable: why not, for the checkout's amount; NULL: it can be, as far
-- as can be known before the payment is fulfilled), say whether a refund of ours was decided (refund_sent:
-- a redelivery resumes at Phase.REFUND), and take the token for the first request (the fetch), or use the
-- one the job reserved for it once its slot has come (it never reserves: pq_gateway_step does). Outcomes
-- (pq_gateway_begin_outcome):
--   proceed                            -> the job, its attempt, the early answer and the token
--   already_succeeded | already_failed -> a redelivery; nothing changed
--   job_not_found | not_a_gateway_job  -> a message that can never succeed (poison)
-- p_bucket names the token bucket of the first request (shared/gateway_limits.py; the gateway's single
-- bucket when NULL, as the previous release calls it). The checkout columns are the job's binding:
-- the gateway order its payment must belong to, and that order's amount (NULL: an old-flow job).
DROP FUNCTION IF EXISTS pq_gateway_begin(uuid, double precision, double precision, text);
CREATE FUNCTION pq_gateway_begin(p_job_id uuid, p_rate double precision, p_burst double precision,
                                 p_bucket text DEFAULT NULL,
                                 OUT outcome pq_gateway_begin_outcome, OUT reason text, OUT payment_id bigint,
                                 OUT gateway text, OUT gateway_ref text, OUT unfulfillable text,
                                 OUT refund_sent boolean, OUT refund_reason text,
                                 OUT granted boolean, OUT wait_ms integer,
                                 OUT checkout_id uuid, OUT gateway_order_id text, OUT checkout_amount_paise bigint,
                                 OUT checkout_currency text, OUT checkout_expires_at timestamptz)
LANGUAGE plpgsql SET enable_seqscan = off AS $$
DECLARE
    v_job      payment_jobs%ROWTYPE;
    v_order    orders%ROWTYPE;
    v_attempt  gateway_attempts%ROWTYPE;
    v_checkout gateway_checkouts%ROWTYPE;
BEGIN
    SELECT * INTO v_job FROM payment_jobs j WHERE j.id = p_job_id FOR UPDATE;
    IF NOT FOUND THEN
        outcome := 'job_not_found';
        RETURN;
    END IF;
    IF v_job.gateway_ref IS NULL THEN
        outcome := 'not_a_gateway_job';
        RETURN;
    END IF;
    IF v_job.status IN ('succeeded', 'failed') THEN
        outcome := ('already_' || v_job.status)::pq_gateway_begin_outcome;
        reason := v_job.reason;
        payment_id := v_job.payment_id;
        RETURN;
    END IF;
    IF v_job.checkout_id IS NOT NULL THEN
        SELECT * INTO v_checkout FROM gateway_checkouts c WHERE c.id = v_job.checkout_id;
        checkout_id := v_checkout.id;
        gateway_order_id := v_checkout.gateway_order_id;
        checkout_amount_paise := v_checkout.amount_paise;
        checkout_currency := v_checkout.currency;
        checkout_expires_at := v_checkout.expires_at;
    END IF;
    SELECT * INTO v_order FROM orders o WHERE o.id = v_job.order_id;
    SELECT u.reason INTO unfulfillable
      FROM pq_gateway_unfulfillable(v_job, v_order, v_checkout.amount_paise, v_checkout.currency) u;

    IF v_job.status = 'queued' OR v_job.parked_at IS NOT NULL OR v_job.dead_lettered_at IS NOT NULL THEN
        UPDATE payment_jobs SET status = 'processing', parked_at = NULL, dead_lettered_at = NULL WHERE id = v_job.id;
    END IF;
    -- refund_ref: our idempotency reference for a refund of this job, fixed at the first delivery.
    INSERT INTO gateway_attempts AS a (job_id, gateway, gateway_ref, deliveries, refund_ref)
    VALUES (v_job.id, v_job.method, v_job.gateway_ref, 1, 'pq' || replace(v_job.id::text, '-', ''))
    ON CONFLICT (job_id) DO UPDATE SET deliveries = a.deliveries + 1, updated_at = clock_timestamp()
    RETURNING * INTO v_attempt;
    SELECT t.granted, t.wait_ms INTO granted, wait_ms
      FROM pq_gateway_token(v_job.id, coalesce(p_bucket, v_job.method), p_rate, p_burst, 1, 0) t;

    outcome := 'proceed';
    gateway := v_job.method;
    gateway_ref := v_job.gateway_ref;
    -- A refund once decided is finished, whatever the order's state now: its row of ours (booked by
    -- pq_complete_gateway_payment or pq_refund_request before any token or request) is the decision,
    -- even if no request has left yet.
    SELECT true, r.reason INTO refund_sent, refund_reason
      FROM gateway_refunds r WHERE r.job_id = v_job.id AND r.origin = 'ours' AND r.attempt = 1;
    refund_sent := coalesce(refund_sent, v_attempt.refund_sent_at IS NOT NULL);
    refund_reason := coalesce(refund_reason, v_attempt.refund_reason);
END;
$$;

-- Counts a 429 or an unavailable gateway against the job's attempt (for operators and metrics).
CREATE OR REPLACE FUNCTION pq_gateway_setback(p_job_id uuid, p_kind text, p_error text) RETURNS void
LANGUAGE sql AS $$
    UPDATE gateway_attempts
       SET throttled = throttled + (p_kind = 'throttled')::integer,
           unavailable = unavailable + (p_kind <> 'throttled')::integer,
           last_error = left(p_error, 200), updated_at = clock_timestamp()
     WHERE job_id = p_job_id
$$;

-- A delivery handed back because no token came soon enough (what it reserved stays with the job):
-- counted, and the run of such deliveries extended. On the last receive maxReceiveCount allows, a
-- message every receive of which was such a wait would go to the DLQ for being paced, not for failing:
-- the job is sent again instead (requeued), and the caller consumes this message. The new message gets
-- a deduplication id of its own (parks + 1: SQS FIFO drops a second message with the same id for 5
-- minutes), and the job gives up its place in its user's line as a parked job does. sent_at cleared:
-- the sweeper sends it if the caller cannot.
DROP FUNCTION IF EXISTS pq_gateway_limited(uuid, integer, integer);
CREATE FUNCTION pq_gateway_limited(p_job_id uuid, p_receive_count integer, p_max_receive_count integer,
                                   OUT requeued boolean, OUT user_id text, OUT order_id bigint, OUT parks integer)
LANGUAGE plpgsql SET enable_seqscan = off AS $$
DECLARE
    v_status text;
    v_streak integer;
BEGIN
    -- Job, then attempt: the order pq_gateway_begin locks them in.
    SELECT j.status INTO v_status FROM payment_jobs j WHERE j.id = p_job_id FOR UPDATE;
    UPDATE gateway_attempts a
       SET limited = a.limited + 1,
           limited_streak = CASE WHEN a.limited_delivery = a.deliveries - 1 THEN a.limited_streak + 1 ELSE 1 END,
           limited_delivery = a.deliveries
     WHERE a.job_id = p_job_id
    RETURNING a.limited_streak INTO v_streak;
    requeued := coalesce(v_status = 'processing' AND p_receive_count >= p_max_receive_count
                         AND v_streak >= p_receive_count, false);
    IF requeued THEN
        UPDATE payment_jobs j SET sent_at = NULL, parks = j.parks + 1
         WHERE j.id = p_job_id
        RETURNING j.user_id, j.order_id, j.parks INTO user_id, order_id, parks;
    END IF;
END;
$$;

-- How a redelivery of a gateway job that has already ended is answered: as it ended (outcome NULL
-- while the job is live).
CREATE OR REPLACE FUNCTION pq_gateway_ended(p_job payment_jobs, OUT outcome pq_gateway_end_outcome,
                                            OUT reason text, OUT payment_id bigint)
LANGUAGE sql STABLE AS $$
    SELECT ('already_' || p_job.status)::pq_gateway_end_outcome, p_job.reason, p_job.payment_id
     WHERE p_job.status IN ('succeeded', 'failed')
$$;

-- A bound job whose gateway order is not final yet (Cashfree ACTIVE with attempts FAILED, USER_DROPPED,
-- PENDING or none, or EXPIRED within its grace): it stays processing with no queue message, its FIFO
-- group free, until a webhook or the sweeper's reconciliation sends it again (pq_checkout_settle,
-- pq_wake_parked_jobs). Outcomes (pq_gateway_end_outcome): parked | already_succeeded | already_failed.
-- A success webhook that arrived while this delivery was at the gateway found the job live and left it
-- to it (pq_checkout_settle: job_live): then the job is not left waiting but sent again at once
-- (resend, with its user, order and parks for the message), to fetch the order that is PAID by now.
DROP FUNCTION IF EXISTS pq_gateway_park(uuid);
CREATE FUNCTION pq_gateway_park(p_job_id uuid, OUT outcome pq_gateway_end_outcome, OUT reason text,
                                OUT payment_id bigint, OUT resend boolean, OUT user_id text, OUT order_id bigint,
                                OUT parks integer)
LANGUAGE plpgsql SET enable_seqscan = off AS $$
DECLARE
    v_checkout_id uuid;
BEGIN
    -- The job, locked, and how it ended if another delivery ended it meanwhile. In the select list, not
    -- a LATERAL join: after waiting for the lock PostgreSQL re-reads the locked row and recomputes the
    -- list from it, but would keep a joined function's answer from before the wait.
    SELECT j.checkout_id, (pq_gateway_ended(j)).* INTO v_checkout_id, outcome, reason, payment_id
      FROM payment_jobs j
     WHERE j.id = p_job_id
       FOR UPDATE;
    IF outcome IS NOT NULL THEN
        RETURN;
    END IF;
    resend := EXISTS (
        SELECT 1 FROM gateway_webhook_events e
          JOIN gateway_checkouts c ON c.method = e.gateway AND c.gateway_order_id = e.gateway_order_id
          JOIN gateway_attempts a ON a.job_id = p_job_id
         WHERE c.id = v_checkout_id AND e.outcome = 'job_live' AND e.received_at >= a.updated_at);
    UPDATE payment_jobs j
       SET parked_at = CASE WHEN resend THEN NULL ELSE now() END,
           sent_at = CASE WHEN resend THEN NULL ELSE j.sent_at END,
           parks = j.parks + 1
     WHERE j.id = p_job_id
    RETURNING j.user_id, j.order_id, j.parks INTO user_id, order_id, parks;
    outcome := 'parked';
END;
$$;

-- A captured payment (Phase.COMPLETE), in one transaction: the one answer to whether its order is
-- fulfilled (pq_gateway_unfulfillable, under the locks), acted on at once. Locks: job, order, products by
-- id (the wallet path's order, minus the wallet). Outcomes (pq_gateway_end_outcome):
--   succeeded                            -> fulfilled by the shared fulfilment (no wallet is touched):
--                                           payment_id, event
--   refund_required, reason set          -> the order is not fulfilled: the refund of the whole payment is
--                                           booked here (pq_refund_request: refund_id, refund_ref,
--                                           refund_amount_paise), or was by an earlier delivery (a refund
--                                           once decided is finished); the caller sends it (Phase.REFUND)
--   refund_required, gateway_payment_refunded, no refund_id
--                                        -> a refund made at the gateway is on record (its webhook, or a
--                                           report kept before the job existed; not failed): nothing is
--                                           booked, the caller reads the payment's refunds for the amounts
--                                           (Phase.CHECK_REFUNDS)
--   already_succeeded | already_failed   -> a redelivery; nothing changed
DROP FUNCTION IF EXISTS pq_complete_gateway_payment(uuid, bigint, text);
CREATE FUNCTION pq_complete_gateway_payment(p_job_id uuid, p_amount_paise bigint, p_currency text,
                                            OUT outcome pq_gateway_end_outcome, OUT reason text,
                                            OUT payment_id bigint, OUT event jsonb, OUT refund_id bigint,
                                            OUT refund_ref text, OUT refund_amount_paise bigint)
LANGUAGE plpgsql SET enable_seqscan = off AS $$
DECLARE
    v_job   payment_jobs%ROWTYPE;
    v_order orders%ROWTYPE;
    v_check record;
BEGIN
    SELECT * INTO v_job FROM payment_jobs j WHERE j.id = p_job_id FOR UPDATE;
    -- Only a live job is completed; one that ended in another delivery is answered as it ended.
    SELECT e.* INTO outcome, reason, payment_id FROM pq_gateway_ended(v_job) e;
    IF outcome IS NOT NULL THEN
        RETURN;
    END IF;
    -- A job whose refund was decided (its row of ours) is never fulfilled: the refund is finished instead.
    SELECT r.reason INTO reason FROM gateway_refunds r
     WHERE r.job_id = v_job.id AND r.origin = 'ours' AND r.attempt = 1;
    IF NOT FOUND THEN
        UPDATE gateway_attempts SET captured_amount_paise = p_amount_paise, captured_currency = p_currency,
                                    updated_at = clock_timestamp()
         WHERE job_id = v_job.id;
        SELECT * INTO v_order FROM orders o WHERE o.id = v_job.order_id FOR UPDATE;
        SELECT * INTO v_check FROM pq_gateway_unfulfillable(v_job, v_order, p_amount_paise, p_currency);
        reason := v_check.reason;
        -- Nor one whose payment was partly refunded at the gateway (a refund webhook recorded it, origin
        -- gateway, or kept its report before the job existed; not failed): the caller reads the payment's
        -- refunds and returns what is left (gateway_payment_refunded). Read under the order's lock, which
        -- pq_refund_reported takes before it books a refund: one of the two sees the other's work.
        IF reason IS NULL
           AND (EXISTS (SELECT 1 FROM gateway_refunds r
                         WHERE r.method = v_job.method AND r.gateway_ref = v_job.gateway_ref AND r.origin = 'gateway'
                           AND r.after_applied_at IS NULL AND r.state <> 'failed')
                OR EXISTS (SELECT 1 FROM gateway_refund_reports x
                            WHERE x.method = v_job.method AND x.gateway_ref = v_job.gateway_ref
                              AND x.state <> 'failed'
                              AND NOT EXISTS (SELECT 1 FROM gateway_refunds b
                                               WHERE b.method = x.method
                                                 AND b.gateway_refund_id = x.gateway_refund_id))) THEN
            outcome := 'refund_required';
            reason := 'gateway_payment_refunded';
            RETURN;
        END IF;
        reason := coalesce(reason, pq_lock_stock(v_check.items, v_job.user_id));
        IF reason IS NULL THEN
            SELECT f.payment_id, f.event INTO payment_id, event
              FROM pq_fulfil_order(v_job, v_order, v_check.items, p_amount_paise, p_currency) f;
            PERFORM pq_payment_seen(v_job, p_currency, 0, p_amount_paise);
            UPDATE gateway_checkouts SET status = 'paid', job_id = v_job.id, updated_at = now()
             WHERE id = v_job.checkout_id;
            outcome := 'succeeded';
            RETURN;
        END IF;
    END IF;
    -- Not fulfilled: the whole payment goes back, its refund booked with the decision (the job's first
    -- attempt, or the one it has: pq_refund_request answers a booked refund as is).
    SELECT q.refund_id, q.refund_ref, q.amount_paise INTO refund_id, refund_ref, refund_amount_paise
      FROM pq_refund_request(v_job.id, p_amount_paise, p_currency, reason, p_amount_paise) q;
    outcome := 'refund_required';
END;
$$;

-- Ends a gateway job that could not apply its payment (p_reason): the money it was handed is on its way
-- back, or it moved none. p_refund_id: our refund (pq_refund_request) and the gateway's answer to it
-- (p_gateway_refund_id, p_state, p_gateway_status), recorded through the books' one transition
-- (pq_refund_settled: a failed refund is retried later or owed; refund_failed / refund_owed say so).
-- p_checkout_status: what the job's checkout becomes (failed, expired, refunded) when its gateway order
-- can take no payment any more; NULL leaves it payable (a failed Razorpay payment: the shopper may pay
-- again); a refund of ours makes it refunded (what the shopper reads of it: pq_refund_status).
-- A job that fails without a refund gives its gateway payment back (gateway_ref_released_at, which the
-- unique index and every "in use" check read) when the failure says the payment was never its to use --
-- the gateway does not know it (gateway_payment_not_found), it was made in another gateway order than
-- the job's checkout's (gateway_order_mismatch: someone else's payment, which must not block its own
-- checkout), nothing binds it to the job's order (gateway_payment_unbound) -- or that the gateway's
-- verdict may still change (gateway_payment_failed: authorised late; gateway_checkout_expired: paid
-- late; cancelled with no payment of it ever read: its shopper left the line before paying). Each of these
-- is decided on the delivery's first fetch or without a call, before any capture or refund could leave
-- (shared/services/gateway.py), so the job moved no money with it. Every other failure keeps the payment
-- for good: it was judged for its own order (amount_mismatch, out_of_stock, order_not_payable,
-- invalid_order: refunded if captured) or is refunded (gateway_payment_refunded).
-- Outcomes (pq_gateway_end_outcome): failed | already_succeeded | already_failed.
DROP FUNCTION IF EXISTS pq_gateway_refunded(uuid, text, bigint, text, text, text, text);
CREATE FUNCTION pq_gateway_refunded(p_job_id uuid, p_reason text, p_refund_id bigint, p_gateway_refund_id text,
                                    p_state text, p_gateway_status text, p_checkout_status text DEFAULT NULL,
                                    OUT outcome pq_gateway_end_outcome, OUT reason text,
                                    OUT payment_id bigint, OUT event jsonb,
                                    OUT refund_failed boolean, OUT refund_owed boolean)
LANGUAGE plpgsql SET enable_seqscan = off AS $$
DECLARE
    v_job payment_jobs%ROWTYPE;
BEGIN
    SELECT * INTO v_job FROM payment_jobs j WHERE j.id = p_job_id FOR UPDATE;
    IF p_refund_id IS NOT NULL THEN  -- the answer is the books' whether or not the job is still live
        SELECT s.failed, s.owed INTO refund_failed, refund_owed
          FROM pq_refund_settled(p_refund_id, p_state, p_gateway_status, p_gateway_refund_id) s;
    END IF;
    SELECT e.* INTO outcome, reason, payment_id FROM pq_gateway_ended(v_job) e;
    IF outcome IS NOT NULL THEN
        RETURN;  -- it ended in another delivery: answered as it ended
    END IF;
    reason := p_reason;
    UPDATE gateway_checkouts
       SET status = CASE WHEN p_refund_id IS NOT NULL THEN 'refunded' ELSE p_checkout_status END,
           job_id = v_job.id, updated_at = now()
     WHERE id = v_job.checkout_id AND status IN ('created', 'expired', 'failed')
       AND (p_refund_id IS NOT NULL OR p_checkout_status IS NOT NULL);
    UPDATE payment_jobs SET parked_at = NULL WHERE id = v_job.id AND parked_at IS NOT NULL;
    outcome := 'failed';
    event := pq_end_job(v_job, p_reason, NULL);
    IF p_refund_id IS NULL
       AND (p_reason IN ('gateway_payment_not_found', 'gateway_order_mismatch', 'gateway_payment_unbound',
                         'gateway_payment_failed', 'gateway_checkout_expired')
            OR (p_reason = 'cancelled'
                AND NOT EXISTS (SELECT 1 FROM gateway_payments g
                                 WHERE g.method = v_job.method AND g.gateway_ref = v_job.gateway_ref))) THEN
        UPDATE payment_jobs SET gateway_ref_released_at = now() WHERE id = v_job.id;
    END IF;
    -- The job no longer holds the payment: a refund made at the gateway that failed after the job read the
    -- refunds (it returned only what they left) is taken over now.
    IF v_job.gateway_ref IS NOT NULL THEN
        PERFORM pq_failed_refunds_taken_over(v_job.method, v_job.gateway_ref);
    END IF;
END;
$$;

-- Ends a gateway job that moved no money of its own (declined, mismatched, unfulfillable before capture,
-- or refunded in full at the gateway). p_release_paise: an authorisation of the job's checkout we will
-- never capture, booked as released (the gateway returns it: Razorpay refunds an uncaptured payment by
-- itself). Outcomes (pq_gateway_end_outcome): failed | already_succeeded | already_failed.
DROP FUNCTION IF EXISTS pq_gateway_fail(uuid, text, text, bigint, text);
CREATE FUNCTION pq_gateway_fail(p_job_id uuid, p_reason text, p_checkout_status text DEFAULT NULL,
                                p_release_paise bigint DEFAULT NULL, p_currency text DEFAULT NULL,
                                OUT outcome pq_gateway_end_outcome,
                                OUT reason text, OUT payment_id bigint, OUT event jsonb)
LANGUAGE plpgsql SET enable_seqscan = off AS $$
DECLARE
    v_job payment_jobs%ROWTYPE;
BEGIN
    IF p_release_paise IS NOT NULL THEN
        SELECT * INTO v_job FROM payment_jobs j WHERE j.id = p_job_id FOR UPDATE;
        PERFORM pq_payment_seen(v_job, p_currency, p_release_paise, 0, true);
    END IF;
    SELECT r.outcome, r.reason, r.payment_id, r.event INTO outcome, reason, payment_id, event
      FROM pq_gateway_refunded(p_job_id, p_reason, NULL, NULL, NULL, NULL, p_checkout_status) r;
    -- A released authorisation is still the checkout's payment, and the gateway may capture it after all
    -- (Razorpay's account capture settings, a late authorisation): its success webhook or the sweeper's
    -- reconciliation then gets a job of its own, which refunds (or pays) what was captured.
    IF p_release_paise IS NOT NULL AND outcome = 'failed' THEN
        UPDATE payment_jobs SET gateway_ref_released_at = coalesce(gateway_ref_released_at, now())
         WHERE id = p_job_id;
    END IF;
END;
$$;
