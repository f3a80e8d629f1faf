-- Indexes for lookups of the gateway path that had none and so scanned their whole table, each
-- request costing time in proportion to every row ever written:
--   the webhooks that arrived for a gateway order while its job was at the gateway (pq_gateway_park);
--   a refund by the gateway's id for it (pq_webhook_record, a refund webhook);
--   the jobs of a gateway payment whatever their state (gateway_ref_in_use, pq_checkout_settle: the
--   unique index covers only the jobs that still hold their payment);
--   the checkouts of an order (pq_enqueue_gateway_job, pq_checkout_open: only a live checkout was
--   indexed, by gateway_checkouts_one_live_per_order_method).
-- Partial where the column can be NULL, so wallet jobs add nothing to their index. Like 0006's, these
-- are built in the deploy's migration transaction (CONCURRENTLY cannot run in one): each holds its
-- table's SHARE lock, which blocks writes to it, until the migration commits, and takes time in
-- proportion to the table: deploy it when the gateway path is quiet. Built in the order most of the
-- payment path writes these tables (webhook, refund, job, checkout), so that a payment rarely holds one
-- the migration still needs while waiting for one it holds; a deadlock PostgreSQL detects aborts one
-- side (a payment is retried; a migration fails the deploy, which can be run again).
CREATE INDEX gateway_webhook_events_gateway_order ON gateway_webhook_events (gateway, gateway_order_id)
    WHERE gateway_order_id IS NOT NULL;
CREATE INDEX gateway_refunds_gateway_refund ON gateway_refunds (method, gateway_refund_id);
CREATE INDEX payment_jobs_gateway_payment ON payment_jobs (method, gateway_ref) WHERE gateway_ref IS NOT NULL;
CREATE INDEX gateway_checkouts_order ON gateway_checkouts (order_id);
