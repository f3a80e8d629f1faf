-- The outcome of each money-moving function, as a type of its own: PostgreSQL refuses to return a
-- value the type lacks, and tests/integration/test_sql_layout.py holds each type to its Python enum
-- (shared/outcomes.py). Values are only ever added (ADD VALUE IF NOT EXISTS): the previous release's
-- code, still running during a deploy or after a rollback, reads them as the strings it knows.

DO $$
BEGIN
    CREATE TYPE pq_enqueue_outcome AS ENUM ();
EXCEPTION WHEN duplicate_object THEN NULL;
END $$;
ALTER TYPE pq_enqueue_outcome ADD VALUE IF NOT EXISTS 'created';
ALTER TYPE pq_enqueue_outcome ADD VALUE IF NOT EXISTS 'replayed';
ALTER TYPE pq_enqueue_outcome ADD VALUE IF NOT EXISTS 'key_reused';
ALTER TYPE pq_enqueue_outcome ADD VALUE IF NOT EXISTS 'order_not_found';
ALTER TYPE pq_enqueue_outcome ADD VALUE IF NOT EXISTS 'order_not_payable';
ALTER TYPE pq_enqueue_outcome ADD VALUE IF NOT EXISTS 'payment_in_progress';
ALTER TYPE pq_enqueue_outcome ADD VALUE IF NOT EXISTS 'gateway_ref_in_use';

-- pq_process_payment (the wallet path).
DO $$
BEGIN
    CREATE TYPE pq_wallet_outcome AS ENUM ();
EXCEPTION WHEN duplicate_object THEN NULL;
END $$;
ALTER TYPE pq_wallet_outcome ADD VALUE IF NOT EXISTS 'succeeded';
ALTER TYPE pq_wallet_outcome ADD VALUE IF NOT EXISTS 'failed';
ALTER TYPE pq_wallet_outcome ADD VALUE IF NOT EXISTS 'already_succeeded';
ALTER TYPE pq_wallet_outcome ADD VALUE IF NOT EXISTS 'already_failed';
ALTER TYPE pq_wallet_outcome ADD VALUE IF NOT EXISTS 'job_not_found';
ALTER TYPE pq_wallet_outcome ADD VALUE IF NOT EXISTS 'not_a_wallet_job';

-- pq_gateway_begin: the first step of a gateway job's delivery.
DO $$
BEGIN
    CREATE TYPE pq_gateway_begin_outcome AS ENUM ();
EXCEPTION WHEN duplicate_object THEN NULL;
END $$;
ALTER TYPE pq_gateway_begin_outcome ADD VALUE IF NOT EXISTS 'proceed';
ALTER TYPE pq_gateway_begin_outcome ADD VALUE IF NOT EXISTS 'already_succeeded';
ALTER TYPE pq_gateway_begin_outcome ADD VALUE IF NOT EXISTS 'already_failed';
ALTER TYPE pq_gateway_begin_outcome ADD VALUE IF NOT EXISTS 'job_not_found';
ALTER TYPE pq_gateway_begin_outcome ADD VALUE IF NOT EXISTS 'not_a_gateway_job';

-- pq_gateway_fail, pq_complete_gateway_payment, pq_gateway_refunded: how a gateway job ends.
DO $$
BEGIN
    CREATE TYPE pq_gateway_end_outcome AS ENUM ();
EXCEPTION WHEN duplicate_object THEN NULL;
END $$;
ALTER TYPE pq_gateway_end_outcome ADD VALUE IF NOT EXISTS 'succeeded';
ALTER TYPE pq_gateway_end_outcome ADD VALUE IF NOT EXISTS 'failed';
ALTER TYPE pq_gateway_end_outcome ADD VALUE IF NOT EXISTS 'already_succeeded';
ALTER TYPE pq_gateway_end_outcome ADD VALUE IF NOT EXISTS 'already_failed';
ALTER TYPE pq_gateway_end_outcome ADD VALUE IF NOT EXISTS 'refund_required';
ALTER TYPE pq_gateway_end_outcome ADD VALUE IF NOT EXISTS 'parked';

-- pq_enqueue_gateway_job: a gateway payment is accepted only for its checkout's order and shopper.
ALTER TYPE pq_enqueue_outcome ADD VALUE IF NOT EXISTS 'checkout_required';
ALTER TYPE pq_enqueue_outcome ADD VALUE IF NOT EXISTS 'gateway_order_mismatch';

-- pq_checkout_route (pq_checkout_open), pq_checkout_created: creating the gateway order of a checkout.
DO $$
BEGIN
    CREATE TYPE pq_checkout_outcome AS ENUM ();
EXCEPTION WHEN duplicate_object THEN NULL;
END $$;
ALTER TYPE pq_checkout_outcome ADD VALUE IF NOT EXISTS 'existing';
ALTER TYPE pq_checkout_outcome ADD VALUE IF NOT EXISTS 'pending';
ALTER TYPE pq_checkout_outcome ADD VALUE IF NOT EXISTS 'created';
ALTER TYPE pq_checkout_outcome ADD VALUE IF NOT EXISTS 'order_not_found';
ALTER TYPE pq_checkout_outcome ADD VALUE IF NOT EXISTS 'order_not_payable';
ALTER TYPE pq_checkout_outcome ADD VALUE IF NOT EXISTS 'gateway_order_mismatch';
ALTER TYPE pq_checkout_outcome ADD VALUE IF NOT EXISTS 'claimed';
-- pq_checkout_route: no gateway the request allows can be called now (circuit open, or no token).
ALTER TYPE pq_checkout_outcome ADD VALUE IF NOT EXISTS 'unavailable';
-- pq_checkout_for_order: a product of the order has no unit left, so no checkout is opened.
ALTER TYPE pq_checkout_outcome ADD VALUE IF NOT EXISTS 'sold_out';

-- pq_webhook_record, pq_checkout_settle: what a gateway's word about a checkout led to.
DO $$
BEGIN
    CREATE TYPE pq_webhook_outcome AS ENUM ();
EXCEPTION WHEN duplicate_object THEN NULL;
END $$;
ALTER TYPE pq_webhook_outcome ADD VALUE IF NOT EXISTS 'duplicate';
ALTER TYPE pq_webhook_outcome ADD VALUE IF NOT EXISTS 'unknown_checkout';
ALTER TYPE pq_webhook_outcome ADD VALUE IF NOT EXISTS 'job_created';
ALTER TYPE pq_webhook_outcome ADD VALUE IF NOT EXISTS 'job_woken';
ALTER TYPE pq_webhook_outcome ADD VALUE IF NOT EXISTS 'job_live';
ALTER TYPE pq_webhook_outcome ADD VALUE IF NOT EXISTS 'already_handled';
ALTER TYPE pq_webhook_outcome ADD VALUE IF NOT EXISTS 'refund_updated';
ALTER TYPE pq_webhook_outcome ADD VALUE IF NOT EXISTS 'ignored';
ALTER TYPE pq_webhook_outcome ADD VALUE IF NOT EXISTS 'unreadable';
ALTER TYPE pq_webhook_outcome ADD VALUE IF NOT EXISTS 'stale';
ALTER TYPE pq_webhook_outcome ADD VALUE IF NOT EXISTS 'wake_deferred';

-- pq_webhook_record: a refund webhook that reported a refund failed (retried, or owed to an operator).
ALTER TYPE pq_webhook_outcome ADD VALUE IF NOT EXISTS 'refund_failed';
-- pq_webhook_record: a refund made at the gateway after its payment was applied to the order (the operator's).
ALTER TYPE pq_webhook_outcome ADD VALUE IF NOT EXISTS 'refund_after_fulfilment';
-- pq_webhook_record: a refund of a payment no job of ours holds yet (gateway_refund_reports).
ALTER TYPE pq_webhook_outcome ADD VALUE IF NOT EXISTS 'refund_unmatched';

-- pq_refund_operator_retry: an operator's retry of an owed refund.
DO $$
BEGIN
    CREATE TYPE pq_refund_retry_outcome AS ENUM ();
EXCEPTION WHEN duplicate_object THEN NULL;
END $$;
ALTER TYPE pq_refund_retry_outcome ADD VALUE IF NOT EXISTS 'scheduled';
ALTER TYPE pq_refund_retry_outcome ADD VALUE IF NOT EXISTS 'not_owed';
ALTER TYPE pq_refund_retry_outcome ADD VALUE IF NOT EXISTS 'not_found';

-- pq_merchant_create_order: an order a merchant client creates for a shopper.
DO $$
BEGIN
    CREATE TYPE pq_merchant_order_outcome AS ENUM ();
EXCEPTION WHEN duplicate_object THEN NULL;
END $$;
ALTER TYPE pq_merchant_order_outcome ADD VALUE IF NOT EXISTS 'created';
ALTER TYPE pq_merchant_order_outcome ADD VALUE IF NOT EXISTS 'replayed';
ALTER TYPE pq_merchant_order_outcome ADD VALUE IF NOT EXISTS 'key_reused';
ALTER TYPE pq_merchant_order_outcome ADD VALUE IF NOT EXISTS 'product_not_found';
ALTER TYPE pq_merchant_order_outcome ADD VALUE IF NOT EXISTS 'out_of_stock';
ALTER TYPE pq_merchant_order_outcome ADD VALUE IF NOT EXISTS 'total_too_large';

-- pq_merchant_adjust_wallet: a top-up or adjustment of a shopper's wallet by a merchant client.
DO $$
BEGIN
    CREATE TYPE pq_wallet_adjust_outcome AS ENUM ();
EXCEPTION WHEN duplicate_object THEN NULL;
END $$;
ALTER TYPE pq_wallet_adjust_outcome ADD VALUE IF NOT EXISTS 'adjusted';
ALTER TYPE pq_wallet_adjust_outcome ADD VALUE IF NOT EXISTS 'replayed';
ALTER TYPE pq_wallet_adjust_outcome ADD VALUE IF NOT EXISTS 'key_reused';
ALTER TYPE pq_wallet_adjust_outcome ADD VALUE IF NOT EXISTS 'insufficient_balance';
ALTER TYPE pq_wallet_adjust_outcome ADD VALUE IF NOT EXISTS 'currency_mismatch';
ALTER TYPE pq_wallet_adjust_outcome ADD VALUE IF NOT EXISTS 'balance_too_large';

-- pq_enqueue_job, pq_enqueue_gateway_job: a product of the order is sold out (line.sql).
ALTER TYPE pq_enqueue_outcome ADD VALUE IF NOT EXISTS 'sold_out';

-- pq_cancel_job: a shopper leaving the line (line.sql).
DO $$
BEGIN
    CREATE TYPE pq_cancel_outcome AS ENUM ();
EXCEPTION WHEN duplicate_object THEN NULL;
END $$;
ALTER TYPE pq_cancel_outcome ADD VALUE IF NOT EXISTS 'cancelled';
ALTER TYPE pq_cancel_outcome ADD VALUE IF NOT EXISTS 'already_cancelled';
ALTER TYPE pq_cancel_outcome ADD VALUE IF NOT EXISTS 'job_not_found';
ALTER TYPE pq_cancel_outcome ADD VALUE IF NOT EXISTS 'job_taken';
ALTER TYPE pq_cancel_outcome ADD VALUE IF NOT EXISTS 'job_finished';
ALTER TYPE pq_cancel_outcome ADD VALUE IF NOT EXISTS 'paid_at_gateway';
ALTER TYPE pq_cancel_outcome ADD VALUE IF NOT EXISTS 'cancel_requested';

-- pq_drop_dead_letter: an operator drops a job's message from the DLQ (failures.sql).
DO $$
BEGIN
    CREATE TYPE pq_dlq_drop_outcome AS ENUM ();
EXCEPTION WHEN duplicate_object THEN NULL;
END $$;
ALTER TYPE pq_dlq_drop_outcome ADD VALUE IF NOT EXISTS 'dropped';
ALTER TYPE pq_dlq_drop_outcome ADD VALUE IF NOT EXISTS 'already_dropped';
ALTER TYPE pq_dlq_drop_outcome ADD VALUE IF NOT EXISTS 'job_not_found';
ALTER TYPE pq_dlq_drop_outcome ADD VALUE IF NOT EXISTS 'not_dead_lettered';
ALTER TYPE pq_dlq_drop_outcome ADD VALUE IF NOT EXISTS 'gateway_money_unsettled';
