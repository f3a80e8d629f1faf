-- The local stand-ins for SQS and EventBridge keep their messages in PGMQ queues in this database
-- (shared/adapters/pgmq.py, local/workers.py). These are their writes whose commit need not wait for
-- the WAL flush, each one call so that no session setting is ever sent on its own (through PgBouncer,
-- as through RDS Proxy, a top-level SET would pin the session). PL/pgSQL, so that a database without
-- PGMQ (RDS) can hold them unused.

-- Sends messages (with per-message headers, or none). Relaxed: what is sent is repaired if lost --
-- a job whose message is lost keeps sent_at NULL (its later mark is lost with it: the WAL is written
-- in order) and the sweeper sends it again; an event lost stays unpublished in the outbox.
CREATE OR REPLACE FUNCTION pq_local_send(p_queue text, p_messages jsonb[], p_headers jsonb[]) RETURNS void
LANGUAGE plpgsql AS $$
BEGIN
    PERFORM set_config('synchronous_commit', 'off', true);
    PERFORM pgmq.send_batch(p_queue, p_messages, p_headers);
END;
$$;

-- Deletes handled messages. Relaxed: a delete lost in a crash only redelivers messages whose jobs are
-- done, which the payment functions acknowledge without a second charge.
CREATE OR REPLACE FUNCTION pq_local_delete(p_queue text, p_msg_ids bigint[]) RETURNS void
LANGUAGE plpgsql AS $$
BEGIN
    PERFORM set_config('synchronous_commit', 'off', true);
    PERFORM pgmq.delete(p_queue, p_msg_ids);
END;
$$;
