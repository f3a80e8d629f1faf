-- Gateway checkouts (table gateway_checkouts, migration 0006): the gateway order created for one of
-- our orders and its shopper, what the gateways' webhooks and the sweeper's reconciliation say about
-- it, and the jobs that follow. Every function is one short transaction in one round trip; none is
-- called while a gateway request is in flight (shared/services/checkout.py, webhooks.py).

-- Whether a checkout whose gateway order a page was given ('created') is still live: not yet past its
-- expiry, or a job of it still live (a payment made to it is being applied).
CREATE OR REPLACE FUNCTION pq_checkout_payable(p_checkout gateway_checkouts) RETURNS boolean
LANGUAGE sql STABLE SET enable_seqscan = off AS $$
    SELECT p_checkout.expires_at > now()
        OR EXISTS (SELECT 1 FROM payment_jobs j
                    WHERE j.checkout_id = p_checkout.id AND j.status IN ('queued', 'processing'))
$$;

-- Opens (or finds) the shopper's checkout of an order at one of the gateways p_methods allows, in its order
-- of preference. An order holds at most one live checkout per gateway (migration 0006's index): a shopper who
-- closed one gateway's window may pick another at once, and the second payment to reach the order is refunded
-- in full (shared/services/gateway.py). A checkout that expired unpaid with no live job is marked expired and a
-- new one may be opened. The request that is to make the gateway create call (or settle a lost one by lookup)
-- claims it for p_claim_s seconds (create_claimed_until): while the claim lasts, other requests wait for its
-- answer instead of making a second gateway order.
--
-- The order's live checkouts at the gateways allowed come first, in the request's order of preference: one the
-- page was given ('created') is answered as it is when its gateway's circuit is closed, or whatever the circuit
-- when the request names that one gateway (nothing is called: the page may still pay it); one never given to a
-- page ('creating': its create answer was lost) is waited for while another request's claim on it lasts, and
-- otherwise settled at its gateway by lookup when that gateway's circuit lets a call through. A live checkout
-- at a gateway that is down is left as it is (a lookup settles it once the gateway is back).
--
-- Then a new one goes to the first gateway of p_methods that holds no live checkout of the order, whose circuit
-- lets a call through (pq_gateway_circuit_wait; the trial of a circuit past its cool-down is claimed for this
-- request) and whose create bucket (p_buckets[i], p_rates[i], p_bursts[i]: shared/gateway_limits.py) gives a
-- token: that token is the create call's. p_buckets NULL (pq_checkout_open, the previous release's call): no
-- circuit is consulted and no token taken (its caller takes them).
-- Outcomes (pq_checkout_outcome):
--   existing           -> a live checkout, its gateway order created: nothing to call
--   pending            -> the checkout whose gateway order this request must create (or whose lost
--                         creation it must settle), claimed for it; inserted = true when this call opened it
--                         (and took its create token)
--   claimed            -> another request is making the create call: wait for its answer
--   unavailable        -> no gateway allowed can be called now: retry_ms says when the first may, circuits
--                         how many were refused by their circuit (the others had no token)
--   order_not_found    -> no such order for this user (another user's looks the same)
--   order_not_payable  -> reason = the order's status
--   sold_out           -> p_refuse_sold_out, no live checkout of a gateway allowed is answered (one would be
--                         opened at a gateway holding none), and sold_out = its products with no unit left: no
--                         checkout is opened (the shopper would pay, then wait for a refund). A live one, whose
--                         page may be paying it, is still answered as above.
-- p_claim_s NULL: no claim is made or honoured.
-- (A name of its own, not pq_checkout_route's: a deploy of the previous release re-applies that one as it was,
-- and a second overload of the name would make its callers' calls ambiguous.)
DROP FUNCTION IF EXISTS pq_checkout_route(text, bigint, text[], double precision, double precision, text[],
                                          double precision[], double precision[], double precision, boolean);
CREATE OR REPLACE FUNCTION pq_checkout_for_order(p_user_id text, p_order_id bigint, p_methods text[],
                                                 p_ttl_s double precision, p_claim_s double precision,
                                                 p_buckets text[] DEFAULT NULL,
                                                 p_rates double precision[] DEFAULT NULL,
                                                 p_bursts double precision[] DEFAULT NULL,
                                                 p_cooldown_s double precision DEFAULT NULL,
                                                 p_refuse_sold_out boolean DEFAULT false,
                                                 OUT outcome pq_checkout_outcome, OUT reason text, OUT inserted boolean,
                                                 OUT retry_ms integer, OUT circuits integer,
                                                 OUT checkout gateway_checkouts, OUT sold_out bigint[])
LANGUAGE plpgsql SET enable_seqscan = off AS $$
DECLARE
    v_order orders%ROWTYPE;
    v_claim timestamptz := now() + make_interval(secs => p_claim_s);
    v_live gateway_checkouts%ROWTYPE;
    v_held text[] := '{}';  -- the gateways allowed that hold a live checkout of the order: no new one there
    v_circuit record;
    v_token record;
    v_method text;
BEGIN
    -- One shopper's checkouts are opened one at a time (transaction-scoped lock: see pq_enqueue_job).
    PERFORM pq_lock_user(p_user_id);
    inserted := false;
    circuits := 0;
    SELECT * INTO v_order FROM orders o WHERE o.id = p_order_id AND o.user_id = p_user_id;
    IF NOT FOUND THEN
        outcome := 'order_not_found';
        RETURN;
    END IF;
    IF v_order.order_status <> 'pending' THEN  -- paid or cancelled: nothing more to pay, even a live checkout
        outcome := 'order_not_payable';
        reason := v_order.order_status;
        RETURN;
    END IF;
    FOR v_live IN SELECT * FROM gateway_checkouts c
                   WHERE c.order_id = p_order_id AND c.method = ANY (p_methods)
                     AND c.status IN ('creating', 'created')
                   ORDER BY array_position(p_methods, c.method)
                     FOR UPDATE LOOP
        IF v_live.status = 'created' AND NOT pq_checkout_payable(v_live) THEN
            -- Past its expiry with no live job: a new one may be opened. Nobody asked the gateway whether it was
            -- paid, so it stays due for reconciliation (next_check_at, pq_checkouts_to_reconcile): a payment
            -- made to it before its expiry whose webhook was lost or came stale is still settled.
            UPDATE gateway_checkouts SET status = 'expired', updated_at = now() WHERE id = v_live.id;
            CONTINUE;
        END IF;
        v_held := v_held || v_live.method;
        IF v_live.status = 'created' THEN
            IF p_buckets IS NOT NULL AND cardinality(p_methods) > 1 THEN
                SELECT * INTO v_circuit FROM pq_gateway_circuit_wait(v_live.method, p_cooldown_s);
                IF v_circuit.trial THEN  -- not closed: the next gateway allowed may take the order
                    circuits := circuits + 1;
                    retry_ms := least(retry_ms, v_circuit.wait_ms);
                    CONTINUE;
                END IF;
            END IF;
            checkout := v_live;
            outcome := 'existing';
            RETURN;
        ELSIF p_claim_s IS NOT NULL AND v_live.create_claimed_until > now() THEN
            checkout := v_live;
            outcome := 'claimed';
            RETURN;
        ELSIF p_buckets IS NULL OR pq_gateway_circuit_admits(v_live.method, p_cooldown_s, v_claim) THEN
            -- Its claimant is gone or let go with its call unanswered: this request settles it by lookup.
            UPDATE gateway_checkouts c SET create_claimed_until = v_claim WHERE c.id = v_live.id
            RETURNING * INTO checkout;
            outcome := 'pending';
            RETURN;
        END IF;
        circuits := circuits + 1;
        retry_ms := least(retry_ms, (SELECT w.wait_ms FROM pq_gateway_circuit_wait(v_live.method, p_cooldown_s) w));
    END LOOP;
    -- No live checkout is answered: any checkout now would be a new gateway order. Refused when a product is
    -- sold out, as the wallet intake (pq_enqueue_job) reads it: without the products' locks, before any token
    -- is taken. (Not before the live ones: a page may be paying one; but a second gateway's order, routed
    -- around a circuit or asked for by name, would take money only to refund it.)
    IF p_refuse_sold_out THEN
        sold_out := pq_sold_out_products(v_order.items);
        IF cardinality(sold_out) > 0 THEN
            outcome := 'sold_out';
            retry_ms := NULL;
            circuits := 0;
            RETURN;
        END IF;
        sold_out := NULL;
    END IF;
    FOR i IN 1 .. coalesce(array_length(p_methods, 1), 0) LOOP
        v_method := p_methods[i];
        CONTINUE WHEN v_method = ANY (v_held);
        IF p_buckets IS NOT NULL THEN
            SELECT * INTO v_circuit FROM pq_gateway_circuit_wait(v_method, p_cooldown_s);
            IF v_circuit.wait_ms > 0 THEN
                circuits := circuits + 1;
                retry_ms := least(retry_ms, v_circuit.wait_ms);
                CONTINUE;
            END IF;
            SELECT * INTO v_token FROM pq_take_tokens(p_buckets[i], p_rates[i], p_bursts[i], 1);
            IF NOT v_token.granted THEN
                retry_ms := least(retry_ms, v_token.wait_ms);
                CONTINUE;
            END IF;
            -- The token first: a circuit's trial is claimed only by a request that can make the call (one
            -- that loses the race for it to another container leaves its token unused).
            IF v_circuit.trial THEN
                IF NOT pq_gateway_circuit_trial(v_method, p_cooldown_s, v_claim) THEN
                    circuits := circuits + 1;
                    retry_ms := least(retry_ms, ceil(p_claim_s * 1000)::integer);
                    CONTINUE;
                END IF;
            END IF;
        END IF;
        checkout := NULL;
        checkout.id := gen_random_uuid();
        INSERT INTO gateway_checkouts (id, order_id, user_id, method, merchant_ref, amount_paise, currency,
                                       expires_at, create_claimed_until)
        VALUES (checkout.id, v_order.id, p_user_id, v_method, 'pq' || replace(checkout.id::text, '-', ''),
                v_order.total_paise, v_order.currency,
                date_trunc('second', now() + make_interval(secs => p_ttl_s)), v_claim)
        RETURNING * INTO checkout;
        inserted := true;
        outcome := 'pending';
        retry_ms := NULL;
        RETURN;
    END LOOP;
    checkout := NULL;
    outcome := 'unavailable';
END;
$$;

-- The previous release's call of the above, as it was: it never refuses an order as sold out.
CREATE OR REPLACE FUNCTION pq_checkout_route(p_user_id text, p_order_id bigint, p_methods text[],
                                             p_ttl_s double precision, p_claim_s double precision,
                                             p_buckets text[] DEFAULT NULL,
                                             p_rates double precision[] DEFAULT NULL,
                                             p_bursts double precision[] DEFAULT NULL,
                                             p_cooldown_s double precision DEFAULT NULL,
                                             OUT outcome pq_checkout_outcome, OUT reason text, OUT inserted boolean,
                                             OUT retry_ms integer, OUT circuits integer,
                                             OUT checkout gateway_checkouts)
LANGUAGE sql SET enable_seqscan = off AS $$
    SELECT r.outcome, r.reason, r.inserted, r.retry_ms, r.circuits, r.checkout
      FROM pq_checkout_for_order(p_user_id, p_order_id, p_methods, p_ttl_s, p_claim_s, p_buckets, p_rates,
                                 p_bursts, p_cooldown_s, false) r
$$;

-- The previous release's call, for the one method it names (no circuit consulted, no token taken: its code
-- takes the create call's tokens itself). Outcomes as pq_checkout_route's; none of the new one (unavailable)
-- can come: with no circuit or token consulted, a gateway is always available.
DROP FUNCTION IF EXISTS pq_checkout_open(text, bigint, text, double precision);
DROP FUNCTION IF EXISTS pq_checkout_open(text, bigint, text, double precision, double precision);
CREATE FUNCTION pq_checkout_open(p_user_id text, p_order_id bigint, p_method text, p_ttl_s double precision,
                                 p_claim_s double precision DEFAULT NULL,
                                 OUT outcome pq_checkout_outcome, OUT reason text, OUT inserted boolean,
                                 OUT checkout gateway_checkouts)
LANGUAGE sql SET enable_seqscan = off AS $$
    SELECT r.outcome, r.reason, r.inserted, r.checkout
      FROM pq_checkout_route(p_user_id, p_order_id, ARRAY[p_method], p_ttl_s, p_claim_s) r
$$;

-- The gateway answered the create call (or the lookup that settles a lost answer): binds the gateway
-- order to the checkout, whose claim ends. A gateway order whose amount or currency is not the
-- checkout's is refused and bound to nothing. Either way the gateway answered: its circuit closes
-- (pq_gateway_circuit_record). Outcomes (pq_checkout_outcome): created | existing (bound before;
-- checkout is that binding) | gateway_order_mismatch.
DROP FUNCTION IF EXISTS pq_checkout_created(uuid, text, text, bigint, text);
CREATE FUNCTION pq_checkout_created(p_checkout_id uuid, p_gateway_order_id text, p_payment_session_id text,
                                    p_amount_paise bigint, p_currency text,
                                    OUT outcome pq_checkout_outcome, OUT checkout gateway_checkouts)
LANGUAGE plpgsql SET enable_seqscan = off AS $$
BEGIN
    SELECT * INTO checkout FROM gateway_checkouts c WHERE c.id = p_checkout_id FOR UPDATE;
    IF checkout.status <> 'creating' THEN
        outcome := 'existing';
    ELSIF checkout.amount_paise <> p_amount_paise OR checkout.currency <> p_currency THEN
        UPDATE gateway_checkouts SET create_claimed_until = NULL WHERE id = p_checkout_id;
        outcome := 'gateway_order_mismatch';
    ELSE
        UPDATE gateway_checkouts
           SET status = 'created', gateway_order_id = p_gateway_order_id, create_claimed_until = NULL,
               payment_session_id = p_payment_session_id, updated_at = now(),
               next_check_at = now() + interval '2 minutes'
         WHERE id = p_checkout_id
        RETURNING * INTO checkout;
        outcome := 'created';
    END IF;
    PERFORM pq_gateway_circuit_record(checkout.method, false, NULL);
END;
$$;

-- The request that claimed a checkout's create call ends without the gateway order (no token, or the
-- gateway refused or did not answer). p_discard (it opened the checkout itself and the gateway certainly
-- made no order: no call left, or the create was refused, a 429 included; or the request moves on to
-- another gateway, and no page was ever given this checkout's gateway order): the checkout is deleted, so a
-- refused request leaves nothing behind. Otherwise (an order may exist under its merchant_ref) the
-- checkout stays creating and the claim is let go, so that the next request settles it by lookup at
-- once rather than waiting for the claim to lapse. Only the claimant's own claim (p_claimed_until, as
-- pq_checkout_route gave it) is touched: a request whose claim lapsed and was taken over changes nothing.
-- p_gateway_failed: what the call says of the gateway, for its circuit (pq_gateway_circuit_record: true a
-- 5xx or a timeout, false a refusal, NULL no call or a 429), whoever holds the checkout now.
DROP FUNCTION IF EXISTS pq_checkout_unclaimed(uuid, timestamptz, boolean);
CREATE OR REPLACE FUNCTION pq_checkout_unclaimed(p_checkout_id uuid, p_claimed_until timestamptz, p_discard boolean,
                                                 p_gateway_failed boolean DEFAULT NULL,
                                                 p_failures_to_open integer DEFAULT NULL)
RETURNS void
LANGUAGE plpgsql SET enable_seqscan = off AS $$
DECLARE
    v_method text;
BEGIN
    SELECT c.method INTO v_method FROM gateway_checkouts c WHERE c.id = p_checkout_id;
    IF p_discard THEN
        DELETE FROM gateway_checkouts c
         WHERE c.id = p_checkout_id AND c.status = 'creating' AND c.create_claimed_until = p_claimed_until;
    ELSE
        UPDATE gateway_checkouts c SET create_claimed_until = NULL
         WHERE c.id = p_checkout_id AND c.status = 'creating' AND c.create_claimed_until = p_claimed_until;
    END IF;
    PERFORM pq_gateway_circuit_record(v_method, p_gateway_failed, p_failures_to_open);
END;
$$;

-- A gateway payment of a checkout is to be applied (a webhook said so, or the reconciliation saw it):
-- wake the checkout's parked job, or create the job nobody asked for (the shopper closed the tab),
-- unless one is already live or a job holds the payment (pq_gateway_ref_holder: a job that failed and
-- gave it back, such as one that named it against another checkout, does not). Created and woken jobs
-- are to be sent by the caller (sent_at stays NULL until then, so the sweeper sends them if it cannot).
-- p_captured false: the gateway holds the payment authorised only. One a job of ours released (an
-- authorisation it would not capture, booked released in gateway_payments; not just given back by a job
-- that failed without reading it) then needs no new job: the job that would come could only release it
-- again, and tell the shop PaymentFailed again, on every look until Razorpay refunds it by itself
-- ("payments that are not captured within [3 days] will be refunded automatically",
-- razorpay.com/docs/payments/dashboard/account-settings/capture-refund). Captured after all, it gets one.
-- Outcomes (pq_webhook_outcome): job_created | job_woken | job_live | already_handled.
-- (No default for p_captured: the previous release re-applies the two-argument one beside it.)
DROP FUNCTION IF EXISTS pq_checkout_settle(gateway_checkouts, text);
DROP FUNCTION IF EXISTS pq_checkout_settle(gateway_checkouts, text, boolean);
CREATE FUNCTION pq_checkout_settle(p_checkout gateway_checkouts, p_gateway_ref text, p_captured boolean,
                                   OUT outcome pq_webhook_outcome, OUT job_id uuid, OUT user_id text,
                                   OUT order_id bigint, OUT parks integer)
LANGUAGE plpgsql SET enable_seqscan = off AS $$
DECLARE
    v_job payment_jobs%ROWTYPE;
    v_id  uuid := gen_random_uuid();
BEGIN
    PERFORM pq_lock_user(p_checkout.user_id);
    SELECT * INTO v_job FROM payment_jobs j
     WHERE j.checkout_id = p_checkout.id AND j.parked_at IS NOT NULL
     FOR UPDATE;
    IF FOUND THEN
        UPDATE payment_jobs j SET parked_at = NULL, sent_at = NULL WHERE j.id = v_job.id;
        outcome := 'job_woken';
    ELSE
        SELECT * INTO v_job FROM payment_jobs j
         WHERE j.order_id = p_checkout.order_id AND j.status IN ('queued', 'processing');
        IF FOUND THEN
            -- Another job holds the order (it may pay it): the reconciliation comes back after it ends.
            outcome := 'job_live';
            RETURN;
        END IF;
        SELECT * INTO v_job FROM pq_gateway_ref_holder(p_checkout.method, p_gateway_ref);
        IF v_job.id IS NOT NULL THEN
            outcome := 'already_handled';
            RETURN;
        END IF;
        IF NOT p_captured AND EXISTS (SELECT 1 FROM gateway_payments g
                                       WHERE g.method = p_checkout.method AND g.gateway_ref = p_gateway_ref
                                         AND g.released_at IS NOT NULL AND g.captured_paise = 0) THEN
            outcome := 'already_handled';
            RETURN;
        END IF;
        -- Its key is in the shopper's own namespace (UNIQUE (user_id, idempotency_key)) and carries the new
        -- job's random id: a key the shopper could work out (the checkout's id and a count, as before) could
        -- be taken first by one of their own requests, failing this insert on every webhook and sweep.
        INSERT INTO payment_jobs AS j (id, user_id, idempotency_key, request_hash, order_id, method, gateway_ref,
                                       checkout_id)
        VALUES (v_id, p_checkout.user_id, 'gateway:' || p_checkout.id || ':' || v_id, 'gateway-notified',
                p_checkout.order_id, p_checkout.method, p_gateway_ref, p_checkout.id)
        RETURNING * INTO v_job;
        UPDATE gateway_checkouts c SET job_id = v_job.id, updated_at = now() WHERE c.id = p_checkout.id;
        outcome := 'job_created';
    END IF;
    job_id := v_job.id;
    user_id := v_job.user_id;
    order_id := v_job.order_id;
    parks := v_job.parks;
END;
$$;

-- Records a verified gateway webhook once and does the bookkeeping it asks for; no money moves here.
-- Once: UNIQUE (gateway, body_sha256), the digest of the raw body both gateways sign, never the
-- unsigned header id (p_event_id, kept to match the gateway's dashboard). p_body: the raw bytes, kept
-- whole; payload is their jsonb when jsonb can hold them. p_success: the event says money was taken
-- for p_gateway_ref (Razorpay payment.authorized / payment.captured / order.paid, Cashfree
-- PAYMENT_SUCCESS_WEBHOOK); p_failure: an attempt ended without money (a parked job is woken to look
-- again, at most once per p_wake_interval_s after it last looked). p_refund_id / p_refund_state: a
-- refund's new state, p_refund_ref / p_refund_amount_paise / p_refund_currency what the gateway says of
-- it (a refund made at the gateway is recorded from them). p_signed_at: Cashfree's signed timestamp;
-- older than p_fresh_for_s, the event is recorded but does no work (the sweeper's reconciliation settles
-- its checkout). p_readable false:
-- the body is not JSON we read (recorded, nothing done). The previous release's call (no p_body, the
-- rest NULL) is deduplicated on its payload's text and wakes without an interval, as it did.
-- Outcomes (pq_webhook_outcome):
--   duplicate          -> seen before; nothing changed
--   unreadable         -> recorded; not a JSON object we read, nothing done
--   stale              -> recorded; signed longer ago than p_fresh_for_s, nothing done
--   unknown_checkout   -> recorded; no checkout of ours has this gateway order
--   refund_updated     -> a refund in the books took the reported state
--   refund_failed      -> ... and that state is failed (retried later, or owed: pq_refund_settled)
--   refund_after_fulfilment -> a refund made at the gateway of a payment already applied to its order:
--                         recorded (pq_refund_reported), in front of the operator, the order stays paid
--   refund_unmatched   -> a refund of a payment no job of ours holds (yet): kept in gateway_refund_reports,
--                         which the fulfilment of a later job for it reads
--   wake_deferred      -> recorded; the parked job looked less than p_wake_interval_s ago (the
--                         sweeper wakes it after reconcile_after_s)
--   ignored            -> recorded; nothing to do
--   job_created | job_woken | job_live | already_handled -> pq_checkout_settle's
DROP FUNCTION IF EXISTS pq_webhook_record(text, text, text, text, text, boolean, boolean, text, text, text, jsonb);
DROP FUNCTION IF EXISTS pq_webhook_record(text, text, text, text, text, boolean, boolean, text, text, text, jsonb,
                                          bytea, timestamptz, double precision, double precision, boolean);
DROP FUNCTION IF EXISTS pq_webhook_record(text, text, text, text, text, boolean, boolean, text, text, text, jsonb,
                                          bytea, timestamptz, double precision, double precision, boolean,
                                          text, bigint, text);
CREATE FUNCTION pq_webhook_record(p_gateway text, p_event_id text, p_event_type text, p_gateway_order_id text,
                                  p_gateway_ref text, p_success boolean, p_failure boolean, p_refund_id text,
                                  p_refund_state text, p_refund_status text, p_payload jsonb,
                                  p_body bytea DEFAULT NULL, p_signed_at timestamptz DEFAULT NULL,
                                  p_fresh_for_s double precision DEFAULT NULL,
                                  p_wake_interval_s double precision DEFAULT NULL, p_readable boolean DEFAULT true,
                                  p_refund_ref text DEFAULT NULL, p_refund_amount_paise bigint DEFAULT NULL,
                                  p_refund_currency text DEFAULT NULL,
                                  OUT outcome pq_webhook_outcome, OUT job_id uuid, OUT user_id text,
                                  OUT order_id bigint, OUT parks integer)
LANGUAGE plpgsql SET enable_seqscan = off AS $$
DECLARE
    v_event_id bigint;
    v_checkout gateway_checkouts%ROWTYPE;
    v_digest   bytea := sha256(coalesce(p_body, convert_to(p_payload::text, 'UTF8')));
    v_payload  jsonb := p_payload;
    v_changed  boolean;
    v_failed   boolean;
    v_after_applied boolean;
    v_known    boolean;
BEGIN
    IF p_body IS NOT NULL THEN
        BEGIN
            v_payload := convert_from(p_body, 'UTF8')::jsonb;
        EXCEPTION WHEN data_exception OR program_limit_exceeded THEN
            v_payload := NULL;  -- not UTF-8, "\u0000", a lone surrogate, NaN, nested too deep: body keeps it
        END;
    END IF;
    INSERT INTO gateway_webhook_events (gateway, event_id, event_type, gateway_order_id, gateway_payment_id, payload,
                                        body_sha256, body, signed_at)
    VALUES (p_gateway, coalesce(p_event_id, 'sha256:' || encode(v_digest, 'hex')), p_event_type, p_gateway_order_id,
            p_gateway_ref, v_payload, v_digest, p_body, p_signed_at)
    ON CONFLICT (gateway, body_sha256) DO NOTHING
    RETURNING id INTO v_event_id;
    IF v_event_id IS NULL THEN
        outcome := 'duplicate';
        RETURN;
    END IF;
    IF NOT p_readable THEN
        outcome := 'unreadable';
    ELSIF p_refund_id IS NOT NULL THEN
        -- A refund of ours, or one made at the gateway of a payment we hold (recorded once): the books'
        -- one transition. p_gateway_ref: the refund's payment (Razorpay payment_id, Cashfree order_id).
        SELECT s.known, s.changed, s.failed, s.after_applied INTO v_known, v_changed, v_failed, v_after_applied
          FROM pq_refund_reported(p_gateway, p_gateway_ref, p_refund_id, p_refund_ref, p_refund_amount_paise,
                                  p_refund_currency, p_refund_state, p_refund_status) s;
        outcome := CASE WHEN NOT v_known THEN 'refund_unmatched'
                        WHEN v_after_applied THEN 'refund_after_fulfilment' WHEN v_failed THEN 'refund_failed'
                        WHEN v_changed THEN 'refund_updated' ELSE 'ignored' END;
    ELSIF p_signed_at < now() - make_interval(secs => p_fresh_for_s) THEN
        outcome := 'stale';
    ELSE
        SELECT * INTO v_checkout FROM gateway_checkouts c
         WHERE c.method = p_gateway AND c.gateway_order_id = p_gateway_order_id;
        IF NOT FOUND THEN
            outcome := 'unknown_checkout';
        ELSIF p_success AND p_gateway_ref IS NOT NULL THEN
            -- (A webhook's payment counts as captured: each success event comes once, and a job it makes for
            -- an authorisation released since only releases it again.)
            SELECT * INTO outcome, job_id, user_id, order_id, parks
              FROM pq_checkout_settle(v_checkout, p_gateway_ref, true);
        ELSIF p_failure THEN
            -- A parked job looks again (its order may now be TERMINATED, or another attempt SUCCESS), but
            -- not sooner than p_wake_interval_s after it last looked (parked_at: when that fetch ended),
            -- however many failure webhooks, distinct or not, arrive meanwhile.
            UPDATE payment_jobs j SET parked_at = NULL, sent_at = NULL
             WHERE j.checkout_id = v_checkout.id AND j.parked_at IS NOT NULL
               AND (p_wake_interval_s IS NULL OR j.parked_at <= now() - make_interval(secs => p_wake_interval_s))
            RETURNING j.id, j.user_id, j.order_id, j.parks INTO job_id, user_id, order_id, parks;
            IF FOUND THEN
                outcome := 'job_woken';
            ELSIF EXISTS (SELECT 1 FROM payment_jobs j WHERE j.checkout_id = v_checkout.id AND j.parked_at IS NOT NULL) THEN
                outcome := 'wake_deferred';
            ELSE
                outcome := 'ignored';
            END IF;
        ELSE
            outcome := 'ignored';
        END IF;
    END IF;
    UPDATE gateway_webhook_events e SET outcome = pq_webhook_record.outcome WHERE e.id = v_event_id;
END;
$$;

-- Whether a live job not parked holds the checkout (it settles the checkout itself): inlined into each lane of
-- pq_checkouts_to_reconcile (a SQL function of one expression), each lane keeping its own index.
CREATE OR REPLACE FUNCTION pq_checkout_has_live_job(p_checkout_id uuid) RETURNS boolean
LANGUAGE sql STABLE AS $$
    SELECT EXISTS (SELECT 1 FROM payment_jobs j
                    WHERE j.checkout_id = p_checkout_id AND j.status IN ('queued', 'processing')
                      AND j.parked_at IS NULL)
$$;

-- Checkouts whose verdict has not arrived, due for a reconciliation fetch: claimed by pushing their next
-- check out (spaced further each time, at most 30 minutes), so two sweepers never fetch one twice.
-- The checkout's live job, if any, is the one that settles it; those are skipped. Three lanes, each by its own
-- partial index (0006's, 0025's two), so that none holds up another:
--   created  -> up to p_limit;
--   expired, without the gateway's word yet (marked expired by pq_checkout_for_order, migration 0023) ->
--               up to a quarter of it: all a database held when 0023 ran was looked at once more, and that
--               backlog never holds up a checkout paid now;
--   watched  -> expired, found unpaid, but its gateway order takes a payment until watch_until
--               (pq_checkout_looked_at, migration 0025): up to a quarter too, however many a sale left.
-- An expired one is due until the gateway was found to hold no payment for it past the watch, if any
-- (next_check_at NULL). The expired lanes spend at most half the gateway's read budget.
DROP FUNCTION IF EXISTS pq_checkouts_to_reconcile(integer);
CREATE FUNCTION pq_checkouts_to_reconcile(p_limit integer) RETURNS SETOF gateway_checkouts
LANGUAGE sql AS $$
    WITH created AS (
        SELECT x.id FROM gateway_checkouts x
         WHERE x.status = 'created' AND x.next_check_at <= now()
           AND NOT pq_checkout_has_live_job(x.id)
         ORDER BY x.next_check_at
         LIMIT p_limit
           FOR UPDATE SKIP LOCKED
    ), unconfirmed AS (
        SELECT x.id FROM gateway_checkouts x
         WHERE x.status = 'expired' AND x.watch_until IS NULL AND x.next_check_at IS NOT NULL
           AND x.next_check_at <= now()
           AND NOT pq_checkout_has_live_job(x.id)
         ORDER BY x.next_check_at
         LIMIT greatest(1, p_limit / 4)
           FOR UPDATE SKIP LOCKED
    ), watched AS (
        SELECT x.id FROM gateway_checkouts x
         WHERE x.status = 'expired' AND x.watch_until IS NOT NULL AND x.next_check_at IS NOT NULL
           AND x.next_check_at <= now()
           AND NOT pq_checkout_has_live_job(x.id)
         ORDER BY x.next_check_at
         LIMIT greatest(1, p_limit / 4)
           FOR UPDATE SKIP LOCKED
    )
    UPDATE gateway_checkouts c
       SET next_check_at = now() + least(interval '30 minutes', interval '1 minute' * power(2, c.checks)),
           checks = c.checks + 1
     WHERE c.id IN (SELECT id FROM created UNION ALL SELECT id FROM unconfirmed UNION ALL SELECT id FROM watched)
    RETURNING c.*
$$;

-- The reconciliation found a checkout's gateway order paid (p_gateway_ref: the payment; Cashfree: the
-- order) or, past its expiry and grace, unpaid (p_gateway_ref NULL: the checkout expires). An expired one
-- is then confirmed, no more fetches, unless its gateway order takes payment after its expiry and
-- p_watch_until is still ahead (Razorpay's: PaymentGateway.order_expires): it is watched, looked at again a
-- day on (Razorpay retries a webhook for 24 hours: a look sooner finds little a webhook would not bring),
-- in a lane of its own (pq_checkouts_to_reconcile), so that a late payment whose webhooks were all lost is
-- found. A look that fails leaves the claim's spacing (at most 30 minutes). p_captured: the payment found is
-- captured, not only authorised (pq_checkout_settle). Outcomes as pq_checkout_settle, or ignored. An expired
-- checkout whose payment a job already holds needs no more fetches either: that job's end books it (one a job
-- released is still looked at, at the claim's spacing: the gateway may capture it yet, or refund it).
-- (A name of its own, not pq_checkout_looked_at's or pq_checkout_reconciled's: a deploy of the previous
-- release re-applies those with their arguments, and an overload with one more, defaulted, would make their
-- calls ambiguous.)
DROP FUNCTION IF EXISTS pq_checkout_found(uuid, text, boolean, timestamptz);
CREATE FUNCTION pq_checkout_found(p_checkout_id uuid, p_gateway_ref text, p_captured boolean,
                                  p_watch_until timestamptz,
                                  OUT outcome pq_webhook_outcome, OUT job_id uuid, OUT user_id text,
                                  OUT order_id bigint, OUT parks integer)
LANGUAGE plpgsql SET enable_seqscan = off AS $$
DECLARE
    v_checkout gateway_checkouts%ROWTYPE;
    v_watched boolean := p_watch_until > now();
BEGIN
    SELECT * INTO v_checkout FROM gateway_checkouts c WHERE c.id = p_checkout_id;
    IF p_gateway_ref IS NULL THEN
        UPDATE gateway_checkouts
           SET status = 'expired', updated_at = now(),
               watch_until = CASE WHEN v_watched THEN p_watch_until END,
               next_check_at = CASE WHEN v_watched THEN now() + interval '1 day' END
         WHERE gateway_checkouts.id = p_checkout_id AND status IN ('created', 'expired') AND expires_at < now()
           AND NOT EXISTS (SELECT 1 FROM payment_jobs j WHERE j.checkout_id = p_checkout_id
                                                        AND j.status IN ('queued', 'processing'));
        outcome := 'ignored';
        RETURN;
    END IF;
    SELECT * INTO outcome, job_id, user_id, order_id, parks
      FROM pq_checkout_settle(v_checkout, p_gateway_ref, p_captured);
    IF outcome = 'already_handled' AND v_checkout.status = 'expired'
       AND (SELECT h.id FROM pq_gateway_ref_holder(v_checkout.method, p_gateway_ref) h) IS NOT NULL THEN
        UPDATE gateway_checkouts SET next_check_at = NULL WHERE gateway_checkouts.id = p_checkout_id;
    END IF;
END;
$$;

-- The previous releases' calls: any payment found counts as captured; pq_checkout_reconciled, no watch
-- either (an unpaid expired checkout is confirmed at once).
DROP FUNCTION IF EXISTS pq_checkout_looked_at(uuid, text, timestamptz);
CREATE FUNCTION pq_checkout_looked_at(p_checkout_id uuid, p_gateway_ref text, p_watch_until timestamptz,
                                      OUT outcome pq_webhook_outcome, OUT job_id uuid, OUT user_id text,
                                      OUT order_id bigint, OUT parks integer)
LANGUAGE sql AS $$
    SELECT * FROM pq_checkout_found(p_checkout_id, p_gateway_ref, true, p_watch_until)
$$;

DROP FUNCTION IF EXISTS pq_checkout_reconciled(uuid, text);
CREATE FUNCTION pq_checkout_reconciled(p_checkout_id uuid, p_gateway_ref text,
                                       OUT outcome pq_webhook_outcome, OUT job_id uuid, OUT user_id text,
                                       OUT order_id bigint, OUT parks integer)
LANGUAGE sql AS $$
    SELECT * FROM pq_checkout_found(p_checkout_id, p_gateway_ref, true, NULL)
$$;

-- Parked jobs nothing woke for p_older_than_s: woken to fetch the gateway again (the caller sends them).
DROP FUNCTION IF EXISTS pq_wake_parked_jobs(double precision, integer);
CREATE FUNCTION pq_wake_parked_jobs(p_older_than_s double precision, p_limit integer)
RETURNS TABLE (id uuid, user_id text, order_id bigint, method text, parks integer)
LANGUAGE sql AS $$
    UPDATE payment_jobs j SET parked_at = NULL, sent_at = NULL
     WHERE j.id IN (SELECT x.id FROM payment_jobs x
                     WHERE x.parked_at IS NOT NULL AND x.parked_at < now() - make_interval(secs => p_older_than_s)
                     ORDER BY x.parked_at
                     LIMIT p_limit
                       FOR UPDATE SKIP LOCKED)
    RETURNING j.id, j.user_id, j.order_id, j.method, j.parks
$$;
