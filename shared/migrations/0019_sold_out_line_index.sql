-- The bulk end of a sold-out product's line (pq_end_sold_out_jobs, shared/sql/line.sql) found the product's
-- queued jobs by reading every queued job and its order's items: each statement cost time in proportion to the
-- whole line (docs/capacity.md: ~300,000 queued jobs passed the 5 s statement timeout and ended none). A job
-- now carries the products its order held when it was accepted, and a GIN index over them, holding live
-- (unfinished) jobs only, leads from a product straight to its jobs in line.
--
-- On the job, not on orders: an index of pending orders by product would also hold every abandoned order
-- and every order whose job failed (they stay pending), and each bulk end would read them all again. Here a
-- job leaves the index when it ends (finished_at is set), so what a bulk end reads follows the product's jobs
-- in line. The predicate names finished_at, not status: a query by status could also be served by
-- payment_jobs_live (every live job), which a plan made while the table was small may prefer and keep
-- (shared/sql/__init__.py); nothing else indexes finished_at IS NULL. New entries go to GIN's pending list (fastupdate, the default): an enqueue appends
-- one small tuple there instead of rewriting its product's posting list in place (a short list is kept in its
-- entry and logged whole at each change: fastupdate off nearly doubled an enqueue's WAL). Every search reads
-- the whole pending list, so it is kept at the least GIN allows, 64 kB (gin_pending_list_limit, in kB;
-- PostgreSQL docs "GIN Fast Update Technique"): a bulk end reads at most those few pages beyond its product's
-- entries, and the enqueue that fills the list merges it into the index in bulk, about once per thousand
-- enqueues (autovacuum too).
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
CREATE INDEX payment_jobs_live_products ON payment_jobs USING gin (product_ids)
    WITH (fastupdate = on, gin_pending_list_limit = 64)
    WHERE finished_at IS NULL AND product_ids IS NOT NULL;
