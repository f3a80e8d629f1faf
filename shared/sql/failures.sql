-- Failed deliveries (table delivery_failures): recorded by the processor, read by operators.

-- Records one failed delivery. Relaxed commit: a diagnostic row lost in a crash loses no money and
-- no job (the message is still in the queue or the DLQ). A delivery shows the job's send happened:
-- sent_at is set if nothing had confirmed it (an SQS intake; migration 0015), so that the sweeper
-- leaves to the queue a job that fails its deliveries on its way to the DLQ.
CREATE OR REPLACE FUNCTION pq_record_delivery_failure(p_job_id uuid, p_message_id text, p_receive_count integer,
                                                      p_error_class text, p_error text, p_dead_lettered boolean)
RETURNS void
LANGUAGE plpgsql SET enable_seqscan = off AS $$
BEGIN
    PERFORM set_config('synchronous_commit', 'off', true);
    INSERT INTO delivery_failures (job_id, message_id, receive_count, error_class, error, dead_lettered)
    VALUES (p_job_id, p_message_id, greatest(1, p_receive_count), left(p_error_class, 100), left(p_error, 500),
            p_dead_lettered);
    UPDATE payment_jobs
       SET dead_lettered_at = CASE WHEN p_dead_lettered THEN now() ELSE dead_lettered_at END,
           sent_at = coalesce(sent_at, now())
     WHERE id = p_job_id AND status IN ('queued', 'processing') AND (p_dead_lettered OR sent_at IS NULL);
END;
$$;

-- The jobs whose messages went to the DLQ and have not ended since (a redrive that paid them takes
-- them off), newest first: the job, the last error and deliveries, and how long ago it was dead-lettered.
-- One row per job, its latest dead-lettering: a redrive sends a job's message again under a new message
-- id, and a job dead-lettered again must not be listed once per message it ever had (a message naming
-- no job is listed by its own id).
CREATE OR REPLACE FUNCTION pq_dead_lettered_jobs(p_limit integer)
RETURNS TABLE (job_id uuid, user_id text, order_id bigint, status text, last_error text, deliveries integer,
               age_s double precision)
LANGUAGE sql STABLE AS $$
    SELECT f.job_id, j.user_id, j.order_id, coalesce(j.status, 'unknown'), f.error, f.receive_count,
           extract(epoch FROM now() - f.created_at)::double precision
      FROM (SELECT DISTINCT ON (coalesce(d.job_id::text, 'message ' || d.message_id)) d.* FROM delivery_failures d
             WHERE d.dead_lettered
             ORDER BY coalesce(d.job_id::text, 'message ' || d.message_id), d.created_at DESC) AS f
      LEFT JOIN payment_jobs j ON j.id = f.job_id
     WHERE j.status IS NULL OR j.status IN ('queued', 'processing')
     ORDER BY f.created_at DESC
     LIMIT p_limit
$$;

-- An operator drops a job's message from the DLQ (POST /v1/dlq/jobs/{job_id}/drop): a message that can never
-- succeed, which a redrive would only send back there. The job ends failed, reason dropped_by_operator,
-- through pq_end_job like any other end (the finished-jobs counter, the PaymentFailed event), and the drop
-- is recorded: who, when, and the status the job had. p_in_dlq: the caller holds a message of the job it
-- found in the DLQ; without one, the processor's record that it sent the job there (dead_lettered_at, or a
-- dead-lettered delivery of a job we never recorded) will do. The caller deletes the message after commit:
-- a delete lost leaves a message of a finished job, which a redrive's delivery acknowledges (both payment
-- paths answer already_failed) and the same call again deletes. Outcomes (pq_dlq_drop_outcome):
--   dropped                  -> this call ended the job; event is the outbox row to publish after commit
--                               (none for a message naming a job we never recorded: job_status unknown)
--   already_dropped          -> an earlier call did: its record, nothing changed
--   job_not_found            -> no such job and no message of it seen in the DLQ
--   not_dead_lettered        -> the job is not in the DLQ: waiting in line, taken by a processor, or finished
--   gateway_money_unsettled  -> a gateway job whose money would leave the books: captured and neither
--                               applied, refunded, on its way back nor owed; an authorisation nobody
--                               released; or a payment this job never read (money holds the books'
--                               figures, as an earlier job left them, or NULL). A redrive's delivery
--                               settles it; the job stays in the DLQ meanwhile.
-- A delivery of the job in progress holds the job's row (and clears dead_lettered_at as it starts): the
-- call waits for it and answers by what it left.
CREATE OR REPLACE FUNCTION pq_drop_dead_letter(p_job_id uuid, p_operator text, p_in_dlq boolean,
                                               OUT outcome pq_dlq_drop_outcome, OUT job_status text,
                                               OUT status text, OUT reason text, OUT dropped_by text,
                                               OUT dropped_at timestamptz, OUT event jsonb, OUT money jsonb)
LANGUAGE plpgsql SET enable_seqscan = off AS $$
DECLARE
    v_job   payment_jobs%ROWTYPE;
    v_drop  dead_letter_drops%ROWTYPE;
    v_books record;
BEGIN
    SELECT * INTO v_job FROM payment_jobs j WHERE j.id = p_job_id FOR UPDATE;
    IF NOT FOUND THEN
        -- A message naming a job we never recorded (poison from the start): dropped as such, once.
        IF p_in_dlq OR EXISTS (SELECT 1 FROM delivery_failures d WHERE d.job_id = p_job_id AND d.dead_lettered)
           OR EXISTS (SELECT 1 FROM dead_letter_drops x WHERE x.job_id = p_job_id) THEN
            INSERT INTO dead_letter_drops (job_id, dropped_by, job_status) VALUES (p_job_id, p_operator, 'unknown')
            ON CONFLICT (job_id) DO NOTHING;
            outcome := CASE WHEN FOUND THEN 'dropped' ELSE 'already_dropped' END;
            SELECT * INTO v_drop FROM dead_letter_drops x WHERE x.job_id = p_job_id;
            job_status := v_drop.job_status;
            status := 'unknown';
            dropped_by := v_drop.dropped_by;
            dropped_at := v_drop.dropped_at;
        ELSE
            outcome := 'job_not_found';
        END IF;
        RETURN;
    END IF;
    SELECT * INTO v_drop FROM dead_letter_drops x WHERE x.job_id = p_job_id;
    IF FOUND THEN
        outcome := 'already_dropped';
    ELSIF v_job.status NOT IN ('queued', 'processing') OR NOT (p_in_dlq OR v_job.dead_lettered_at IS NOT NULL) THEN
        outcome := 'not_dead_lettered';
    ELSE
        IF v_job.method <> 'wallet' AND v_job.gateway_ref IS NOT NULL THEN
            SELECT b.* INTO v_books FROM pq_gateway_books() b
             WHERE b.method = v_job.method AND b.gateway_ref = v_job.gateway_ref;
            -- Settled only as this job saw it: books an earlier job wrote (one that released the authorisation,
            -- the gateway capturing it after all) say nothing of what this job holds (a review found such a
            -- drop leaving captured money in no book).
            IF NOT FOUND OR v_books.job_id IS DISTINCT FROM v_job.id
               OR v_books.captured_paise - v_books.applied_paise - v_books.refunded_paise - v_books.refunding_paise
                  - v_books.owed_paise <> 0
               OR (v_books.captured_paise = 0 AND v_books.authorized_paise > 0 AND NOT v_books.released) THEN
                outcome := 'gateway_money_unsettled';
                IF FOUND THEN
                    money := jsonb_build_object(
                        'authorized_paise', v_books.authorized_paise, 'captured_paise', v_books.captured_paise,
                        'applied_paise', v_books.applied_paise, 'refunded_paise', v_books.refunded_paise,
                        'refunding_paise', v_books.refunding_paise, 'owed_paise', v_books.owed_paise);
                END IF;
                status := v_job.status;
                RETURN;
            END IF;
        END IF;
        INSERT INTO dead_letter_drops (job_id, dropped_by, job_status) VALUES (p_job_id, p_operator, v_job.status)
        RETURNING * INTO v_drop;
        event := pq_end_job(v_job, 'dropped_by_operator', NULL);
        outcome := 'dropped';
        SELECT * INTO v_job FROM payment_jobs j WHERE j.id = p_job_id;
    END IF;
    status := v_job.status;
    reason := v_job.reason;
    job_status := v_drop.job_status;
    dropped_by := v_drop.dropped_by;
    dropped_at := v_drop.dropped_at;
END;
$$;
