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
