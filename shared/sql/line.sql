-- Leaving the line: a shopper who cancels (DELETE /v1/payments/{job_id}), and the shoppers whose order
-- holds a product that has sold out, whose place in line can no longer buy anything.
--
-- Either way the job ends as a failure (status failed; reason cancelled or out_of_stock) through
-- pq_end_job, like any other end: the finished-jobs counter moves, as a leaver's (migration 0024: the shoppers
-- behind it move up a place when the line's front passes it, never down), and the PaymentFailed event goes
-- out through the outbox. The job's queue message stays
-- where it is and is acknowledged without work when its turn comes: both payment paths answer
-- already_failed for a finished job. Only wallet jobs leave this way: a gateway job's money is at the
-- gateway already, and its processor is what applies it or gives it back.

-- The products an order's items name (orders.items as the shop wrote it; the id as a JSON number or a string
-- of digits, as the payment reads it), each once, ascending. Malformed items name no product here (the
-- processor fails such an order as invalid_order). What a wallet job records at enqueue (payment_jobs
-- .product_ids, migration 0019) for the bulk end below to find it by. It reads no table, so it has no
-- plan to keep and no enable_seqscan setting (shared/sql/__init__.py).
CREATE OR REPLACE FUNCTION pq_item_products(p_items jsonb) RETURNS bigint[]
LANGUAGE sql IMMUTABLE AS $$
    SELECT coalesce(array_agg(DISTINCT (e->>'product_id')::bigint ORDER BY (e->>'product_id')::bigint), '{}')
      FROM jsonb_array_elements(p_items) AS e
     WHERE jsonb_typeof(e) = 'object' AND coalesce(e->>'product_id', '') ~ '^[0-9]{1,18}$'
$$;

-- The products of an order's items with no unit on hand: the row's stock, or the sum of its shards for a
-- sharded product (whose row stock is 0).
CREATE OR REPLACE FUNCTION pq_sold_out_products(p_items jsonb) RETURNS bigint[]
LANGUAGE sql STABLE SET enable_seqscan = off AS $$
    SELECT coalesce(array_agg(p.id ORDER BY p.id), '{}')
      FROM products p
     WHERE p.id = ANY (pq_item_products(p_items)) AND p.stock = 0 AND pq_stock_on_hand(p.id, p.stock) = 0
$$;

-- The shared "now serving" figure every waiting shopper measures their place against (position = their
-- queue number less this; GET /v1/queue/now-serving): the jobs that ended in their turn, and the leavers
-- (cancelled, or ended by the sold-out bulk end) that the line's front has passed. A leaver behind the front
-- is behind someone still waiting, so it moves no one up yet; once the front passes it, it is ahead of
-- everyone waiting. The front is the further of two marks:
--   * the lowest number still waiting its turn: a live job no processor has parked (a parked gateway job
--     waits on its gateway, out of turn; parks stays above 0 once parked, so one woken does not take the
--     front back) and not recorded as dead-lettered;
--   * the highest number among the last jobs that ended in their turn: where the processors are serving,
--     past a job stuck below it (its message in the DLQ unrecorded, a processor that keeps dying on it).
-- With nobody waiting, every leaver is passed. Never lower than pq_processed_count (the least a job's own
-- answers count: pq_job_ended_ahead). One statement for everyone, once a second per cache: it counts the
-- leavers in the live part of the line (payment_jobs_left_line, migration 0024), none of history's; the marks
-- come from the oldest live jobs (payment_jobs_live) and the latest ends (payment_jobs_finished_at).
CREATE OR REPLACE FUNCTION pq_line_serving() RETURNS bigint
LANGUAGE sql STABLE SET enable_seqscan = off AS $$
    WITH waiting AS (
        SELECT min(x.queue_seq) AS seq
          FROM (SELECT w.queue_seq FROM payment_jobs w
                 WHERE w.status IN ('queued', 'processing') AND w.parks = 0 AND w.parked_at IS NULL
                   AND w.dead_lettered_at IS NULL
                 ORDER BY w.created_at
                 LIMIT 64) x
    ), served AS (
        SELECT max(y.queue_seq) AS seq
          FROM (SELECT e.queue_seq FROM payment_jobs e
                 WHERE e.finished_at IS NOT NULL AND NOT e.left_line
                 ORDER BY e.finished_at DESC
                 LIMIT 64) y
    )
    SELECT pq_finished_count()
           - coalesce((SELECT count(*) FROM payment_jobs j, waiting, served
                        WHERE waiting.seq IS NOT NULL AND j.left_line
                          AND j.queue_seq > greatest(waiting.seq, served.seq)), 0)
$$;

-- A shopper leaves the line: their job ends as cancelled if no processor has taken it. Someone else's
-- job is job_not_found, as a missing one. Outcomes (pq_cancel_outcome):
--   cancelled          -> this call ended it; event is the outbox row to publish after commit
--   already_cancelled  -> an earlier call did (the same answer, nothing changed)
--   cancel_requested   -> a gateway job (p_gateway_jobs), by this call or an earlier one: its money is at the
--                         gateway, and only its delivery reads what to give back, so it is not ended here. Its
--                         order is no longer to be fulfilled (pq_gateway_unfulfillable): in its turn the
--                         authorisation is released or the payment refunded, and it fails cancelled.
--   job_taken          -> a processor has it (processing): too late to leave
--   job_finished       -> it ended otherwise (status, reason say how)
--   paid_at_gateway    -> a gateway job, and the caller does not ask for gateway jobs (the previous release)
-- A gateway job can be asked to leave while it is queued, parked (it waits for the gateway's word, its
-- message gone) or dead-lettered; pq_gateway_begin, which starts every delivery, locks the same row and
-- reads the request, and so does pq_complete_gateway_payment, which decides whether the order is fulfilled:
-- a request that lands while a delivery runs after all (a duplicate delivery dead-lettered meanwhile) is
-- still read before any order is paid (at worst captured money is refunded rather than released). Every
-- later job of the same payment reads it too (pq_gateway_unfulfillable). A wallet payment of this very job
-- running right now holds its row: the call waits for it (one payment transaction) and then answers
-- job_finished.
-- (A name of its own: the previous release's pq_cancel_job, below, answers paid_at_gateway for a gateway job.)
DROP FUNCTION IF EXISTS pq_leave_line(text, uuid, boolean);
CREATE FUNCTION pq_leave_line(p_user_id text, p_job_id uuid, p_gateway_jobs boolean,
                              OUT outcome pq_cancel_outcome, OUT status text, OUT reason text,
                              OUT order_id bigint, OUT payment_id bigint, OUT queue_seq bigint,
                              OUT method text, OUT event jsonb, OUT finished bigint, OUT gateway_ref text,
                              OUT dead_lettered_at timestamptz, OUT cancel_requested_at timestamptz)
LANGUAGE plpgsql SET enable_seqscan = off AS $$
DECLARE
    v_job payment_jobs%ROWTYPE;
BEGIN
    SELECT * INTO v_job FROM payment_jobs j WHERE j.id = p_job_id AND j.user_id = p_user_id FOR UPDATE;
    IF NOT FOUND THEN
        outcome := 'job_not_found';
        finished := pq_processed_count();  -- no job: nothing known ahead of it
        RETURN;
    END IF;
    IF v_job.status = 'failed' AND v_job.reason = 'cancelled' THEN
        outcome := 'already_cancelled';
    ELSIF v_job.status IN ('succeeded', 'failed') THEN
        outcome := 'job_finished';
    ELSIF v_job.method <> 'wallet' AND p_gateway_jobs AND v_job.cancel_requested_at IS NOT NULL THEN
        outcome := 'cancel_requested';  -- asked before (its delivery may have begun since)
    ELSIF v_job.status = 'processing'
          AND NOT (v_job.method <> 'wallet' AND p_gateway_jobs
                   AND (v_job.parked_at IS NOT NULL OR v_job.dead_lettered_at IS NOT NULL)) THEN
        outcome := 'job_taken';
    ELSIF v_job.method <> 'wallet' AND NOT p_gateway_jobs THEN
        outcome := 'paid_at_gateway';
    ELSIF v_job.method <> 'wallet' THEN
        UPDATE payment_jobs j SET cancel_requested_at = now() WHERE j.id = v_job.id
        RETURNING j.cancel_requested_at INTO v_job.cancel_requested_at;
        outcome := 'cancel_requested';
    ELSE
        event := pq_end_job(v_job, 'cancelled', NULL, true);
        outcome := 'cancelled';
        SELECT * INTO v_job FROM payment_jobs j WHERE j.id = p_job_id;
    END IF;
    status := v_job.status;
    reason := v_job.reason;
    order_id := v_job.order_id;
    payment_id := v_job.payment_id;
    queue_seq := v_job.queue_seq;
    method := v_job.method;
    finished := pq_job_ended_ahead(v_job.ended_ahead);
    -- The rest of what a read of the job shows (shared/services/reads.py JOB_QUERY): the caller's answer is
    -- the job as its reads show it, without reading it again.
    gateway_ref := v_job.gateway_ref;
    dead_lettered_at := v_job.dead_lettered_at;
    cancel_requested_at := v_job.cancel_requested_at;
END;
$$;

-- The previous release's call: a gateway job answers paid_at_gateway.
CREATE OR REPLACE FUNCTION pq_cancel_job(p_user_id text, p_job_id uuid,
                                         OUT outcome pq_cancel_outcome, OUT status text, OUT reason text,
                                         OUT order_id bigint, OUT payment_id bigint, OUT queue_seq bigint,
                                         OUT method text, OUT event jsonb, OUT finished bigint)
LANGUAGE sql AS $$
    SELECT l.outcome, l.status, l.reason, l.order_id, l.payment_id, l.queue_seq, l.method, l.event, l.finished
      FROM pq_leave_line(p_user_id, p_job_id, false) l
$$;

-- Ends, in one transaction, the queued wallet jobs whose order holds a product of p_products that is
-- sold out (p_products NULL: every sold-out product), at most p_limit of them; returns each ended job's
-- outbox row to publish after commit. Run off the payment path: by the processor after the batch whose
-- payment took a product's last unit commits, and by the sweeper for what that missed (the gateway path
-- sold the last unit, two shards emptied at once).
--
-- What it reads follows the jobs it ends, not the line: the products' jobs in line come from their index
-- (payment_jobs_live_products, migration 0019; a job leaves it when it ends), each checked against its
-- order's items as they are now, and the walk stops at p_limit ended. The scan names no status (the loop
-- checks it, and the lock re-reads it): with one, the planner could serve it from payment_jobs_live, every
-- live job, and a plan made while the table was small would keep doing so. Every job it ends moves
-- the finished counter, so no position rises, whichever order the index hands the jobs over in; and only a
-- job with no earlier live job of its user is ended, so that one user's jobs still end in the order they
-- were accepted (a job behind one is ended in a later run, or by the processor in its turn). Never a job a
-- processor holds right now (SKIP LOCKED, status re-read under the lock: it ends that one itself).
--
-- A restock is ordered with it: the products it ends the line of are share-locked (below) until it commits;
-- one whose row is busy is skipped, not waited for (no deadlock with a shop's multi-row restock, no wait).
--
-- One bulk end per product at a time: a call skips each product another call is ending right now (a
-- transaction-level advisory lock, released at commit; RDS Proxy does not pin a session on
-- pg_try_advisory_xact_lock, by AWS's "Avoiding pinning an RDS Proxy"), so the processor batches that
-- meet its stranded buyers while one runs return at once instead of reading the same jobs and waiting on
-- their row locks. The skipped product's rest is ended by the next call that finds it free. (The two-key
-- space, apart from the migration runner's one-key lock; a hash collision of two products only defers one.)
CREATE OR REPLACE FUNCTION pq_end_sold_out_jobs(p_products bigint[], p_limit integer)
RETURNS TABLE (job_id uuid, event jsonb)
LANGUAGE plpgsql SET enable_seqscan = off AS $$
DECLARE
    v_products bigint[] := '{}';
    v_product  bigint;
    v_job      payment_jobs%ROWTYPE;
    v_locked   payment_jobs%ROWTYPE;
    v_ended    integer := 0;
    v_gone     boolean;
BEGIN
    FOR v_product IN
        SELECT p.id FROM products p
         WHERE (p_products IS NULL OR p.id = ANY (p_products))
           AND p.stock = 0 AND pq_stock_on_hand(p.id, p.stock) = 0
         ORDER BY p.id
    LOOP
        CONTINUE WHEN NOT pg_try_advisory_xact_lock(x'5051534F'::integer, hashint8(v_product));  -- "PQSO"
        -- Nobody waits for it (payment_jobs_live_products): nothing to end, and no row lock to take (the sweeper
        -- looks at every sold-out product, each minute).
        CONTINUE WHEN NOT EXISTS (SELECT 1 FROM payment_jobs j
                                   WHERE j.product_ids && ARRAY[v_product] AND j.product_ids IS NOT NULL
                                     AND j.finished_at IS NULL);
        -- Its row share-locked until commit, never waited for: a product whose row someone holds (a restock
        -- under way: stock = stock + n, pq_shard_stock) is left to a later call, which finds it restocked or
        -- still sold out. Held, no restock commits before this end does.
        PERFORM 1 FROM products p WHERE p.id = v_product FOR SHARE SKIP LOCKED;
        CONTINUE WHEN NOT FOUND;
        -- Read again under the lock, in a statement of its own (a snapshot taken now: a restock committed
        -- since the read above counts, its shards' units too).
        SELECT p.stock = 0 AND pq_stock_on_hand(p.id, p.stock) = 0 INTO v_gone FROM products p WHERE p.id = v_product;
        IF v_gone THEN
            v_products := v_products || v_product;
        END IF;
    END LOOP;
    IF cardinality(v_products) = 0 THEN
        RETURN;
    END IF;
    FOR v_job IN
        SELECT j.* FROM payment_jobs j
         WHERE j.product_ids && v_products AND j.product_ids IS NOT NULL AND j.finished_at IS NULL
           AND j.method = 'wallet'
    LOOP
        CONTINUE WHEN v_job.status <> 'queued'
                   OR NOT (pq_item_products((SELECT o.items FROM orders o WHERE o.id = v_job.order_id))
                           && v_products);
        CONTINUE WHEN EXISTS (SELECT 1 FROM payment_jobs e
                               WHERE e.user_id = v_job.user_id AND e.queue_seq < v_job.queue_seq
                                 AND e.status IN ('queued', 'processing'));
        SELECT * INTO v_locked FROM payment_jobs j WHERE j.id = v_job.id AND j.status = 'queued'
           FOR UPDATE SKIP LOCKED;
        CONTINUE WHEN NOT FOUND;
        job_id := v_locked.id;
        event := pq_end_job(v_locked, 'out_of_stock', NULL, true);
        RETURN NEXT;
        v_ended := v_ended + 1;
        EXIT WHEN v_ended >= p_limit;
    END LOOP;
END;
$$;
