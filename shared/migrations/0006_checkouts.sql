-- Gateway checkouts (issue 12): the gateway order we create for one of our orders, bound to the
-- shopper, before the shopper pays. A gateway payment is only ever applied to the order whose
-- checkout it was made in, so someone else's payment can neither pay nor refund through our API.
-- The functions that use these tables live in shared/sql/checkouts.sql and gateway_payment.sql.

CREATE TABLE gateway_checkouts (
    id                  uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    order_id            bigint NOT NULL REFERENCES orders (id),
    user_id             text NOT NULL REFERENCES users (id),
    method              text NOT NULL CHECK (method IN ('razorpay', 'cashfree')),
    merchant_ref        text NOT NULL UNIQUE CHECK (merchant_ref ~ '^[A-Za-z0-9_-]{3,40}$'),
    gateway_order_id    text CHECK (gateway_order_id IS NULL OR length(gateway_order_id) BETWEEN 1 AND 64),
    payment_session_id  text,
    amount_paise        bigint NOT NULL CHECK (amount_paise > 0),
    currency            char(3) NOT NULL,
    status              text NOT NULL DEFAULT 'creating'
                        CHECK (status IN ('creating', 'created', 'paid', 'failed', 'expired', 'refunded')),
    job_id              uuid REFERENCES payment_jobs (id),
    expires_at          timestamptz NOT NULL,
    next_check_at       timestamptz NOT NULL DEFAULT now(),
    checks              integer NOT NULL DEFAULT 0,
    created_at          timestamptz NOT NULL DEFAULT now(),
    updated_at          timestamptz NOT NULL DEFAULT now(),
    CHECK ((status = 'creating') = (gateway_order_id IS NULL))
);
COMMENT ON TABLE gateway_checkouts IS
    'A gateway order created by us for one of our orders and its shopper (POST /v1/checkouts). A '
    'gateway payment is accepted only for the order and user of the checkout it was made in.';
COMMENT ON COLUMN gateway_checkouts.id IS 'The checkout id the shopper polls (GET /v1/checkouts/{id}).';
COMMENT ON COLUMN gateway_checkouts.order_id IS 'Our order this checkout pays.';
COMMENT ON COLUMN gateway_checkouts.user_id IS 'The shopper (JWT subject) the checkout belongs to; only they see or pay it.';
COMMENT ON COLUMN gateway_checkouts.method IS 'The gateway: razorpay or cashfree.';
COMMENT ON COLUMN gateway_checkouts.merchant_ref IS
    'Our reference at the gateway, fixed before the create call: Razorpay receipt (unique, at most 40 '
    'characters) and Cashfree order_id. A lost create answer is settled by looking it up.';
COMMENT ON COLUMN gateway_checkouts.gateway_order_id IS
    'The gateway''s order: Razorpay order_..., Cashfree our merchant_ref. NULL while the create call '
    'has not been answered (status creating).';
COMMENT ON COLUMN gateway_checkouts.payment_session_id IS 'Cashfree: what the page opens its checkout with.';
COMMENT ON COLUMN gateway_checkouts.amount_paise IS 'The order''s total when the checkout was created: the gateway order''s amount.';
COMMENT ON COLUMN gateway_checkouts.currency IS 'The order''s currency: the gateway order''s currency.';
COMMENT ON COLUMN gateway_checkouts.status IS
    'creating (create call not answered yet), created (payable), paid, failed, expired, refunded.';
COMMENT ON COLUMN gateway_checkouts.job_id IS 'The latest payment job for this checkout, once one exists.';
COMMENT ON COLUMN gateway_checkouts.expires_at IS
    'When the shopper can no longer pay it (Cashfree order_expiry_time); a new checkout is created after.';
COMMENT ON COLUMN gateway_checkouts.next_check_at IS
    'When the sweeper''s reconciliation next fetches the gateway order if no verdict arrived by then.';
COMMENT ON COLUMN gateway_checkouts.checks IS 'Reconciliation fetches made so far (spaces the next one out).';
COMMENT ON COLUMN gateway_checkouts.created_at IS 'When the checkout was asked for.';
COMMENT ON COLUMN gateway_checkouts.updated_at IS 'Last change of status or binding.';

-- One live checkout per (order, method): asking again returns the same gateway order.
CREATE UNIQUE INDEX gateway_checkouts_one_live_per_order_method
    ON gateway_checkouts (order_id, method) WHERE status IN ('creating', 'created');
CREATE UNIQUE INDEX gateway_checkouts_gateway_order
    ON gateway_checkouts (method, gateway_order_id) WHERE gateway_order_id IS NOT NULL;
CREATE INDEX gateway_checkouts_to_reconcile ON gateway_checkouts (next_check_at) WHERE status = 'created';

ALTER TABLE payment_jobs ADD COLUMN checkout_id uuid REFERENCES gateway_checkouts (id);
COMMENT ON COLUMN payment_jobs.checkout_id IS
    'The checkout whose gateway order this job''s payment belongs to (NULL: wallet, or the old flow).';
ALTER TABLE payment_jobs ADD COLUMN parked_at timestamptz;
COMMENT ON COLUMN payment_jobs.parked_at IS
    'Set while a processing job waits for the gateway''s verdict with no queue message (Cashfree order '
    'still ACTIVE): a webhook or the sweeper''s reconciliation sends it again. NULL otherwise.';
ALTER TABLE payment_jobs ADD COLUMN parks integer NOT NULL DEFAULT 0;
COMMENT ON COLUMN payment_jobs.parks IS
    'Times the job was parked. Part of the queue deduplication id of a re-sent job, and a job parked '
    'once has given up its place in its user''s line (it may finish after a later job).';
CREATE INDEX payment_jobs_parked ON payment_jobs (parked_at) WHERE parked_at IS NOT NULL;
CREATE INDEX payment_jobs_checkout ON payment_jobs (checkout_id) WHERE checkout_id IS NOT NULL;
ALTER TABLE payment_jobs ADD CONSTRAINT payment_jobs_parked_is_processing
    CHECK (parked_at IS NULL OR status = 'processing');

-- One gateway payment backs one job -- except a job that failed while the gateway's verdict could still
-- change (a failed payment authorised late, an expired Cashfree order paid late) and that moved no
-- money: the late success gets one new job, which pays the order or refunds. Refunded or paid
-- payments stay excluded for good (payment_transactions_one_per_gateway_payment guards payment too).
CREATE UNIQUE INDEX payment_jobs_one_live_job_per_gateway_payment
    ON payment_jobs (method, gateway_ref)
    WHERE gateway_ref IS NOT NULL
      AND (status <> 'failed' OR reason NOT IN ('gateway_payment_failed', 'gateway_checkout_expired'));
DROP INDEX payment_jobs_one_job_per_gateway_payment;

-- Refunds are followed to their final state (Razorpay pending -> processed | failed, Cashfree PENDING /
-- ONHOLD -> SUCCESS | CANCELLED) by webhooks and the sweeper.
ALTER TABLE gateway_refunds ADD COLUMN state text NOT NULL DEFAULT 'pending'
    CHECK (state IN ('pending', 'succeeded', 'failed'));
COMMENT ON COLUMN gateway_refunds.state IS 'pending until the gateway reports the refund final: succeeded or failed.';
ALTER TABLE gateway_refunds ADD COLUMN gateway_status text;
COMMENT ON COLUMN gateway_refunds.gateway_status IS 'The gateway''s own word for the refund''s state, last seen.';
ALTER TABLE gateway_refunds ADD COLUMN settled_at timestamptz;
COMMENT ON COLUMN gateway_refunds.settled_at IS 'When the refund was seen final.';
ALTER TABLE gateway_refunds ADD COLUMN next_check_at timestamptz NOT NULL DEFAULT now();
COMMENT ON COLUMN gateway_refunds.next_check_at IS 'When the sweeper next fetches a pending refund.';
CREATE INDEX gateway_refunds_pending ON gateway_refunds (next_check_at) WHERE state = 'pending';

CREATE TABLE gateway_webhook_events (
    id                  bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    gateway             text NOT NULL CHECK (gateway IN ('razorpay', 'cashfree')),
    event_id            text NOT NULL CHECK (length(event_id) BETWEEN 1 AND 200),
    event_type          text NOT NULL,
    gateway_order_id    text,
    gateway_payment_id  text,
    payload             jsonb NOT NULL,
    outcome             text,
    received_at         timestamptz NOT NULL DEFAULT now(),
    UNIQUE (gateway, event_id)
);
COMMENT ON TABLE gateway_webhook_events IS
    'Every verified gateway webhook, once: UNIQUE (gateway, event_id) drops the gateways'' retries and '
    'replays (Razorpay X-Razorpay-Event-Id; Cashfree x-idempotency-key, else payment id and type).';
COMMENT ON COLUMN gateway_webhook_events.event_id IS 'The gateway''s event id, the deduplication key.';
COMMENT ON COLUMN gateway_webhook_events.event_type IS 'Razorpay event (payment.captured, ...) or Cashfree type.';
COMMENT ON COLUMN gateway_webhook_events.gateway_order_id IS 'The gateway order it is about (our checkout''s).';
COMMENT ON COLUMN gateway_webhook_events.gateway_payment_id IS 'The payment (Cashfree: cf_payment_id) it is about.';
COMMENT ON COLUMN gateway_webhook_events.payload IS 'The verified body, for audit and replays by hand.';
COMMENT ON COLUMN gateway_webhook_events.outcome IS 'What recording it did (job_created, job_woken, ignored, ...).';
COMMENT ON COLUMN gateway_webhook_events.received_at IS 'When we first received it.';
