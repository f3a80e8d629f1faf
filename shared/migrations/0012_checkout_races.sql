-- Two races of the checkout flow.
--
-- 1. A failed job gives back the gateway payment it could not use. Before, only a job that failed
--    gateway_payment_failed or gateway_checkout_expired let its payment back a new job (0006's partial
--    index spelled those reasons out); one that failed gateway_order_mismatch -- someone else's payment
--    named against my checkout -- kept it for good, so the rightful shopper's submit was 409
--    gateway_payment_in_use, their webhook already_handled, and the payment never paid their order.
--    Now the job says whether it still holds its payment (gateway_ref_released_at), decided once when it
--    fails (pq_gateway_refunded, shared/sql/gateway_payment.sql), and the unique index, the intakes
--    (shared/sql/intake.sql) and the webhooks' settling (shared/sql/checkouts.sql) all read that.
-- 2. Concurrent requests for one checkout make one gateway order: the request that opens (or takes over)
--    a checkout still creating claims its create call until create_claimed_until; the others wait for
--    its answer instead of looking the order up before it landed and creating a second one
--    (pq_checkout_open, shared/services/checkout.py).
--
-- Like 0006 and 0009, this runs in the deploy's migration transaction: adding the columns takes each
-- table's ACCESS EXCLUSIVE lock until the migration commits, and the backfill and the index build read
-- payment_jobs once: deploy it when the gateway path is quiet.

ALTER TABLE payment_jobs ADD COLUMN gateway_ref_released_at timestamptz
    CHECK (gateway_ref_released_at IS NULL OR (status = 'failed' AND gateway_ref IS NOT NULL));
COMMENT ON COLUMN payment_jobs.gateway_ref_released_at IS
    'When this failed job gave its gateway payment (gateway_ref) back without having moved money with it: '
    'from then the payment may back another job. NULL while the job holds it: live, succeeded, or failed '
    'on a verdict about the payment for its own order (refunded, or never captured). Set by '
    'pq_gateway_refunded, which says which failures release.';

-- The jobs that ended before this release under the rule pq_gateway_refunded applies from now on: the
-- two reasons 0006 already let go, and the three that say the payment was never the job's to use.
UPDATE payment_jobs SET gateway_ref_released_at = finished_at
 WHERE gateway_ref IS NOT NULL AND status = 'failed'
   AND reason IN ('gateway_payment_failed', 'gateway_checkout_expired', 'gateway_order_mismatch',
                  'gateway_payment_unbound', 'gateway_payment_not_found');

-- One gateway payment backs at most one job that holds it. Refunded or paid payments stay held for
-- good (payment_transactions_one_per_gateway_payment guards payment too). Built before 0006's index
-- is dropped: it indexes a subset of that index's rows, so it cannot find a duplicate that one allowed.
CREATE UNIQUE INDEX payment_jobs_one_holder_per_gateway_payment
    ON payment_jobs (method, gateway_ref)
    WHERE gateway_ref IS NOT NULL AND gateway_ref_released_at IS NULL;
DROP INDEX payment_jobs_one_live_job_per_gateway_payment;

ALTER TABLE gateway_checkouts ADD COLUMN create_claimed_until timestamptz
    CHECK (create_claimed_until IS NULL OR status = 'creating');
COMMENT ON COLUMN gateway_checkouts.create_claimed_until IS
    'While creating: until when the request that opened or took over the checkout may still be making its '
    'gateway create call. Other requests wait for its answer meanwhile; after it (or when the claimant '
    'let go, its call unanswered) the next request takes over and settles it by lookup. NULL otherwise.';
