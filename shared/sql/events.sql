-- Events leave through the outbox (table outbox_events): written in the payment's own transaction,
-- published after commit, re-published by the sweeper until marked. The row's JSON shape is defined
-- here once; the versioned envelope consumers receive is built from it in one place in Python
-- (shared/domain.py build_event), where the buses add their own framing.

-- An outbox row as the publisher reads it: {id, type, occurred_at, data}.
CREATE OR REPLACE FUNCTION pq_outbox_row(p_event outbox_events) RETURNS jsonb
LANGUAGE sql STABLE AS $$
    SELECT jsonb_build_object('id', p_event.id, 'type', p_event.event_type,
                              'occurred_at', p_event.created_at, 'data', p_event.payload)
$$;

-- Ends a job, in the caller's transaction: the job's terminal state, the finished-jobs counter and
-- the outbox event, for both paths (wallet and gateway) and both ends. p_payment is the payment
-- transaction written for a success (NULL for a failure, with p_reason set). Returns the outbox row.
-- A job that ends needs no send any more: sent_at is set if its send was never confirmed (an SQS
-- intake confirms nothing per job; migration 0015), in the same row update.
-- p_left_line: the job left the line before a processor took it (a cancel, the sold-out bulk end), which
-- the sweeper's resend rule must not read as the line's front (pq_unsent_jobs). The finished counter
-- (line_finished, migration 0022) moves in this transaction, so an end rolled back counts nothing; a job that
-- left the line is counted there as such too (migration 0024).
DROP FUNCTION IF EXISTS pq_end_job(payment_jobs, text, payment_transactions);
CREATE OR REPLACE FUNCTION pq_end_job(p_job payment_jobs, p_reason text, p_payment payment_transactions,
                                      p_left_line boolean DEFAULT false)
RETURNS jsonb
LANGUAGE plpgsql AS $$
DECLARE
    v_event outbox_events%ROWTYPE;
BEGIN
    UPDATE payment_jobs
       SET status = CASE WHEN p_payment.id IS NULL THEN 'failed' ELSE 'succeeded' END,
           reason = p_reason, payment_id = p_payment.id, finished_at = now(), sent_at = coalesce(sent_at, now()),
           left_line = p_left_line
     WHERE id = p_job.id;
    UPDATE line_finished SET finished = finished + 1, left_line = left_line + p_left_line::integer
     WHERE shard = pg_backend_pid() % 32;
    INSERT INTO outbox_events (job_id, event_type, payload)
    VALUES (p_job.id,
            CASE WHEN p_payment.id IS NULL THEN 'PaymentFailed' ELSE 'PaymentSucceeded' END,
            jsonb_strip_nulls(jsonb_build_object(
                'job_id', p_job.id, 'user_id', p_job.user_id, 'order_id', p_job.order_id,
                'method', p_job.method, 'reason', p_reason, 'payment_id', p_payment.id,
                'gateway_ref', p_payment.gateway_ref, 'amount_paise', p_payment.amount_paise,
                'currency', p_payment.currency, 'requested_by', p_job.requested_by)))
    RETURNING * INTO v_event;
    RETURN pq_outbox_row(v_event);
END;
$$;

-- The leavers' count made true again each time this file is applied (a deploy that changes it): a release
-- rolled back to whose pq_end_job knows nothing of the count (69d5757 and before) counted its leavers as
-- ended in their turn, and every place measured against pq_processed_count after it would read too low.
-- One statement, exact beside the ends committing meanwhile: both counts are read in one snapshot, and the
-- difference is added to shard 0 (an end that moved that row meanwhile keeps its own increment). Counted
-- here rather than by a trigger on payment_jobs, which would be a cost of every payment's end.
UPDATE line_finished
   SET left_line = left_line + ((SELECT count(*) FROM payment_jobs WHERE left_line)
                                - (SELECT sum(l.left_line) FROM line_finished l))
 WHERE shard = 0;

-- Events committed but not yet published, oldest first, for the sweeper.
CREATE OR REPLACE FUNCTION pq_unpublished_events(p_older_than_s double precision, p_limit integer)
RETURNS SETOF jsonb
LANGUAGE sql STABLE AS $$
    SELECT pq_outbox_row(e) FROM outbox_events e
     WHERE e.published_at IS NULL AND e.created_at < now() - make_interval(secs => p_older_than_s)
     ORDER BY e.created_at
     LIMIT p_limit
$$;

-- Marks events published. Relaxed commit (no wait for the WAL flush): a mark lost in a crash means
-- one more publication, which consumers dedupe on the event id. Set inside the body, for this
-- transaction only: a top-level SET would pin an RDS Proxy session.
CREATE OR REPLACE FUNCTION pq_mark_events_published(p_ids uuid[]) RETURNS void
LANGUAGE plpgsql SET enable_seqscan = off AS $$
BEGIN
    PERFORM set_config('synchronous_commit', 'off', true);
    UPDATE outbox_events SET published_at = now() WHERE id = ANY(p_ids) AND published_at IS NULL;
END;
$$;
