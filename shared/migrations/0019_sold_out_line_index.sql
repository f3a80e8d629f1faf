-- The bulk end of a sold-out product's line (pq_end_sold_out_jobs, shared/sql/line.sql) found the product's
-- queued jobs by reading every queued job and its order's items: each statement cost time in proportion to the
-- whole line (docs/capacity.md: ~300,000 queued jobs passed the 5 s statement timeout and ended none). A job
-- now carries the products its order held when it was accepted, and a GIN index over them, holding queued
-- jobs only, leads from a product straight to its queued jobs.
--
-- On the job, not on orders: an index of pending orders by product would also hold every abandoned order
-- and every order whose job failed (they stay pending), and each bulk end would read them all again. Here a
-- job leaves the index when it leaves 'queued' (the partial predicate), so what a bulk end reads follows the
-- product's queued jobs. fastupdate off: a pending list would be read whole by every search (every product's
-- recent jobs) until it is merged, and merged by whichever enqueue fills it.
--
-- Jobs accepted before this migration carry no products: a bulk end does not see them, and each of them, if
-- its product sells out, is told out_of_stock in its turn, as before the bulk end existed. The new column
-- (nullable, no default) rewrites nothing, but takes payment_jobs' ACCESS EXCLUSIVE lock, which the deploy's
-- migration transaction holds until it commits, through the index build (a read of the whole table): reads
-- of payment_jobs wait too, longer than for 0009's or 0015's indexes. Deploy it when the queue is quiet.
ALTER TABLE payment_jobs ADD COLUMN product_ids bigint[];
COMMENT ON COLUMN payment_jobs.product_ids IS
    'The products a wallet job''s order named when the job was accepted (pq_item_products of orders.items), '
    'for the index that finds a sold-out product''s queued jobs. NULL for gateway jobs (never ended in bulk) '
    'and for jobs accepted before migration 0019.';
CREATE INDEX payment_jobs_queued_products ON payment_jobs USING gin (product_ids) WITH (fastupdate = off)
    WHERE status = 'queued' AND product_ids IS NOT NULL;
