-- The wallet path: the seed's steps 1-9 as one transaction in one round trip (functions/process_payment).

-- Rows are locked in one fixed order -- job, order, wallet, then products by ascending id -- so
-- concurrent payments cannot deadlock; the shared (hot) product rows come last so they are held for
-- the shortest time. Every check runs before the first write, so a business failure changes nothing
-- but the job. Outcomes (pq_wallet_outcome):
--   succeeded | failed (reason set)    -> event is the outbox row to publish after commit
--   already_succeeded | already_failed -> a redelivery; nothing changed, no event
--   job_not_found                      -> a message whose job does not exist (poison)
--   not_a_wallet_job                   -> a gateway job sent down the wallet path (poison)
-- sold_out: the order's products that have no unit left, when this payment took their last units or
-- failed out_of_stock -- the processor then ends the line of everyone else waiting for them, after
-- commit and off this transaction (line.sql). Empty otherwise.
DROP FUNCTION IF EXISTS pq_process_payment(uuid);
CREATE FUNCTION pq_process_payment(p_job_id uuid, OUT outcome pq_wallet_outcome, OUT reason text,
                                   OUT payment_id bigint, OUT event jsonb, OUT sold_out bigint[])
LANGUAGE plpgsql SET enable_seqscan = off AS $$
DECLARE
    v_job    payment_jobs%ROWTYPE;
    v_order  orders%ROWTYPE;
    v_wallet wallets%ROWTYPE;
    v_check  record;
BEGIN
    -- The job row serialises redeliveries of the same message.
    SELECT * INTO v_job FROM payment_jobs WHERE id = p_job_id FOR UPDATE;
    IF NOT FOUND THEN
        outcome := 'job_not_found';
        RETURN;
    END IF;
    IF v_job.status IN ('succeeded', 'failed') THEN
        outcome := ('already_' || v_job.status)::pq_wallet_outcome;
        reason := v_job.reason;
        payment_id := v_job.payment_id;
        RETURN;
    END IF;
    -- A gateway job is paid at the gateway (gateway_payment.sql), never from the wallet, whatever
    -- its queue message says.
    IF v_job.method <> 'wallet' THEN
        outcome := 'not_a_wallet_job';
        RETURN;
    END IF;

    -- Step 1: fetch (and lock) the order; step 6 read early (every check precedes every write): its
    -- items, validated and aggregated, with stock read without the product locks.
    SELECT * INTO v_order FROM orders WHERE id = v_job.order_id FOR UPDATE;
    SELECT * INTO v_check FROM pq_order_problem(v_order, v_job);
    IF v_check.problem IN ('order_not_payable', 'invalid_order') THEN
        reason := v_check.problem;
    ELSE
        -- Step 2: fetch (and lock) the wallet.
        SELECT * INTO v_wallet FROM wallets WHERE user_id = v_job.user_id FOR UPDATE;
        IF NOT FOUND OR v_wallet.balance_paise < v_order.total_paise THEN
            reason := 'insufficient_balance';
        ELSIF v_wallet.currency <> v_order.currency THEN
            -- A wallet pays only orders in its own currency: 100,000 paise are not 100,000 cents.
            reason := 'currency_mismatch';
        ELSIF v_check.problem IS NULL THEN
            -- Not sold out when read: lock what the products are bought from and read their stock
            -- again under the lock. A product already short fails its buyers above without its lock.
            reason := pq_lock_stock(v_check.items, v_job.user_id);
        ELSE
            reason := v_check.problem;
        END IF;
    END IF;
    IF reason IS NOT NULL THEN
        outcome := 'failed';
        event := pq_end_job(v_job, reason, NULL);
        IF reason = 'out_of_stock' THEN
            sold_out := pq_sold_out_products(v_order.items);
        END IF;
        RETURN;
    END IF;

    -- Steps 3 and 5: debit the wallet and record the wallet transaction.
    UPDATE wallets SET balance_paise = balance_paise - v_order.total_paise, updated_at = now()
     WHERE id = v_wallet.id;
    INSERT INTO wallet_transactions (wallet_id, order_id, job_id, kind, amount_paise, balance_after_paise, note)
    VALUES (v_wallet.id, v_order.id, v_job.id, 'debit', v_order.total_paise,
            v_wallet.balance_paise - v_order.total_paise, 'order payment');
    -- Steps 4 and 6-9, the job and its event: shared with the gateway path.
    SELECT f.payment_id, f.event, f.sold_out INTO payment_id, event, sold_out
      FROM pq_fulfil_order(v_job, v_order, v_check.items, v_order.total_paise, v_order.currency) f;
    outcome := 'succeeded';
END;
$$;
