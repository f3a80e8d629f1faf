-- Accepting a payment request (functions/enqueue): one round trip records the job or says why not.

-- Number of jobs that have reached a terminal state, as committed (the 32 rows of line_finished,
-- migration 0022; pq_end_job adds to them in the ending transaction).
CREATE OR REPLACE FUNCTION pq_finished_count() RETURNS bigint
LANGUAGE sql STABLE AS $$
    SELECT sum(finished)::bigint FROM line_finished
$$;

-- Of those, the jobs that ended in their turn: every end but those that left the line before a processor took
-- them (a cancel, the sold-out bulk end: migration 0024). A leaver ends wherever it stands, mostly behind, and
-- counting it would move everyone ahead of it up too. What a job's own answers measure its place against is
-- pq_job_ended_ahead: never too low; the shared figure (pq_line_serving) adds the leavers the line's front
-- has passed.
CREATE OR REPLACE FUNCTION pq_processed_count() RETURNS bigint
LANGUAGE sql STABLE AS $$
    SELECT (sum(finished) - sum(left_line))::bigint FROM line_finished
$$;

-- What a job's own answers (its 202, its reads, its cancel) measure its place against (position = queue_seq -
-- this): the jobs known to have ended ahead of it. Those that had ended when it was accepted (p_ended_ahead,
-- payment_jobs.ended_ahead: every one of them ahead of it), or the jobs that ended in their turn since,
-- whichever is more; never a leaver behind it, so never too low, and never falling (positions never rise).
CREATE OR REPLACE FUNCTION pq_job_ended_ahead(p_ended_ahead bigint) RETURNS bigint
LANGUAGE sql STABLE AS $$
    SELECT greatest(pq_processed_count(), coalesce(p_ended_ahead, 0))
$$;

-- One user's intake, one request at a time: a transaction-scoped advisory lock (released at commit;
-- the proxy sees only the call) in the two-key space, apart from the migration runner's one-key lock.
-- Every path that creates a job for a user takes it: the API's intakes and the webhooks' checkouts.
CREATE OR REPLACE FUNCTION pq_lock_user(p_user_id text) RETURNS void
LANGUAGE sql AS $$
    SELECT pg_advisory_xact_lock(x'50514551'::integer, hashtext(p_user_id))  -- "PQEQ", the user
$$;

-- How both intakes (pq_enqueue_job, pq_enqueue_gateway_job) begin, in their transaction. One user's
-- requests are applied one at a time (a transaction-scoped lock, released at commit; the proxy sees
-- only the call), so every check after it is exact and an insert cannot lose a race on the user's key
-- or order: one that lost would still consume a queue number (sequences never roll back) and inflate
-- every later position. (The two-key lock space: apart from the migration runner's one-key lock.)
-- Answers the job this idempotency key already made (outcome replayed, or key_reused for another
-- body), or order_not_found, or outcome NULL with the order's status read under a share lock: a
-- payment of the order committing right now is waited for, so a request racing it sees the order
-- paid (409 now) instead of a job that fails later.
CREATE OR REPLACE FUNCTION pq_intake_begin(p_user_id text, p_idempotency_key text, p_request_hash text,
                                           p_order_id bigint, OUT outcome pq_enqueue_outcome,
                                           OUT job payment_jobs, OUT order_status text, OUT finished bigint)
LANGUAGE plpgsql AS $$
BEGIN
    PERFORM pq_lock_user(p_user_id);
    finished := pq_finished_count();
    SELECT * INTO job FROM payment_jobs j WHERE j.user_id = p_user_id AND j.idempotency_key = p_idempotency_key;
    IF FOUND THEN
        outcome := CASE WHEN job.request_hash = p_request_hash THEN 'replayed' ELSE 'key_reused' END;
        RETURN;
    END IF;
    SELECT o.order_status INTO order_status FROM orders o
     WHERE o.id = p_order_id AND o.user_id = p_user_id
       FOR SHARE;
    IF NOT FOUND THEN
        outcome := 'order_not_found';
    END IF;
END;
$$;

-- How both intakes answer for the job a request led to: its id, status and queue number, and, for
-- a replay (p_replayed) of a finished job, its reason and payment; p_reason otherwise (order_not_payable's).
CREATE OR REPLACE FUNCTION pq_intake_answer(p_job payment_jobs, p_replayed boolean, p_reason text,
                                            OUT job_id uuid, OUT status text, OUT queue_seq bigint,
                                            OUT reason text, OUT payment_id bigint)
LANGUAGE sql IMMUTABLE AS $$
    SELECT p_job.id, p_job.status, p_job.queue_seq,
           CASE WHEN p_replayed THEN p_job.reason ELSE p_reason END,
           CASE WHEN p_replayed THEN p_job.payment_id END
$$;

-- The job that holds a gateway payment (NULL if none): the one payment_jobs_one_holder_per_gateway_payment
-- (migration 0012) lets exist -- live, succeeded, or failed without giving it back (pq_gateway_refunded
-- says which failures do). What "this gateway payment is in use" means, for the intakes here and the
-- webhooks' settling (checkouts.sql).
CREATE OR REPLACE FUNCTION pq_gateway_ref_holder(p_method text, p_gateway_ref text) RETURNS payment_jobs
LANGUAGE sql STABLE SET enable_seqscan = off AS $$
    SELECT * FROM payment_jobs j
     WHERE j.method = p_method AND j.gateway_ref = p_gateway_ref AND j.gateway_ref_released_at IS NULL
$$;

-- Records a payment request. Validation that needs the database happens here so that a refused
-- request records nothing. Outcomes (pq_enqueue_outcome):
--   created | replayed    -> job_id, status, queue_seq (and reason / payment_id once finished)
--   key_reused            -> the same idempotency key with another body; job_id is the first job
--   order_not_found       -> no such order for this user (another user's looks the same)
--   order_not_payable     -> reason = the order's status
--   payment_in_progress   -> job_id of the live job for this order
--   gateway_ref_in_use    -> job_id of the job that holds this gateway payment (pq_gateway_ref_holder)
--   sold_out              -> sold_out = the order's products with no unit left (line.sql): a job could
--                            only fail out_of_stock, so none is made and the shopper is told at once
-- finished is always set (the position estimate needs it).
-- A created job gets the id p_job_id (a new one when NULL). Its queue message (which names that id) is
-- sent by pq_intake_send in this same transaction when the queue lives in this database (p_queue: PGMQ
-- locally), so enqueue is one round trip and no job is ever recorded unsent; otherwise (SQS) the
-- caller sends it after commit and sent_at stays NULL (pq_unsent_jobs says when the sweeper sends it).
DROP FUNCTION IF EXISTS pq_enqueue_job(text, text, text, bigint, text, text);
DROP FUNCTION IF EXISTS pq_enqueue_job(text, text, text, bigint, text, text, uuid, text, jsonb, jsonb);
CREATE FUNCTION pq_enqueue_job(
    p_user_id text, p_idempotency_key text, p_request_hash text, p_order_id bigint, p_method text,
    p_gateway_ref text, p_job_id uuid DEFAULT NULL, p_queue text DEFAULT NULL, p_message jsonb DEFAULT NULL,
    p_headers jsonb DEFAULT NULL,
    OUT outcome pq_enqueue_outcome, OUT job_id uuid, OUT status text, OUT queue_seq bigint, OUT reason text,
    OUT payment_id bigint, OUT finished bigint, OUT sold_out bigint[])
LANGUAGE plpgsql SET enable_seqscan = off AS $$
DECLARE
    v_begin record;
    v_job payment_jobs%ROWTYPE;
    v_items jsonb;
BEGIN
    SELECT * INTO v_begin FROM pq_intake_begin(p_user_id, p_idempotency_key, p_request_hash, p_order_id);
    outcome := v_begin.outcome;
    finished := v_begin.finished;
    v_job := v_begin.job;
    IF outcome IS NULL AND v_begin.order_status <> 'pending' THEN
        outcome := 'order_not_payable';
        reason := v_begin.order_status;
    ELSIF outcome IS NULL THEN
        SELECT * INTO v_job FROM payment_jobs j
         WHERE j.order_id = p_order_id AND j.status IN ('queued', 'processing');
        IF FOUND THEN
            outcome := 'payment_in_progress';
        ELSIF p_gateway_ref IS NOT NULL THEN
            SELECT * INTO v_job FROM pq_gateway_ref_holder(p_method, p_gateway_ref);
            IF v_job.id IS NOT NULL THEN
                outcome := 'gateway_ref_in_use';
            END IF;
        ELSE
            -- Read without the products' locks, as pq_order_problem does: during a sale stock only goes down.
            v_items := (SELECT o.items FROM orders o WHERE o.id = p_order_id);
            sold_out := pq_sold_out_products(v_items);
            IF cardinality(sold_out) > 0 THEN
                outcome := 'sold_out';
            END IF;
        END IF;
    END IF;

    IF outcome IS NULL AND p_gateway_ref IS NULL THEN
        -- With its order's products, by which a bulk end finds it if one sells out (line.sql).
        INSERT INTO payment_jobs (id, user_id, idempotency_key, request_hash, order_id, method, sent_at, product_ids,
                                  ended_ahead)
        VALUES (coalesce(p_job_id, gen_random_uuid()), p_user_id, p_idempotency_key, p_request_hash, p_order_id,
                p_method, pq_intake_send(p_queue, p_message, p_headers), pq_item_products(v_items), finished)
        RETURNING * INTO v_job;
        outcome := 'created';
    ELSIF outcome IS NULL THEN
        BEGIN
            INSERT INTO payment_jobs (id, user_id, idempotency_key, request_hash, order_id, method, gateway_ref,
                                      sent_at, ended_ahead)
            VALUES (coalesce(p_job_id, gen_random_uuid()), p_user_id, p_idempotency_key, p_request_hash,
                    p_order_id, p_method, p_gateway_ref, pq_intake_send(p_queue, p_message, p_headers), finished)
            RETURNING * INTO v_job;
            outcome := 'created';
        EXCEPTION WHEN unique_violation THEN
            -- Only another user's request for the same gateway payment can still race this one.
            SELECT * INTO v_job FROM pq_gateway_ref_holder(p_method, p_gateway_ref);
            outcome := 'gateway_ref_in_use';
        END;
    END IF;
    -- A job made now is measured against every end so far (all ahead of it); one made before as its reads are.
    IF outcome <> 'created' THEN
        finished := pq_job_ended_ahead(v_job.ended_ahead);
    END IF;
    SELECT a.* INTO job_id, status, queue_seq, reason, payment_id
      FROM pq_intake_answer(v_job, outcome = 'replayed', reason) a;
END;
$$;

-- Sends a new job's message in the intake's own transaction when the queue is a PGMQ queue of this
-- database (p_queue), and answers the job's sent_at: now, or NULL when the queue is elsewhere (SQS) and
-- the caller sends after commit. Synchronous commit, unlike pq_local_send: the message is as durable
-- as the job it carries. Called only on an insert that creates the job, so a replay sends nothing.
CREATE OR REPLACE FUNCTION pq_intake_send(p_queue text, p_message jsonb, p_headers jsonb) RETURNS timestamptz
LANGUAGE plpgsql AS $$
BEGIN
    IF p_queue IS NULL THEN
        RETURN NULL;
    END IF;
    PERFORM pgmq.send(p_queue, p_message, p_headers);
    RETURN now();
END;
$$;

-- Marks jobs sent to the queue. Relaxed commit: if the mark is lost in a crash the sweeper sends the
-- job again, and the duplicate is dropped (deduplication id) or acknowledged (the job is done).
-- Set inside the body, for this transaction only: a top-level SET would pin an RDS Proxy session.
CREATE OR REPLACE FUNCTION pq_mark_jobs_sent(p_ids uuid[]) RETURNS void
LANGUAGE plpgsql SET enable_seqscan = off AS $$
BEGIN
    PERFORM set_config('synchronous_commit', 'off', true);
    UPDATE payment_jobs SET sent_at = now() WHERE id = ANY(p_ids) AND sent_at IS NULL;
END;
$$;

-- The jobs the sweeper sends (again), oldest first (parks: part of the deduplication id of a job sent
-- again after it waited for its gateway). sent_at NULL says a job's send is not known to have happened
-- (migration 0015); of those it takes, once older than p_older_than_s (N):
--   parks > 0, not parked: a gateway path woke the job (or found it must go again at once) and asked
--     for it to be sent again; it marks it when its send goes. (Parked, it waits with no message.)
--   queued (parks 0): sent at intake, or not if the enqueue died or SQS failed between commit and send --
--     on SQS the intake confirms nothing per job, so the two look alike. Such a job is sent once the line
--     has passed it (a job accepted N seconds after it ended in the last N seconds) or the line has
--     stalled (no job ended in the last N seconds). Only ends at the front count: a job that left the line
--     (left_line: cancelled, or its product sold out) ended wherever it stood, usually at the back. A sent
--     job caught so is one SQS is about to hand over, or one waiting behind a failing message of its own
--     user: its copy is dropped by SQS FIFO's
--     5-minute deduplication on the job id ("Amazon SQS FIFO queue key terms": the id is tracked even
--     after the message was received and deleted) or, later, acknowledged as a finished job. No job is
--     lost: an unsent job never ends, so either the jobs accepted after it end (the line passes it) or
--     nothing ends (it stalls). And a long line of sent jobs is never re-sent wholesale.
--   Never a job a processor received (it ended, failed a delivery or is processing) or dead-lettered.
DROP FUNCTION IF EXISTS pq_unsent_jobs(double precision, integer);
CREATE FUNCTION pq_unsent_jobs(p_older_than_s double precision, p_limit integer)
RETURNS TABLE (id uuid, user_id text, order_id bigint, method text, parks integer)
LANGUAGE sql STABLE SET enable_seqscan = off AS $$
    WITH resend AS (  -- payment_jobs_resend
        SELECT j.* FROM payment_jobs j
         WHERE j.sent_at IS NULL AND j.parks > 0 AND j.parked_at IS NULL
           AND j.created_at < now() - make_interval(secs => p_older_than_s)
         ORDER BY j.created_at
         LIMIT p_limit),
    passed AS (  -- payment_jobs_unsent, up to the line's front (or now, if it stalled), less N
        SELECT j.* FROM payment_jobs j
         WHERE j.sent_at IS NULL AND j.parks = 0 AND j.status = 'queued' AND j.dead_lettered_at IS NULL
           AND j.created_at < (SELECT coalesce(max(f.created_at), now()) FROM payment_jobs f
                                WHERE f.finished_at > now() - make_interval(secs => p_older_than_s)
                                  AND NOT f.left_line)
                              - make_interval(secs => p_older_than_s)
         ORDER BY j.created_at
         LIMIT p_limit)
    SELECT u.id, u.user_id, u.order_id, u.method, u.parks
      FROM (SELECT * FROM resend UNION ALL SELECT * FROM passed) AS u
     ORDER BY u.created_at
     LIMIT p_limit
$$;

-- Records a gateway payment request of the checkout flow: the payment must belong to the shopper's
-- checkout of this order, or nothing is recorded. p_gateway_order_id / p_gateway_ref: Razorpay's signed
-- razorpay_order_id and razorpay_payment_id (the signature was verified before the call); NULL for
-- Cashfree, whose bound order the checkout names. Outcomes (pq_enqueue_outcome): pq_enqueue_job's, and
--   checkout_required       -> no live or paid checkout of this order for this method and user
--   gateway_order_mismatch  -> the gateway order is not the one created for this order and shopper
-- A request that names the payment a webhook already made a job for gets that job (replayed).
-- A created job's id and message as for pq_enqueue_job (p_job_id, p_queue, p_message, p_headers).
DROP FUNCTION IF EXISTS pq_enqueue_gateway_job(text, text, text, bigint, text, text, text);
DROP FUNCTION IF EXISTS pq_enqueue_gateway_job(text, text, text, bigint, text, text, text, uuid, text, jsonb, jsonb);
CREATE FUNCTION pq_enqueue_gateway_job(
    p_user_id text, p_idempotency_key text, p_request_hash text, p_order_id bigint, p_method text,
    p_gateway_order_id text, p_gateway_ref text, p_job_id uuid DEFAULT NULL, p_queue text DEFAULT NULL,
    p_message jsonb DEFAULT NULL, p_headers jsonb DEFAULT NULL,
    OUT outcome pq_enqueue_outcome, OUT job_id uuid, OUT status text, OUT queue_seq bigint, OUT reason text,
    OUT payment_id bigint, OUT finished bigint)
LANGUAGE plpgsql SET enable_seqscan = off AS $$
DECLARE
    v_begin record;
    v_checkout gateway_checkouts%ROWTYPE;
    v_job payment_jobs%ROWTYPE;
    v_ref text;
BEGIN
    -- The same per-user lock, key and order checks as pq_enqueue_job: a wallet and a gateway request
    -- of one user are applied one at a time too.
    SELECT * INTO v_begin FROM pq_intake_begin(p_user_id, p_idempotency_key, p_request_hash, p_order_id);
    v_job := v_begin.job;
    outcome := v_begin.outcome;
    finished := v_begin.finished;
    IF outcome IS NULL THEN
        -- The checkout of this order, method and shopper: Razorpay by the order it names (an expired
        -- or paid checkout still binds its own payments), Cashfree the newest one created.
        SELECT * INTO v_checkout FROM gateway_checkouts c
         WHERE c.order_id = p_order_id AND c.user_id = p_user_id AND c.method = p_method
           AND c.status <> 'creating'
           AND (p_gateway_order_id IS NULL OR c.gateway_order_id = p_gateway_order_id)
         ORDER BY c.created_at DESC
         LIMIT 1;
        IF NOT FOUND THEN
            outcome := CASE
                WHEN p_gateway_order_id IS NOT NULL AND EXISTS (
                    SELECT 1 FROM gateway_checkouts c
                     WHERE c.order_id = p_order_id AND c.user_id = p_user_id AND c.method = p_method)
                  OR EXISTS (SELECT 1 FROM gateway_checkouts c
                              WHERE c.method = p_method AND c.gateway_order_id = p_gateway_order_id)
                THEN 'gateway_order_mismatch'
                ELSE 'checkout_required' END;
            RETURN;
        END IF;
        v_ref := coalesce(p_gateway_ref, v_checkout.gateway_order_id);
        -- The job a webhook (or an earlier request) already made for this very payment: the same job.
        SELECT * INTO v_job FROM payment_jobs j
         WHERE j.method = p_method AND j.gateway_ref = v_ref AND j.user_id = p_user_id
           AND j.checkout_id = v_checkout.id
         ORDER BY j.queue_seq DESC
         LIMIT 1;
        IF FOUND AND v_job.gateway_ref_released_at IS NULL THEN  -- it still holds the payment
            outcome := 'replayed';
        ELSIF v_begin.order_status <> 'pending' THEN
            outcome := 'order_not_payable';
            reason := v_begin.order_status;
            RETURN;
        ELSE
            SELECT * INTO v_job FROM payment_jobs j
             WHERE j.order_id = p_order_id AND j.status IN ('queued', 'processing');
            IF FOUND THEN
                outcome := 'payment_in_progress';
            ELSE
                BEGIN
                    INSERT INTO payment_jobs (id, user_id, idempotency_key, request_hash, order_id, method,
                                              gateway_ref, checkout_id, sent_at, ended_ahead)
                    VALUES (coalesce(p_job_id, gen_random_uuid()), p_user_id, p_idempotency_key, p_request_hash,
                            p_order_id, p_method, v_ref, v_checkout.id, pq_intake_send(p_queue, p_message, p_headers),
                            finished)
                    RETURNING * INTO v_job;
                    UPDATE gateway_checkouts c SET job_id = v_job.id, updated_at = now() WHERE c.id = v_checkout.id;
                    outcome := 'created';
                EXCEPTION WHEN unique_violation THEN
                    SELECT * INTO v_job FROM pq_gateway_ref_holder(p_method, v_ref);
                    outcome := 'gateway_ref_in_use';
                END;
            END IF;
        END IF;
    END IF;
    IF outcome <> 'created' THEN  -- as pq_enqueue_job
        finished := pq_job_ended_ahead(v_job.ended_ahead);
    END IF;
    SELECT a.* INTO job_id, status, queue_seq, reason, payment_id
      FROM pq_intake_answer(v_job, outcome = 'replayed', reason) a;
END;
$$;
