-- Accepting a payment request (functions/enqueue): one round trip records the job or says why not.

-- Number of jobs that have reached a terminal state (O(1): reads one sequence).
CREATE OR REPLACE FUNCTION pq_finished_count() RETURNS bigint
LANGUAGE sql STABLE AS $$
    SELECT CASE WHEN is_called THEN last_value ELSE 0 END FROM payment_finished_seq
$$;

-- Records a payment request. Validation that needs the database happens here so that a refused
-- request records nothing. Outcomes (pq_enqueue_outcome):
--   created | replayed    -> job_id, status, queue_seq (and reason / payment_id once finished)
--   key_reused            -> the same idempotency key with another body; job_id is the first job
--   order_not_found       -> no such order for this user (another user's looks the same)
--   order_not_payable     -> reason = the order's status
--   payment_in_progress   -> job_id of the live job for this order
--   gateway_ref_in_use    -> job_id of the job that already used this gateway payment
-- finished is always set (the position estimate needs it).
DROP FUNCTION IF EXISTS pq_enqueue_job(text, text, text, bigint, text, text);
CREATE FUNCTION pq_enqueue_job(
    p_user_id text, p_idempotency_key text, p_request_hash text, p_order_id bigint, p_method text,
    p_gateway_ref text,
    OUT outcome pq_enqueue_outcome, OUT job_id uuid, OUT status text, OUT queue_seq bigint, OUT reason text,
    OUT payment_id bigint, OUT finished bigint)
LANGUAGE plpgsql AS $$
DECLARE
    v_job payment_jobs%ROWTYPE;
    v_order_status text;
BEGIN
    -- One user's requests are applied one at a time (a transaction-scoped lock, released at commit;
    -- the proxy sees only the call), so every check below is exact and the insert cannot lose a race
    -- on the user's key or order. An insert that lost one would still consume a queue number
    -- (sequences never roll back) and inflate every later position.
    -- (The two-key form: a lock space of its own, apart from the migration runner's one-key lock.)
    PERFORM pg_advisory_xact_lock(x'50514551'::integer, hashtext(p_user_id));  -- "PQEQ", the user
    finished := pq_finished_count();

    SELECT * INTO v_job FROM payment_jobs j
     WHERE j.user_id = p_user_id AND j.idempotency_key = p_idempotency_key;
    IF FOUND THEN
        outcome := CASE WHEN v_job.request_hash = p_request_hash THEN 'replayed' ELSE 'key_reused' END;
    ELSE
        -- Under a share lock: a payment of this order committing right now is waited for, so a request
        -- racing it sees the order paid (409 now) instead of a job that fails later.
        SELECT o.order_status INTO v_order_status FROM orders o
         WHERE o.id = p_order_id AND o.user_id = p_user_id
           FOR SHARE;
        IF NOT FOUND THEN
            outcome := 'order_not_found';
            RETURN;
        ELSIF v_order_status <> 'pending' THEN
            outcome := 'order_not_payable';
            reason := v_order_status;
            RETURN;
        END IF;
        SELECT * INTO v_job FROM payment_jobs j
         WHERE j.order_id = p_order_id AND j.status IN ('queued', 'processing');
        IF FOUND THEN
            outcome := 'payment_in_progress';
        ELSIF p_gateway_ref IS NOT NULL THEN
            SELECT * INTO v_job FROM payment_jobs j WHERE j.method = p_method AND j.gateway_ref = p_gateway_ref;
            IF FOUND THEN
                outcome := 'gateway_ref_in_use';
            END IF;
        END IF;
    END IF;

    IF outcome IS NULL AND p_gateway_ref IS NULL THEN
        INSERT INTO payment_jobs (user_id, idempotency_key, request_hash, order_id, method)
        VALUES (p_user_id, p_idempotency_key, p_request_hash, p_order_id, p_method)
        RETURNING * INTO v_job;
        outcome := 'created';
    ELSIF outcome IS NULL THEN
        BEGIN
            INSERT INTO payment_jobs (user_id, idempotency_key, request_hash, order_id, method, gateway_ref)
            VALUES (p_user_id, p_idempotency_key, p_request_hash, p_order_id, p_method, p_gateway_ref)
            RETURNING * INTO v_job;
            outcome := 'created';
        EXCEPTION WHEN unique_violation THEN
            -- Only another user's request for the same gateway payment can still race this one.
            SELECT * INTO v_job FROM payment_jobs j WHERE j.method = p_method AND j.gateway_ref = p_gateway_ref;
            outcome := 'gateway_ref_in_use';
        END;
    END IF;
    job_id := v_job.id;
    status := v_job.status;
    queue_seq := v_job.queue_seq;
    IF outcome = 'replayed' THEN
        reason := v_job.reason;
        payment_id := v_job.payment_id;
    END IF;
END;
$$;

-- Marks jobs sent to the queue. Relaxed commit: if the mark is lost in a crash the sweeper sends the
-- job again, and the duplicate is dropped (deduplication id) or acknowledged (the job is done).
-- Set inside the body, for this transaction only: a top-level SET would pin an RDS Proxy session.
CREATE OR REPLACE FUNCTION pq_mark_jobs_sent(p_ids uuid[]) RETURNS void
LANGUAGE plpgsql AS $$
BEGIN
    PERFORM set_config('synchronous_commit', 'off', true);
    UPDATE payment_jobs SET sent_at = now() WHERE id = ANY(p_ids) AND sent_at IS NULL;
END;
$$;

-- Jobs whose queue send was never confirmed, oldest first, for the sweeper.
CREATE OR REPLACE FUNCTION pq_unsent_jobs(p_older_than_s double precision, p_limit integer)
RETURNS TABLE (id uuid, user_id text, order_id bigint, method text)
LANGUAGE sql STABLE AS $$
    SELECT j.id, j.user_id, j.order_id, j.method FROM payment_jobs j
     WHERE j.sent_at IS NULL AND j.created_at < now() - make_interval(secs => p_older_than_s)
     ORDER BY j.created_at
     LIMIT p_limit
$$;
