-- Fulfilling an order, the part of the money path that the wallet (wallet_payment.sql) and the
-- gateways (gateway_payment.sql) share: checking what the order asks for, then the seed's steps 4
-- and 6-9 and the job's end. Each runs inside its caller's transaction.

-- Why an order cannot be fulfilled for a job right now (problem NULL: it can), and its items
-- aggregated per product ({product_id, quantity, unit_price_paise}, sorted by product id). problem:
--   order_not_payable   the order is gone, not pending, or not the job's user's
--   invalid_order       an item is malformed, names no product, or the items do not add up to the total
--   out_of_stock        a product has fewer units on hand than the order asks for
-- Stock is read without the product locks: out_of_stock is still true when read (stock only goes
-- down during a sale), which lets a sold-out product fail its buyers without queueing them behind
-- its row lock. The caller then locks what it buys from with pq_lock_stock, which reads it again.
DROP FUNCTION IF EXISTS pq_order_problem(orders, payment_jobs);
CREATE FUNCTION pq_order_problem(p_order orders, p_job payment_jobs, OUT problem text, OUT items jsonb)
LANGUAGE plpgsql STABLE AS $$
DECLARE
    v_missing boolean;
    v_total   numeric;
    v_short   boolean;
BEGIN
    IF p_order.id IS NULL OR p_order.order_status <> 'pending' OR p_order.user_id <> p_job.user_id THEN
        problem := 'order_not_payable';
        RETURN;
    END IF;
    IF EXISTS (SELECT 1 FROM jsonb_array_elements(p_order.items) AS e
                WHERE jsonb_typeof(e) <> 'object'
                   OR coalesce(e->>'product_id', '') !~ '^[0-9]{1,18}$'
                   OR coalesce(e->>'quantity', '') !~ '^[1-9][0-9]{0,8}$'
                   OR coalesce(e->>'unit_price_paise', '') !~ '^[0-9]{1,15}$') THEN
        problem := 'invalid_order';
        RETURN;
    END IF;
    -- One statement: the items, whether each names a product, what they add up to, whether one is short.
    SELECT jsonb_agg(jsonb_build_object('product_id', i.product_id, 'quantity', i.quantity,
                                        'unit_price_paise', i.unit_price_paise) ORDER BY i.product_id),
           bool_or(p.id IS NULL), sum(i.quantity::numeric * i.unit_price_paise),
           bool_or(pq_stock_on_hand(p.id, p.stock) < i.quantity)
      INTO items, v_missing, v_total, v_short
      FROM (SELECT (e->>'product_id')::bigint AS product_id,
                   sum((e->>'quantity')::integer)::integer AS quantity,
                   max((e->>'unit_price_paise')::bigint) AS unit_price_paise
              FROM jsonb_array_elements(p_order.items) AS e
             GROUP BY 1) AS i
      LEFT JOIN products p ON p.id = i.product_id;
    IF v_missing OR v_total IS DISTINCT FROM p_order.total_paise THEN
        problem := 'invalid_order';
    ELSIF v_short THEN
        problem := 'out_of_stock';
    END IF;
END;
$$;

-- Fulfils an order that pq_order_problem and then pq_lock_stock passed: the payment transaction
-- (step 4; UNIQUE order_id, and UNIQUE gateway payment, are the double-charge guards), order items
-- and stock (step 7), the order paid (step 8), the cart (step 9), then the job's end and its event
-- (step 10 happens after commit, from the outbox). p_amount_paise / p_currency are what was charged.
-- sold_out: the products whose last units this took (pq_take_stock), for the caller to end the line of
-- everyone else waiting for them after commit (line.sql).
DROP FUNCTION IF EXISTS pq_fulfil_order(payment_jobs, orders, jsonb, bigint, text);
CREATE FUNCTION pq_fulfil_order(p_job payment_jobs, p_order orders, p_items jsonb, p_amount_paise bigint,
                                p_currency text, OUT payment_id bigint, OUT event jsonb, OUT sold_out bigint[])
LANGUAGE plpgsql AS $$
DECLARE
    v_payment payment_transactions%ROWTYPE;
BEGIN
    INSERT INTO payment_transactions (order_id, job_id, user_id, method, amount_paise, currency, gateway_ref)
    VALUES (p_order.id, p_job.id, p_job.user_id, p_job.method, p_amount_paise, p_currency, p_job.gateway_ref)
    RETURNING * INTO v_payment;
    INSERT INTO order_items (order_id, product_id, quantity, unit_price_paise)
    SELECT p_order.id, (x->>'product_id')::bigint, (x->>'quantity')::integer, (x->>'unit_price_paise')::bigint
      FROM jsonb_array_elements(p_items) AS x;
    sold_out := pq_take_stock(p_items);  -- from each product's row or the shard locked for it
    UPDATE orders SET order_status = 'paid', paid_at = now(), payment_method = p_job.method WHERE id = p_order.id;
    DELETE FROM cart_items c
     USING jsonb_array_elements(p_items) AS x
     WHERE c.user_id = p_job.user_id AND c.product_id = (x->>'product_id')::bigint;
    payment_id := v_payment.id;
    event := pq_end_job(p_job, NULL, v_payment);
END;
$$;
