-- Stock shards (migration 0008, docs/capacity.md "The lift"): where an order's units come from.
-- fulfilment.sql calls these three instead of reading, locking and decrementing products.stock
-- itself. For a product without shards each does exactly what that inline code did, so a database
-- where no product is sharded (the default) runs today's design unchanged.

-- The units a product has on hand: the sum of its shards if it has any, else its row's stock
-- (p_stock). Takes the row's stock from the caller, who has the row already: inlined into its query.
CREATE OR REPLACE FUNCTION pq_stock_on_hand(p_product_id bigint, p_stock integer) RETURNS integer
LANGUAGE sql STABLE AS $$
    SELECT coalesce((SELECT sum(s.stock)::integer FROM product_stock_shards s WHERE s.product_id = p_product_id),
                    p_stock)
$$;

-- Whether any product of the items (as pq_order_problem aggregated them) keeps its stock in shards.
CREATE OR REPLACE FUNCTION pq_any_sharded(p_items jsonb) RETURNS boolean
LANGUAGE sql STABLE AS $$
    SELECT EXISTS (SELECT 1 FROM product_stock_shards s
                     JOIN jsonb_to_recordset(p_items) AS x(product_id bigint) ON x.product_id = s.product_id)
$$;

-- Locks what an order's products are bought from, in ascending product id (the one order every
-- payment takes them in), and answers whether they still have the units under the lock (NULL) or
-- not (out_of_stock). p_items: the items as pq_order_problem aggregated them.
-- Where none of the products is sharded (the default), one statement locks their rows in id order
-- (the sort runs below the row locks) and reads their stock, and pq_take_stock takes it in one more:
-- the design without shards, unchanged. Otherwise each product in turn: its row; or, for a sharded
-- product, one shard with enough units for the order, tried from one picked by the buyer's user id:
--   1. the first such shard no other payment holds (SKIP LOCKED: never waits);
--   2. else each such shard in turn, waiting for it, inside a subtransaction that is rolled back
--      (releasing the lock) if the shard no longer has enough once it is ours;
--   3. else, no one shard having enough, every shard in shard order (pq_take_stock takes from several).
-- No cycle of waits can form: a payment waits for a shard of a product only while holding none of
-- that product's shards (2; what 1 and a failed try of 2 locked is released by rolling back their
-- subtransactions) or while taking them all in one order (3), and those holding a shard (1, 2)
-- wait for nothing of that product again. The choice is kept for pq_take_stock in transaction-local
-- settings (set inside the body: the proxy sees only the call).
CREATE OR REPLACE FUNCTION pq_lock_stock(p_items jsonb, p_user_id text) RETURNS text
LANGUAGE plpgsql AS $$
DECLARE
    v_item   record;
    v_shards integer;
    v_start  integer;
    v_shard  integer;
    v_try    integer;
    v_stock  integer;
    v_short  boolean;
BEGIN
    IF NOT pq_any_sharded(p_items) THEN
        SELECT bool_or(l.stock < l.quantity) INTO v_short
          FROM (SELECT p.stock, x.quantity
                  FROM products p JOIN jsonb_to_recordset(p_items) AS x(product_id bigint, quantity integer)
                    ON p.id = x.product_id
                 ORDER BY p.id
                   FOR UPDATE OF p) AS l;
        -- A product sharded between the check and the lock has no units in its row any more (a
        -- sale's products are sharded before it): let the delivery run again rather than fail it.
        IF v_short AND pq_any_sharded(p_items) THEN
            RAISE EXCEPTION 'a product of this order was sharded during its payment' USING ERRCODE = '40001';
        END IF;
        RETURN CASE WHEN v_short THEN 'out_of_stock' END;
    END IF;
    PERFORM set_config('pq.stock_sharded', 'on', true);
    FOR v_item IN
        SELECT x.product_id, x.quantity FROM jsonb_to_recordset(p_items) AS x(product_id bigint, quantity integer)
         ORDER BY 1
    LOOP
        SELECT count(*) INTO v_shards FROM product_stock_shards WHERE product_id = v_item.product_id;
        IF v_shards = 0 THEN
            PERFORM 1 FROM products WHERE id = v_item.product_id FOR UPDATE;
            CONTINUE;
        END IF;
        v_start := (abs(hashtextextended(p_user_id, 0)) % v_shards)::integer;
        v_shard := NULL;
        -- In a subtransaction: a shard this locks and then finds sold down by a commit it did not
        -- see (the re-check of stock >= quantity fails) stays locked; rolling back releases it when
        -- no shard was found, so that step 2 waits holding nothing of this product.
        BEGIN
            SELECT s.shard INTO v_shard FROM product_stock_shards s
             WHERE s.product_id = v_item.product_id AND s.stock >= v_item.quantity
             ORDER BY (s.shard - v_start + v_shards) % v_shards
             LIMIT 1
               FOR UPDATE SKIP LOCKED;
            IF v_shard IS NULL THEN
                RAISE EXCEPTION USING ERRCODE = 'PQS01';
            END IF;
        EXCEPTION WHEN SQLSTATE 'PQS01' THEN
            v_shard := NULL;
        END;
        IF v_shard IS NULL THEN
            FOR v_try IN
                SELECT s.shard FROM product_stock_shards s
                 WHERE s.product_id = v_item.product_id AND s.stock >= v_item.quantity
                 ORDER BY (s.shard - v_start + v_shards) % v_shards
            LOOP
                BEGIN
                    SELECT s.stock INTO v_stock FROM product_stock_shards s
                     WHERE s.product_id = v_item.product_id AND s.shard = v_try
                       FOR UPDATE;
                    IF v_stock IS NULL OR v_stock < v_item.quantity THEN
                        -- Sold down while we waited, or gone (the product unsharded): let it go.
                        RAISE EXCEPTION USING ERRCODE = 'PQS01';
                    END IF;
                    v_shard := v_try;
                EXCEPTION WHEN SQLSTATE 'PQS01' THEN
                    v_shard := NULL;
                END;
                EXIT WHEN v_shard IS NOT NULL;
            END LOOP;
        END IF;
        IF v_shard IS NULL THEN
            PERFORM 1 FROM product_stock_shards s WHERE s.product_id = v_item.product_id ORDER BY s.shard FOR UPDATE;
            v_shard := -1;
        END IF;
        PERFORM set_config('pq.stock_shard_' || v_item.product_id, v_shard::text, true);
    END LOOP;
    -- Everything is locked: the units on hand, read again (a shard's or all of them).
    SELECT bool_or(pq_stock_on_hand(p.id, p.stock) < x.quantity) INTO v_short
      FROM products p JOIN jsonb_to_recordset(p_items) AS x(product_id bigint, quantity integer) ON p.id = x.product_id;
    RETURN CASE WHEN v_short THEN 'out_of_stock' END;
END;
$$;

-- Takes an order's units (items as pq_order_problem aggregated them), with what they come from
-- locked by pq_lock_stock: from the products' rows (one statement, where none is sharded), from the
-- shard locked for a product, or, if it locked every shard, from several in shard order. A product
-- sharded after its lock was taken has no recorded shard and stock 0 on its row: the row's CHECK
-- refuses the update; one unsharded while a payment waited for its shard has no shard left to take
-- from (40001). Either way the transaction rolls back whole and the delivery is retried (shard
-- before the sale, not during it).
-- Returns the products this took the last units of, so that the caller can end the line of everyone
-- else waiting for them after its commit (shared/sql/line.sql). A row's is read from its own update;
-- a sharded product's only when the shard taken from is empty, by reading its other shards without
-- their locks (two payments emptying its last two shards at once may each see the other's still
-- full: the sweeper then finds it sold out).
DROP FUNCTION IF EXISTS pq_take_stock(jsonb);
CREATE FUNCTION pq_take_stock(p_items jsonb) RETURNS bigint[]
LANGUAGE plpgsql AS $$
DECLARE
    v_item     record;
    v_shard    integer;
    v_left     integer;
    v_row      record;
    v_emptied  boolean;
    v_sold_out bigint[] := '{}';
BEGIN
    IF coalesce(current_setting('pq.stock_sharded', true), '') <> 'on' THEN
        WITH taken AS (
            UPDATE products p SET stock = p.stock - x.quantity
              FROM jsonb_to_recordset(p_items) AS x(product_id bigint, quantity integer)
             WHERE p.id = x.product_id
            RETURNING p.id, p.stock)
        SELECT coalesce(array_agg(t.id) FILTER (WHERE t.stock = 0), '{}') INTO v_sold_out FROM taken t;
        RETURN v_sold_out;
    END IF;
    FOR v_item IN
        SELECT x.product_id, x.quantity FROM jsonb_to_recordset(p_items) AS x(product_id bigint, quantity integer)
         ORDER BY 1
    LOOP
        v_shard := nullif(current_setting('pq.stock_shard_' || v_item.product_id, true), '')::integer;
        v_left := 0;
        v_emptied := false;
        IF v_shard IS NULL THEN
            UPDATE products SET stock = stock - v_item.quantity WHERE id = v_item.product_id
            RETURNING stock = 0 INTO v_emptied;
            IF v_emptied THEN
                v_sold_out := v_sold_out || v_item.product_id;
            END IF;
        ELSIF v_shard >= 0 THEN
            UPDATE product_stock_shards SET stock = stock - v_item.quantity
             WHERE product_id = v_item.product_id AND shard = v_shard
            RETURNING stock = 0 INTO v_emptied;
            v_left := CASE WHEN FOUND THEN 0 ELSE v_item.quantity END;
        ELSE
            v_left := v_item.quantity;
            FOR v_row IN
                SELECT s.shard, s.stock FROM product_stock_shards s
                 WHERE s.product_id = v_item.product_id AND s.stock > 0
                 ORDER BY s.shard
            LOOP
                EXIT WHEN v_left = 0;
                UPDATE product_stock_shards SET stock = stock - least(v_left, v_row.stock)
                 WHERE product_id = v_item.product_id AND shard = v_row.shard;
                v_left := v_left - least(v_left, v_row.stock);
            END LOOP;
            v_emptied := true;
        END IF;
        -- Units not found where the lock said they were (the product's shards merged back meanwhile):
        -- roll the payment back and let the delivery run again, never sell them untaken.
        IF v_left > 0 THEN
            RAISE EXCEPTION 'stock of product % moved during its payment', v_item.product_id USING ERRCODE = '40001';
        END IF;
        IF v_shard IS NOT NULL AND v_emptied
           AND NOT EXISTS (SELECT 1 FROM product_stock_shards s
                            WHERE s.product_id = v_item.product_id AND s.stock > 0) THEN
            v_sold_out := v_sold_out || v_item.product_id;
        END IF;
    END LOOP;
    RETURN v_sold_out;
END;
$$;

-- Splits a product's units on hand evenly over p_shards shard rows (0 or 1: back into its own row),
-- under its row's lock and every shard's; returns the units. An operator runs it for the sale's hot
-- products before the sale (docs/capacity.md); restocking a sharded product is running it again
-- after adding the units to products.stock.
CREATE OR REPLACE FUNCTION pq_shard_stock(p_product_id bigint, p_shards integer) RETURNS integer
LANGUAGE plpgsql AS $$
DECLARE
    v_total integer;
BEGIN
    IF p_shards NOT BETWEEN 0 AND 1024 THEN
        RAISE EXCEPTION 'shards must be 0..1024, not %', p_shards;
    END IF;
    PERFORM 1 FROM products WHERE id = p_product_id FOR UPDATE;
    IF NOT FOUND THEN
        RAISE EXCEPTION 'no product %', p_product_id;
    END IF;
    PERFORM 1 FROM product_stock_shards WHERE product_id = p_product_id ORDER BY shard FOR UPDATE;
    SELECT p.stock + coalesce((SELECT sum(s.stock)::integer FROM product_stock_shards s WHERE s.product_id = p.id), 0)
      INTO v_total FROM products p WHERE p.id = p_product_id;
    DELETE FROM product_stock_shards WHERE product_id = p_product_id;
    IF p_shards <= 1 THEN
        UPDATE products SET stock = v_total WHERE id = p_product_id;
    ELSE
        UPDATE products SET stock = 0 WHERE id = p_product_id;
        INSERT INTO product_stock_shards (product_id, shard, stock)
        SELECT p_product_id, g, v_total / p_shards + CASE WHEN g < v_total % p_shards THEN 1 ELSE 0 END
          FROM generate_series(0, p_shards - 1) AS g;
    END IF;
    RETURN v_total;
END;
$$;
