-- Gateway books (tables gateway_payments and gateway_refunds, migration 0010). Per gateway payment:
--
--     captured = applied to our order + refunded (final) + refunding (in flight) + owed (to an operator)
--
-- and an authorisation we will not capture is recorded as released. The processor (gateway_payment.sql),
-- the webhooks (checkouts.sql) and the sweeper (shared/services/reconcile.py) write through these
-- functions; pq_gateway_books() reads the books, local/invariants.py and the operator's views check them.

-- The refund policy, in one place. A refund the gateway ends failed (Razorpay refund.failed, Cashfree
-- CANCELLED) is tried again with a fresh reference: 3 attempts spaced 1, then 4 minutes apart (long enough
-- for a bank's passing refusal to clear, short enough that the shopper hears within minutes), then owed.
-- An operator's retry of an owed refund allows one attempt more.
CREATE OR REPLACE FUNCTION pq_refund_policy(p_attempt integer, p_operator_retries integer,
                                            OUT retry boolean, OUT retry_after interval)
LANGUAGE sql IMMUTABLE AS $$
    SELECT p_attempt < 3 + p_operator_retries, interval '1 minute' * power(4, least(p_attempt, 5) - 1)
$$;

-- What a job saw of its payment at the gateway, once the payment is known to be the job's checkout's:
-- authorised or captured amounts (captured never decreases: refunds are rows of their own); p_release:
-- we will never capture the authorisation.
CREATE OR REPLACE FUNCTION pq_payment_seen(p_job payment_jobs, p_currency text, p_authorized_paise bigint,
                                           p_captured_paise bigint, p_release boolean DEFAULT false)
RETURNS void
LANGUAGE sql AS $$
    INSERT INTO gateway_payments AS g (method, gateway_ref, order_id, checkout_id, job_id, currency,
                                       authorized_paise, captured_paise, released_at)
    VALUES (p_job.method, p_job.gateway_ref, p_job.order_id, p_job.checkout_id, p_job.id, p_currency,
            p_authorized_paise, p_captured_paise, CASE WHEN p_release THEN now() END)
    ON CONFLICT (method, gateway_ref) DO UPDATE
       SET job_id = excluded.job_id, currency = excluded.currency,
           authorized_paise = excluded.authorized_paise,
           captured_paise = greatest(g.captured_paise, excluded.captured_paise),
           released_at = coalesce(g.released_at, excluded.released_at),
           updated_at = now()
$$;

-- A refund's new state as the gateway reported it (its answer to our request, a webhook, the sweeper's
-- fetch), from any path: the one transition of the books. A failed refund of ours is scheduled to be
-- tried again or, its attempts spent, owed. changed: the state moved; failed: it moved to failed now;
-- owed: it is owed now.
CREATE OR REPLACE FUNCTION pq_refund_settled(p_refund_id bigint, p_state text, p_gateway_status text,
                                             p_gateway_refund_id text DEFAULT NULL,
                                             OUT changed boolean, OUT failed boolean, OUT owed boolean)
LANGUAGE plpgsql SET enable_seqscan = off AS $$
DECLARE
    v_refund gateway_refunds%ROWTYPE;
    v_policy record;
BEGIN
    SELECT * INTO v_refund FROM gateway_refunds r WHERE r.id = p_refund_id FOR UPDATE;
    changed := false;
    failed := false;
    owed := v_refund.owed_at IS NOT NULL;
    -- Final states stay final; a pending report of a pending refund only refreshes the gateway's word.
    IF NOT FOUND OR v_refund.state IN ('succeeded', 'failed')
       OR (v_refund.state = p_state AND v_refund.gateway_status IS NOT DISTINCT FROM p_gateway_status) THEN
        RETURN;
    END IF;
    -- The policy counts the attempts that reached the gateway: not the job's withdrawn ones before this one
    -- (pq_refund_withdrawn: refused for asking more than refunds made at the gateway had left).
    SELECT * INTO v_policy
      FROM pq_refund_policy(v_refund.attempt
                            - (SELECT count(*) FROM gateway_refunds w
                                WHERE w.method = v_refund.method AND w.gateway_ref = v_refund.gateway_ref
                                  AND w.job_id = v_refund.job_id AND w.origin = 'ours'
                                  AND w.withdrawn_at IS NOT NULL AND w.attempt < v_refund.attempt)::integer,
                            v_refund.operator_retries);
    failed := p_state = 'failed';
    owed := failed AND v_refund.origin = 'ours' AND NOT v_policy.retry;
    UPDATE gateway_refunds r
       SET state = p_state, gateway_status = p_gateway_status,
           gateway_refund_id = coalesce(r.gateway_refund_id, p_gateway_refund_id),
           settled_at = CASE WHEN p_state IN ('succeeded', 'failed') THEN now() END,
           retry_at = CASE WHEN failed AND r.origin = 'ours' AND v_policy.retry THEN now() + v_policy.retry_after END,
           owed_at = CASE WHEN owed THEN now() END
     WHERE r.id = p_refund_id;
    IF failed AND v_refund.origin = 'gateway' THEN
        PERFORM pq_failed_refunds_taken_over(v_refund.method, v_refund.gateway_ref);
    END IF;
    changed := true;
END;
$$;

-- A job's next refund attempt of ours, and its reference: the job's (gateway_attempts.refund_ref), suffixed
-- _N from the second attempt on (the gateway would answer an old reference with its failed or refused
-- refund). The one place attempts are named: pq_refund_request, pq_refunds_to_retry,
-- pq_refund_refusal_explained.
CREATE OR REPLACE FUNCTION pq_refund_next_attempt(p_job_id uuid, OUT attempt integer, OUT refund_ref text)
LANGUAGE sql STABLE SET enable_seqscan = off AS $$
    SELECT n.attempt, a.refund_ref || CASE WHEN n.attempt > 1 THEN '_' || n.attempt ELSE '' END
      FROM gateway_attempts a
      CROSS JOIN LATERAL (SELECT coalesce(max(r.attempt), 0) + 1 AS attempt FROM gateway_refunds r
                           WHERE r.job_id = p_job_id AND r.origin = 'ours') n
     WHERE a.job_id = p_job_id
$$;

-- Before a refund of ours leaves: the request, recorded (state requested) with the reference the gateway
-- deduplicates it by, and the captured payment it returns, booked. A requested refund of the job whose
-- answer was lost is answered as is (same reference: the gateway returns the first refund).
CREATE OR REPLACE FUNCTION pq_refund_request(p_job_id uuid, p_amount_paise bigint, p_currency text, p_reason text,
                                             p_captured_paise bigint,
                                             OUT refund_id bigint, OUT refund_ref text, OUT amount_paise bigint)
LANGUAGE plpgsql SET enable_seqscan = off AS $$
DECLARE
    v_job payment_jobs%ROWTYPE;
BEGIN
    SELECT * INTO v_job FROM payment_jobs j WHERE j.id = p_job_id FOR UPDATE;
    PERFORM pq_payment_seen(v_job, p_currency, 0, p_captured_paise);
    -- The job's refund of ours: its first attempt not withdrawn (pq_refund_withdrawn).
    SELECT r.id, r.refund_ref, r.amount_paise INTO refund_id, refund_ref, amount_paise
      FROM gateway_refunds r WHERE r.job_id = p_job_id AND r.origin = 'ours' AND r.withdrawn_at IS NULL
     ORDER BY r.attempt LIMIT 1;
    IF FOUND THEN
        RETURN;
    END IF;
    -- The sweeper looks a requested refund up a minute on (its sender is done with it by then). After a
    -- withdrawn attempt, the next one, under a fresh reference (pq_refund_next_attempt).
    INSERT INTO gateway_refunds (job_id, order_id, method, gateway_ref, refund_ref, amount_paise, currency,
                                 reason, state, attempt, next_check_at)
    SELECT v_job.id, v_job.order_id, v_job.method, v_job.gateway_ref, n.refund_ref, p_amount_paise, p_currency,
           p_reason, 'requested', n.attempt, now() + interval '1 minute'
      FROM pq_refund_next_attempt(p_job_id) n
    RETURNING id, gateway_refunds.refund_ref, gateway_refunds.amount_paise INTO refund_id, refund_ref, amount_paise;
END;
$$;

-- The gateway refused a refund of ours outright (a 4xx: more than is refundable, a payment it will not
-- refund): sending it again would be refused again, so it is owed at once, with the gateway's reason.
CREATE OR REPLACE FUNCTION pq_refund_refused(p_refund_id bigint, p_error text) RETURNS void
LANGUAGE sql AS $$
    UPDATE gateway_refunds
       SET state = 'failed', settled_at = now(), retry_at = NULL, owed_at = now(), last_error = left(p_error, 300),
           gateway_refund_id = coalesce(gateway_refund_id, 'refused:' || refund_ref)
     WHERE id = p_refund_id AND state = 'requested'
$$;

-- A refund of ours the gateway refused, or that the processor is about to send again, withdrawn when the
-- payment's refunds as the gateway lists them (p_refunds, as pq_gateway_refunds_seen takes them; ours not
-- among them) explain it: refunds made at the gateway (the merchant's dashboard) left less than it asks for
-- (migration 0020). It would not fit beside them, so the gateway holds nothing of it: neither owed nor
-- retried, and the job asks for what is left (left_paise, of the captured amount the books hold) in its next
-- attempt (pq_refund_request, pq_refund_refusal_explained). The one place this rule is decided. The attempt is
-- requested, or was already refused outright and owed (the sweeper sent the requested refund while the job's
-- delivery waited for its answer or a token: pq_refund_refused). withdrawn false: not explained, or any other
-- state (one the gateway holds), which the caller does not ask for again, or it would be refused again and
-- again (it owes it instead).
DROP FUNCTION IF EXISTS pq_refund_withdrawn(bigint, text);
CREATE OR REPLACE FUNCTION pq_refund_withdrawn(p_refund_id bigint, p_refunds jsonb, p_error text,
                                               OUT withdrawn boolean, OUT left_paise bigint)
LANGUAGE plpgsql SET enable_seqscan = off AS $$
DECLARE
    v_refund gateway_refunds%ROWTYPE;
    v_captured bigint;
BEGIN
    withdrawn := false;
    SELECT * INTO v_refund FROM gateway_refunds r WHERE r.id = p_refund_id;
    SELECT g.captured_paise INTO v_captured FROM gateway_payments g
     WHERE g.method = v_refund.method AND g.gateway_ref = v_refund.gateway_ref;
    left_paise := v_captured - (SELECT coalesce(sum((x->>'amount_paise')::bigint), 0)
                                  FROM jsonb_array_elements(p_refunds) x WHERE x->>'state' <> 'failed');
    IF NOT (left_paise < v_captured AND v_refund.amount_paise > left_paise) THEN
        RETURN;
    END IF;
    UPDATE gateway_refunds
       SET state = 'failed', settled_at = coalesce(settled_at, now()), retry_at = NULL, owed_at = NULL,
           withdrawn_at = now(), last_error = left('withdrawn: ' || p_error, 300),
           gateway_refund_id = coalesce(gateway_refund_id, 'refused:' || refund_ref)
     WHERE id = p_refund_id AND origin = 'ours' AND withdrawn_at IS NULL
       AND (state = 'requested' OR (state = 'failed' AND gateway_refund_id = 'refused:' || refund_ref));
    withdrawn := FOUND;
END;
$$;

-- The sweeper's refund of ours the gateway refused, explained by the payment's refunds it read then (p_refunds,
-- as pq_gateway_refunds_seen takes them; ours not among them), as the processor explains its own
-- (shared/services/gateway.py _Delivery.refund): refunds made at the gateway (the merchant's dashboard) that
-- leave less than it asks for are booked, it is withdrawn (pq_refund_withdrawn: nothing was created at the
-- gateway) and what they left is requested as the job's next attempt (next_*: NULL when nothing is left),
-- for the sweeper to send; else it is owed (pq_refund_refused). The payment's captured amount is the
-- books' (pq_refund_request booked it before the first refund of ours left). One transaction, so the
-- refusal never stands owed beside the refunds that explain it, nor withdrawn with no rest requested.
CREATE OR REPLACE FUNCTION pq_refund_refusal_explained(p_refund_id bigint, p_refunds jsonb, p_error text,
                                                       OUT withdrawn boolean, OUT owed boolean,
                                                       OUT next_refund_id bigint, OUT next_refund_ref text,
                                                       OUT next_amount_paise bigint)
LANGUAGE plpgsql SET enable_seqscan = off AS $$
DECLARE
    v_refund gateway_refunds%ROWTYPE;
    v_payment gateway_payments%ROWTYPE;
    v_left bigint;
BEGIN
    withdrawn := false;
    owed := false;
    SELECT * INTO v_refund FROM gateway_refunds r WHERE r.id = p_refund_id;
    SELECT * INTO v_payment FROM gateway_payments g
     WHERE g.method = v_refund.method AND g.gateway_ref = v_refund.gateway_ref;
    SELECT w.withdrawn, w.left_paise INTO withdrawn, v_left
      FROM pq_refund_withdrawn(p_refund_id, p_refunds, p_error) w;
    IF NOT withdrawn THEN
        PERFORM pq_refund_refused(p_refund_id, p_error);
        owed := EXISTS (SELECT 1 FROM gateway_refunds r WHERE r.id = p_refund_id AND r.owed_at IS NOT NULL);
        RETURN;
    END IF;
    PERFORM pq_gateway_refunds_seen(v_refund.job_id, p_refunds, v_payment.currency, v_payment.captured_paise);
    IF v_left <= 0 THEN
        RETURN;
    END IF;
    -- The job's next attempt (pq_refund_next_attempt), looked up a minute on, by when the sweeper that
    -- requests it has sent it.
    INSERT INTO gateway_refunds (job_id, order_id, method, gateway_ref, refund_ref, amount_paise, currency, reason,
                                 state, attempt, operator_retries, next_check_at)
    SELECT v_refund.job_id, v_refund.order_id, v_refund.method, v_refund.gateway_ref, n.refund_ref, v_left,
           v_refund.currency, v_refund.reason, 'requested', n.attempt, v_refund.operator_retries,
           now() + interval '1 minute'
      FROM pq_refund_next_attempt(v_refund.job_id) n
    RETURNING id, refund_ref, amount_paise INTO next_refund_id, next_refund_ref, next_amount_paise;
END;
$$;

-- A refund as the gateway reports it (a webhook, or its list of a payment's refunds), from any path: the
-- books' row for it takes the reported state (pq_refund_settled). The row is found by the gateway's id,
-- else by our reference for this payment (a refund of ours whose answer is not recorded yet: Razorpay's
-- receipt, Cashfree's refund_id); else the refund was made at the gateway (the merchant's, in its
-- dashboard) and is recorded once, origin gateway, for the job that holds the payment (p_job_id, else
-- pq_gateway_ref_holder, else the job that last looked at it). The payment's order is locked before its
-- fulfilment is read, as pq_complete_gateway_payment locks it before it fulfils and before it reads the
-- refunds: of the two, whichever takes the order second sees the other's work. A refund of a payment
-- already applied to its order is marked after_applied_at (the books take it out of applied; the operator
-- sees it; after_applied says so). A payment no job of ours holds yet: the report is kept in
-- gateway_refund_reports for the job to come (known false).
CREATE OR REPLACE FUNCTION pq_refund_reported(p_method text, p_gateway_ref text, p_gateway_refund_id text,
                                              p_refund_ref text, p_amount_paise bigint, p_currency text,
                                              p_state text, p_gateway_status text, p_job_id uuid DEFAULT NULL,
                                              OUT known boolean, OUT changed boolean, OUT failed boolean,
                                              OUT owed boolean, OUT after_applied boolean)
LANGUAGE plpgsql SET enable_seqscan = off AS $$
DECLARE
    v_id bigint;
    v_job payment_jobs%ROWTYPE;
    v_applied boolean;
BEGIN
    known := true;
    changed := false;
    failed := false;
    owed := false;
    after_applied := false;
    SELECT r.id INTO v_id FROM gateway_refunds r WHERE r.method = p_method AND r.gateway_refund_id = p_gateway_refund_id;
    IF NOT FOUND THEN
        SELECT r.id INTO v_id FROM gateway_refunds r
         WHERE r.method = p_method AND r.origin = 'ours' AND r.refund_ref = p_refund_ref
           AND r.gateway_ref = p_gateway_ref;
    END IF;
    IF v_id IS NULL THEN
        SELECT j.* INTO v_job FROM payment_jobs j
         WHERE j.id = coalesce(p_job_id, (SELECT h.id FROM pq_gateway_ref_holder(p_method, p_gateway_ref) h),
                               (SELECT g.job_id FROM gateway_payments g
                                 WHERE g.method = p_method AND g.gateway_ref = p_gateway_ref))
           FOR UPDATE;
        IF NOT FOUND OR p_amount_paise IS NULL OR p_amount_paise <= 0 THEN
            known := false;
            IF p_gateway_refund_id IS NOT NULL AND p_gateway_ref IS NOT NULL THEN
                INSERT INTO gateway_refund_reports AS x (method, gateway_refund_id, gateway_ref, refund_ref,
                                                         amount_paise, currency, state, gateway_status)
                VALUES (p_method, p_gateway_refund_id, p_gateway_ref, p_refund_ref,
                        CASE WHEN p_amount_paise > 0 THEN p_amount_paise END, p_currency, p_state, p_gateway_status)
                ON CONFLICT (method, gateway_refund_id) DO UPDATE
                   SET state = excluded.state, gateway_status = excluded.gateway_status, reported_at = now()
                 WHERE x.state NOT IN ('succeeded', 'failed');
            END IF;
            RETURN;
        END IF;
        PERFORM 1 FROM orders o WHERE o.id = v_job.order_id FOR UPDATE;
        v_applied := EXISTS (SELECT 1 FROM payment_transactions t
                              WHERE t.method = p_method AND t.gateway_ref = p_gateway_ref AND t.status = 'captured');
        INSERT INTO gateway_refunds (job_id, order_id, method, gateway_ref, refund_ref, gateway_refund_id,
                                     amount_paise, currency, reason, state, gateway_status, origin, after_applied_at)
        VALUES (v_job.id, v_job.order_id, p_method, p_gateway_ref, coalesce(p_refund_ref, p_gateway_refund_id),
                p_gateway_refund_id, p_amount_paise, coalesce(p_currency, 'INR'), 'refunded_at_gateway', 'pending',
                NULL, 'gateway', CASE WHEN v_applied THEN now() END)
        ON CONFLICT (method, gateway_refund_id) WHERE gateway_refund_id IS NOT NULL DO NOTHING
        RETURNING id INTO v_id;
        IF v_id IS NULL THEN  -- a concurrent report recorded it first
            SELECT r.id INTO v_id FROM gateway_refunds r
             WHERE r.method = p_method AND r.gateway_refund_id = p_gateway_refund_id;
        ELSE
            after_applied := v_applied;
        END IF;
    END IF;
    SELECT s.changed, s.failed, s.owed INTO changed, failed, owed
      FROM pq_refund_settled(v_id, p_state, p_gateway_status, p_gateway_refund_id) s;
    changed := changed OR after_applied;
END;
$$;

-- What the job read of its payment's refunds at the gateway before deciding (p_refunds:
-- [{"gateway_refund_id", "refund_ref", "amount_paise", "currency", "state", "gateway_status"}]), each
-- reported as above, and the payment's capture booked with them.
CREATE OR REPLACE FUNCTION pq_gateway_refunds_seen(p_job_id uuid, p_refunds jsonb, p_currency text,
                                                   p_captured_paise bigint)
RETURNS void
LANGUAGE plpgsql SET enable_seqscan = off AS $$
DECLARE
    v_job payment_jobs%ROWTYPE;
    v_refund jsonb;
BEGIN
    SELECT * INTO v_job FROM payment_jobs j WHERE j.id = p_job_id FOR UPDATE;
    PERFORM pq_payment_seen(v_job, p_currency, 0, p_captured_paise);
    FOR v_refund IN SELECT * FROM jsonb_array_elements(p_refunds) LOOP
        PERFORM pq_refund_reported(v_job.method, v_job.gateway_ref, v_refund->>'gateway_refund_id',
                                   v_refund->>'refund_ref', (v_refund->>'amount_paise')::bigint,
                                   v_refund->>'currency', v_refund->>'state', v_refund->>'gateway_status',
                                   v_job.id);
    END LOOP;
    -- What the job read as failed, it returns itself (it returns all that the others leave): never taken over.
    UPDATE gateway_refunds r SET covered_by = v_job.id
      FROM jsonb_array_elements(p_refunds) x
     WHERE r.method = v_job.method AND r.gateway_ref = v_job.gateway_ref AND r.origin = 'gateway'
       AND r.gateway_refund_id = x->>'gateway_refund_id' AND x->>'state' = 'failed' AND r.covered_by IS NULL;
END;
$$;

-- Failed refunds of ours whose retry is due, claimed, each with its next attempt recorded (requested,
-- a fresh reference: the gateway would answer the old one with the failed refund) for the sweeper to send.
-- One per job per call, its earliest due: the statement reads the job's attempts as they were before it,
-- so two of one job (two failed dashboard refunds taken over, or ours and the gateway's) would both be
-- given the same next attempt and reference, and the unique reference would fail every call. The job's
-- next one is claimed by a later call.
CREATE OR REPLACE FUNCTION pq_refunds_to_retry(p_limit integer) RETURNS SETOF gateway_refunds
LANGUAGE sql AS $$
    WITH due AS (
        UPDATE gateway_refunds r SET retry_at = NULL
         WHERE r.id IN (SELECT x.id FROM gateway_refunds x
                         WHERE x.retry_at <= now()
                           AND NOT EXISTS (SELECT 1 FROM gateway_refunds y
                                            WHERE y.job_id = x.job_id AND y.retry_at <= now()
                                              AND (y.retry_at, y.id) < (x.retry_at, x.id))
                         ORDER BY x.retry_at
                         LIMIT p_limit
                           FOR UPDATE SKIP LOCKED)
        RETURNING r.*
    )
    -- The job's next attempt of ours (pq_refund_next_attempt). A failed refund made at the gateway is taken
    -- over by attempt 1 of ours if the job sent none before.
    INSERT INTO gateway_refunds (job_id, order_id, method, gateway_ref, refund_ref, amount_paise, currency, reason,
                                 state, attempt, operator_retries, next_check_at)
    SELECT d.job_id, d.order_id, d.method, d.gateway_ref, n.refund_ref,
           d.amount_paise, d.currency, d.reason, 'requested', n.attempt, d.operator_retries,
           now() + interval '1 minute'
      FROM due d
      CROSS JOIN LATERAL pq_refund_next_attempt(d.job_id) n
    RETURNING *
$$;

-- Refunds of ours and the gateway's not final yet, due for a look: claimed by pushing their next check out.
-- A requested one (its answer lost) is looked up by its reference and, if the gateway has none, sent again.
DROP FUNCTION IF EXISTS pq_refunds_to_check(integer);
CREATE FUNCTION pq_refunds_to_check(p_limit integer) RETURNS SETOF gateway_refunds
LANGUAGE sql AS $$
    -- Spaced out (1, 2, 4 ... minutes, at most 6 hours): a refund pending for days at the bank must not spend
    -- the refund-read budget (Cashfree Get Refund: 30 a minute) that payments need; webhooks settle most.
    UPDATE gateway_refunds r
       SET next_check_at = now() + least(interval '6 hours', interval '1 minute' * power(2, least(r.checks, 10))),
           checks = r.checks + 1
     WHERE r.id IN (SELECT x.id FROM gateway_refunds x
                     WHERE x.state IN ('requested', 'pending') AND x.next_check_at <= now()
                     ORDER BY x.next_check_at
                     LIMIT p_limit
                       FOR UPDATE SKIP LOCKED)
    RETURNING r.*
$$;

-- An operator asks for an owed refund to be tried again (POST /v1/refunds/{id}/retry): it is due at once
-- and has one attempt more. Idempotent: a refund that is not owed is answered as it stands.
-- outcome: scheduled | not_owed | not_found.
CREATE OR REPLACE FUNCTION pq_refund_operator_retry(p_refund_id bigint, OUT outcome pq_refund_retry_outcome,
                                                    OUT state text,
                                                    OUT amount_paise bigint)
LANGUAGE plpgsql AS $$
BEGIN
    UPDATE gateway_refunds r
       SET owed_at = NULL, retry_at = now(), operator_retries = r.operator_retries + 1
     WHERE r.id = p_refund_id AND r.owed_at IS NOT NULL
    RETURNING r.state, r.amount_paise INTO state, amount_paise;
    IF FOUND THEN
        outcome := 'scheduled';
        RETURN;
    END IF;
    SELECT r.state, r.amount_paise INTO state, amount_paise FROM gateway_refunds r WHERE r.id = p_refund_id;
    outcome := CASE WHEN FOUND THEN 'not_owed' ELSE 'not_found' END;
END;
$$;

-- The books, per gateway payment we learned of. unaccounted_paise: captured money in none of applied,
-- refunded, refunding, owed, plus an authorisation that no live job will capture and nobody released.
-- applied_paise is net of refunds made at the gateway after the payment was applied to its order
-- (returned_after_applied_paise: the merchant gave that back for a fulfilled order; the operator sees it).
DROP FUNCTION IF EXISTS pq_gateway_books();
CREATE FUNCTION pq_gateway_books()
RETURNS TABLE (method text, gateway_ref text, order_id bigint, job_id uuid, currency text,
               authorized_paise bigint, captured_paise bigint, applied_paise bigint, refunded_paise bigint,
               refunding_paise bigint, owed_paise bigint, released boolean, unaccounted_paise bigint,
               refunding_since timestamptz, owed_since timestamptz, returned_after_applied_paise bigint)
LANGUAGE sql STABLE AS $$
    SELECT g.method, g.gateway_ref, g.order_id, g.job_id, g.currency::text, g.authorized_paise, g.captured_paise,
           b.applied - b.returned, b.refunded, b.refunding, b.owed, g.released_at IS NOT NULL,
           g.captured_paise - (b.applied - b.returned) - b.refunded - b.refunding - b.owed
             + CASE WHEN g.captured_paise = 0 AND g.authorized_paise > 0 AND g.released_at IS NULL
                         AND NOT EXISTS (SELECT 1 FROM payment_jobs j
                                          WHERE j.method = g.method AND j.gateway_ref = g.gateway_ref
                                            AND j.status IN ('queued', 'processing'))
                    THEN g.authorized_paise ELSE 0 END,
           b.refunding_since, b.owed_since, b.returned
      FROM gateway_payments g
      CROSS JOIN LATERAL (
          SELECT coalesce((SELECT sum(t.amount_paise) FROM payment_transactions t
                            WHERE t.method = g.method AND t.gateway_ref = g.gateway_ref AND t.status = 'captured'),
                          0)::bigint AS applied,
                 coalesce(sum(r.amount_paise) FILTER (WHERE r.state = 'succeeded'), 0)::bigint AS refunded,
                 coalesce(sum(r.amount_paise) FILTER (WHERE r.state IN ('requested', 'pending')
                                                         OR r.retry_at IS NOT NULL), 0)::bigint AS refunding,
                 coalesce(sum(r.amount_paise) FILTER (WHERE r.owed_at IS NOT NULL), 0)::bigint AS owed,
                 coalesce(sum(r.amount_paise) FILTER (WHERE r.after_applied_at IS NOT NULL
                                                         AND r.state IN ('requested', 'pending', 'succeeded')),
                          0)::bigint AS returned,
                 min(r.created_at) FILTER (WHERE r.state IN ('requested', 'pending') OR r.retry_at IS NOT NULL)
                     AS refunding_since,
                 min(r.owed_at) AS owed_since
            FROM gateway_refunds r
           WHERE r.method = g.method AND r.gateway_ref = g.gateway_ref
      ) b
$$;

-- A refund made at the gateway that failed leaves its money with us once no job holds the payment: a refund
-- of ours takes it over (retry_at now: pq_refunds_to_retry sends it). While a job holds the payment live, it
-- reads the refunds itself and returns all they leave, so this runs again when that job ends unpaid
-- (pq_gateway_refunded): a refund that failed after the job read it (pending then) was left to no one, the
-- job returning only the rest (a review found it). One the job read as failed is in the job's own refund
-- (covered_by, pq_gateway_refunds_seen): never taken over. The payment's books are checked one transaction at
-- a time (a lock per payment, taken before they are read): a refund failing as its job ends is seen by
-- whichever of the two comes second. At most what the books find unaccounted is taken over: a refund of ours
-- beyond it would be refused. A payment applied to its order keeps its money (the merchant's failed refund of
-- a fulfilled order is the merchant's).
DROP FUNCTION IF EXISTS pq_failed_refunds_taken_over(text, text);
CREATE FUNCTION pq_failed_refunds_taken_over(p_method text, p_gateway_ref text) RETURNS void
LANGUAGE plpgsql AS $$
BEGIN
    PERFORM pg_advisory_xact_lock(x'50514250'::integer, hashtext(p_method || ':' || p_gateway_ref));  -- "PQBP"
    -- A statement after the lock: it reads what the transaction the lock waited for committed.
    WITH failed AS (
        SELECT r.id, sum(r.amount_paise) OVER (ORDER BY r.id) AS upto
          FROM gateway_refunds r
         WHERE r.method = p_method AND r.gateway_ref = p_gateway_ref AND r.origin = 'gateway'
           AND r.state = 'failed' AND r.retry_at IS NULL AND r.owed_at IS NULL AND r.after_applied_at IS NULL
           AND r.covered_by IS NULL
    )
    UPDATE gateway_refunds r SET retry_at = now()
      FROM failed f
     WHERE r.id = f.id
       AND f.upto <= (SELECT b.unaccounted_paise FROM pq_gateway_books() b
                       WHERE b.method = p_method AND b.gateway_ref = p_gateway_ref)
       AND NOT EXISTS (SELECT 1 FROM payment_transactions t
                        WHERE t.method = p_method AND t.gateway_ref = p_gateway_ref AND t.status = 'captured')
       AND NOT EXISTS (SELECT 1 FROM payment_jobs j
                        WHERE j.method = p_method AND j.gateway_ref = p_gateway_ref
                          AND j.gateway_ref_released_at IS NULL
                          AND j.status IN ('queued', 'processing', 'succeeded'));
END;
$$;

-- Money in no book: the gateway payments whose books moved in the last p_window (seen by a job, a refund of it
-- made or final, the job holding it ended: migration 0026's indexes) or that were found so before
-- (gateway_books_open), held by no live job, whose captured money is in none of applied, refunded, refunding
-- and owed, or short of what they add up to (pq_gateway_books' unaccounted_paise, not 0). Every such state is
-- a defect of ours: each path that moves money books it in the same transaction, and a live job's books are
-- its own until it ends. p_window longer than a sweep's period: a sweep missed (the sweeper down) does not let
-- a movement pass unseen.
CREATE OR REPLACE FUNCTION pq_books_unaccounted(p_window interval)
RETURNS TABLE (method text, gateway_ref text, order_id bigint, job_id uuid, captured_paise bigint,
               unaccounted_paise bigint)
LANGUAGE sql STABLE SET enable_seqscan = off AS $$
    WITH moved AS (
        SELECT g.method, g.gateway_ref FROM gateway_payments g WHERE g.updated_at > now() - p_window
        UNION
        SELECT r.method, r.gateway_ref FROM gateway_refunds r WHERE r.created_at > now() - p_window
        UNION
        SELECT r.method, r.gateway_ref FROM gateway_refunds r WHERE r.settled_at > now() - p_window
        UNION
        SELECT j.method, j.gateway_ref FROM payment_jobs j
         WHERE j.gateway_ref IS NOT NULL AND j.finished_at IS NOT NULL AND j.finished_at > now() - p_window
        UNION
        SELECT o.method, o.gateway_ref FROM gateway_books_open o
    )
    SELECT b.method, b.gateway_ref, b.order_id, b.job_id, b.captured_paise, b.unaccounted_paise
      FROM moved m
      CROSS JOIN LATERAL (SELECT * FROM pq_gateway_books() x
                           WHERE x.method = m.method AND x.gateway_ref = m.gateway_ref) b
     WHERE b.unaccounted_paise <> 0
       AND NOT EXISTS (SELECT 1 FROM payment_jobs j
                        WHERE j.method = b.method AND j.gateway_ref = b.gateway_ref
                          AND j.status IN ('queued', 'processing'))
     ORDER BY b.method, b.gateway_ref
$$;

-- The sweeper's books step (shared/services/books.py: an error line per payment, the metric
-- GatewayMoneyUnaccounted, its alarm): pq_books_unaccounted's payments, each kept in gateway_books_open with when
-- it was first found, and the kept ones whose books closed since let go. The alarm so stays on until the money
-- is placed.
CREATE OR REPLACE FUNCTION pq_books_check(p_window interval)
RETURNS TABLE (method text, gateway_ref text, order_id bigint, job_id uuid, captured_paise bigint,
               unaccounted_paise bigint, first_found_at timestamptz)
LANGUAGE sql AS $$
    WITH found AS (
        SELECT * FROM pq_books_unaccounted(p_window)
    ), kept AS (
        INSERT INTO gateway_books_open AS o (method, gateway_ref)
        SELECT f.method, f.gateway_ref FROM found f
        ON CONFLICT (method, gateway_ref) DO UPDATE SET last_found_at = now()
        RETURNING o.method, o.gateway_ref, o.first_found_at
    ), closed AS (
        DELETE FROM gateway_books_open o
         WHERE NOT EXISTS (SELECT 1 FROM found f WHERE f.method = o.method AND f.gateway_ref = o.gateway_ref)
    )
    SELECT f.method, f.gateway_ref, f.order_id, f.job_id, f.captured_paise, f.unaccounted_paise, k.first_found_at
      FROM found f JOIN kept k ON k.method = f.method AND k.gateway_ref = f.gateway_ref
     ORDER BY f.method, f.gateway_ref
$$;

-- What a job's refund looks like to its shopper: refunding | refunded | refund_failed (NULL: no refund).
-- A refund the merchant made at the gateway after the order was fulfilled is not the job's: its order
-- stays paid (the operator sees that refund under refunds.after_fulfilment).
CREATE OR REPLACE FUNCTION pq_refund_status(p_method text, p_gateway_ref text, OUT status text,
                                            OUT amount_paise bigint)
LANGUAGE sql STABLE AS $$
    SELECT CASE WHEN bool_or(r.owed_at IS NOT NULL) THEN 'refund_failed'
                WHEN bool_or(r.state IN ('requested', 'pending') OR r.retry_at IS NOT NULL) THEN 'refunding'
                ELSE 'refunded' END,
           sum(r.amount_paise)::bigint
      FROM gateway_refunds r
     WHERE r.method = p_method AND r.gateway_ref = p_gateway_ref AND r.after_applied_at IS NULL
       AND (r.state IN ('requested', 'pending', 'succeeded') OR r.retry_at IS NOT NULL OR r.owed_at IS NOT NULL)
    HAVING sum(r.amount_paise) > 0
$$;
