-- The shop's backend (functions/enqueue, the /v1/merchant routes): a merchant client creates orders for
-- shoppers, adjusts their wallets and starts wallet payments on their behalf, each in one round trip.
-- Orders and adjustments are idempotent per client and key (merchant_requests, migration 0017).

-- One client's requests under one Idempotency-Key, one at a time: a transaction-scoped advisory lock
-- (released at commit; the proxy sees only the call) in the two-key space, apart from the migration
-- runner's one-key lock and pq_lock_user's "PQEQ".
CREATE OR REPLACE FUNCTION pq_lock_merchant_key(p_client_id text, p_idempotency_key text) RETURNS void
LANGUAGE sql AS $$
    SELECT pg_advisory_xact_lock(x'50514d52'::integer, hashtext(p_client_id || ':' || p_idempotency_key))  -- "PQMR"
$$;

-- An order for a shopper from product ids and quantities (p_items: [{"product_id", "quantity"}], each
-- product once, validated by the caller). Prices come from products, and each product must have the
-- units on hand now (the payment checks again under its lock: stock may go before it is paid). The
-- shopper is created if the identity provider's subject is new to us. Outcomes
-- (pq_merchant_order_outcome):
--   created | replayed          -> order_id (replayed: the same key and body, nothing created)
--   key_reused                  -> the key was used with another body (order_id: what it made)
--   product_not_found           -> product_id names no product
--   out_of_stock                -> product_id has only available units
--   total_too_large             -> the total is past what a JSON number carries exactly (2^53 - 1)
CREATE OR REPLACE FUNCTION pq_merchant_create_order(
    p_client_id text, p_idempotency_key text, p_request_hash text, p_user_id text, p_items jsonb,
    OUT outcome pq_merchant_order_outcome, OUT order_id bigint, OUT product_id bigint, OUT available integer)
LANGUAGE plpgsql SET enable_seqscan = off AS $$
DECLARE
    v_request merchant_requests%ROWTYPE;
    v_lines   jsonb;
    v_total   numeric;
BEGIN
    PERFORM pq_lock_merchant_key(p_client_id, p_idempotency_key);
    SELECT * INTO v_request FROM merchant_requests r
     WHERE r.client_id = p_client_id AND r.idempotency_key = p_idempotency_key;
    IF FOUND THEN
        outcome := CASE WHEN v_request.kind = 'order' AND v_request.request_hash = p_request_hash
                        THEN 'replayed' ELSE 'key_reused' END;
        order_id := v_request.order_id;
        RETURN;
    END IF;

    SELECT i.product_id INTO product_id
      FROM jsonb_to_recordset(p_items) AS i(product_id bigint, quantity integer)
      LEFT JOIN products p ON p.id = i.product_id
     WHERE p.id IS NULL
     ORDER BY i.product_id LIMIT 1;
    IF product_id IS NOT NULL THEN
        outcome := 'product_not_found';
        RETURN;
    END IF;
    SELECT i.product_id, pq_stock_on_hand(p.id, p.stock) INTO product_id, available
      FROM jsonb_to_recordset(p_items) AS i(product_id bigint, quantity integer)
      JOIN products p ON p.id = i.product_id
     WHERE pq_stock_on_hand(p.id, p.stock) < i.quantity
     ORDER BY i.product_id LIMIT 1;
    IF product_id IS NOT NULL THEN
        outcome := 'out_of_stock';
        RETURN;
    END IF;
    available := NULL;

    -- The items as every payment reads them (orders.items), in product order, priced by the catalogue.
    SELECT jsonb_agg(jsonb_build_object('product_id', p.id, 'quantity', i.quantity, 'unit_price_paise', p.price_paise)
                     ORDER BY p.id),
           sum(i.quantity::numeric * p.price_paise)
      INTO v_lines, v_total
      FROM jsonb_to_recordset(p_items) AS i(product_id bigint, quantity integer)
      JOIN products p ON p.id = i.product_id;
    IF v_total > 9007199254740991 THEN
        outcome := 'total_too_large';
        RETURN;
    END IF;
    INSERT INTO users (id) VALUES (p_user_id) ON CONFLICT (id) DO NOTHING;
    INSERT INTO orders (user_id, items, total_paise) VALUES (p_user_id, v_lines, v_total::bigint)
    RETURNING id INTO order_id;
    INSERT INTO merchant_requests (client_id, idempotency_key, request_hash, kind, user_id, order_id)
    VALUES (p_client_id, p_idempotency_key, p_request_hash, 'order', p_user_id, order_id);
    outcome := 'created';
END;
$$;

-- A top-up (p_amount_paise > 0) or a deduction (< 0) of a shopper's wallet, with its ledger entry
-- (wallet_transactions, the reason as its note), so the wallet's ledger still adds up to its balance.
-- A wallet is opened (in p_currency, INR when NULL) by its first credit. Outcomes
-- (pq_wallet_adjust_outcome):
--   adjusted | replayed         -> wallet_transaction_id, balance_paise (after it), currency
--   key_reused                  -> the key was used with another body
--   insufficient_balance        -> a deduction past the balance (balance_paise: the balance)
--   currency_mismatch           -> p_currency is not the wallet's (currency: the wallet's)
--   balance_too_large           -> the balance would pass 2^53 - 1
CREATE OR REPLACE FUNCTION pq_merchant_adjust_wallet(
    p_client_id text, p_idempotency_key text, p_request_hash text, p_user_id text, p_amount_paise bigint,
    p_currency text, p_reason text,
    OUT outcome pq_wallet_adjust_outcome, OUT wallet_transaction_id bigint, OUT balance_paise bigint,
    OUT currency text)
LANGUAGE plpgsql SET enable_seqscan = off AS $$
DECLARE
    v_request merchant_requests%ROWTYPE;
    v_wallet  wallets%ROWTYPE;
BEGIN
    PERFORM pq_lock_merchant_key(p_client_id, p_idempotency_key);
    SELECT * INTO v_request FROM merchant_requests r
     WHERE r.client_id = p_client_id AND r.idempotency_key = p_idempotency_key;
    IF FOUND THEN
        IF v_request.kind <> 'wallet_adjustment' OR v_request.request_hash <> p_request_hash THEN
            outcome := 'key_reused';
            RETURN;
        END IF;
        SELECT 'replayed', t.id, t.balance_after_paise, w.currency
          INTO outcome, wallet_transaction_id, balance_paise, currency
          FROM wallet_transactions t JOIN wallets w ON w.id = t.wallet_id
         WHERE t.id = v_request.wallet_transaction_id;
        RETURN;
    END IF;

    SELECT * INTO v_wallet FROM wallets w WHERE w.user_id = p_user_id FOR UPDATE;
    IF NOT FOUND THEN
        IF p_amount_paise < 0 THEN
            outcome := 'insufficient_balance';
            balance_paise := 0;
            RETURN;
        END IF;
        INSERT INTO users (id) VALUES (p_user_id) ON CONFLICT (id) DO NOTHING;
        -- Two first top-ups racing: the second waits for the first's wallet, then locks it.
        INSERT INTO wallets (user_id, balance_paise, currency) VALUES (p_user_id, 0, coalesce(p_currency, 'INR'))
        ON CONFLICT (user_id) DO NOTHING;
        SELECT * INTO v_wallet FROM wallets w WHERE w.user_id = p_user_id FOR UPDATE;
    END IF;
    currency := v_wallet.currency;
    balance_paise := v_wallet.balance_paise;
    IF p_currency IS NOT NULL AND v_wallet.currency <> p_currency THEN
        outcome := 'currency_mismatch';
        RETURN;
    END IF;
    IF v_wallet.balance_paise + p_amount_paise < 0 THEN
        outcome := 'insufficient_balance';
        RETURN;
    END IF;
    IF v_wallet.balance_paise + p_amount_paise > 9007199254740991 THEN
        outcome := 'balance_too_large';
        RETURN;
    END IF;
    balance_paise := v_wallet.balance_paise + p_amount_paise;
    UPDATE wallets w SET balance_paise = pq_merchant_adjust_wallet.balance_paise, updated_at = now()
     WHERE w.id = v_wallet.id;
    INSERT INTO wallet_transactions (wallet_id, kind, amount_paise, balance_after_paise, note)
    VALUES (v_wallet.id, CASE WHEN p_amount_paise > 0 THEN 'credit' ELSE 'debit' END, abs(p_amount_paise),
            pq_merchant_adjust_wallet.balance_paise, p_reason)
    RETURNING id INTO wallet_transaction_id;
    INSERT INTO merchant_requests (client_id, idempotency_key, request_hash, kind, user_id, wallet_transaction_id)
    VALUES (p_client_id, p_idempotency_key, p_request_hash, 'wallet_adjustment', p_user_id, wallet_transaction_id);
    outcome := 'adjusted';
END;
$$;

-- A wallet payment a merchant client starts on a shopper's behalf: the shopper's own intake
-- (pq_enqueue_job, with its per-user lock, key, order and sold-out checks, and its send of the queue
-- message in this transaction when the queue is here), and the job recorded as requested by the client,
-- in the same transaction. Answers pq_enqueue_job's columns and the job's requested_by.
CREATE OR REPLACE FUNCTION pq_merchant_enqueue(
    p_client_id text, p_user_id text, p_idempotency_key text, p_request_hash text, p_order_id bigint,
    p_job_id uuid, p_queue text, p_message jsonb, p_headers jsonb,
    OUT outcome pq_enqueue_outcome, OUT job_id uuid, OUT status text, OUT queue_seq bigint, OUT reason text,
    OUT payment_id bigint, OUT finished bigint, OUT sold_out bigint[], OUT requested_by text)
LANGUAGE plpgsql SET enable_seqscan = off AS $$
BEGIN
    SELECT e.outcome, e.job_id, e.status, e.queue_seq, e.reason, e.payment_id, e.finished, e.sold_out
      INTO outcome, job_id, status, queue_seq, reason, payment_id, finished, sold_out
      FROM pq_enqueue_job(p_user_id, p_idempotency_key, p_request_hash, p_order_id, 'wallet', NULL,
                          p_job_id, p_queue, p_message, p_headers) e;
    IF outcome = 'created' THEN
        UPDATE payment_jobs j SET requested_by = p_client_id WHERE j.id = pq_merchant_enqueue.job_id;
    END IF;
    SELECT j.requested_by INTO requested_by FROM payment_jobs j WHERE j.id = pq_merchant_enqueue.job_id;
END;
$$;
