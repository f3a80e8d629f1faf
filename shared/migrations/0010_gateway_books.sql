-- Gateway books: every paisa a gateway took for us ends applied to an order, refunded, on its way back
-- (refunding), or owed and in front of an operator. The functions that keep and read these books live
-- in shared/sql/books.sql; the processor, the webhooks and the sweeper write through them.

CREATE TABLE gateway_payments (
    method            text NOT NULL,
    gateway_ref       text NOT NULL,
    order_id          bigint NOT NULL REFERENCES orders (id),
    checkout_id       uuid REFERENCES gateway_checkouts (id),
    job_id            uuid NOT NULL REFERENCES payment_jobs (id),
    currency          char(3) NOT NULL,
    authorized_paise  bigint NOT NULL DEFAULT 0 CHECK (authorized_paise >= 0),
    captured_paise    bigint NOT NULL DEFAULT 0 CHECK (captured_paise >= 0),
    released_at       timestamptz,
    first_seen_at     timestamptz NOT NULL DEFAULT now(),
    updated_at        timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (method, gateway_ref)
);
COMMENT ON TABLE gateway_payments IS
    'A gateway payment as we last saw it (Razorpay: a payment pay_...; Cashfree: the order, whose SUCCESS '
    'attempt holds the money). The subject of the books: what it captured must be applied to its order '
    '(payment_transactions), refunded, refunding or owed (gateway_refunds).';
COMMENT ON COLUMN gateway_payments.job_id IS 'The latest job that looked at the payment at the gateway.';
COMMENT ON COLUMN gateway_payments.authorized_paise IS
    'Authorised and not captured when last seen (Razorpay authorized): money held on the shopper''s card.';
COMMENT ON COLUMN gateway_payments.captured_paise IS 'Captured when last seen: money the gateway holds for us.';
COMMENT ON COLUMN gateway_payments.released_at IS
    'When we decided never to capture the authorisation (the gateway lets it lapse and returns it: Razorpay '
    'refunds an uncaptured payment by itself).';

-- One row per refund, ours or the merchant's at the gateway's dashboard, and one per attempt of ours: a
-- refund the gateway ends failed is tried again with a fresh idempotency reference, a bounded number of
-- times, then owed.
ALTER TABLE gateway_refunds DROP CONSTRAINT gateway_refunds_job_id_key;
ALTER TABLE gateway_refunds ALTER COLUMN gateway_refund_id DROP NOT NULL;
ALTER TABLE gateway_refunds DROP CONSTRAINT gateway_refunds_state_check;
ALTER TABLE gateway_refunds ADD CONSTRAINT gateway_refunds_state_check
    CHECK (state IN ('requested', 'pending', 'succeeded', 'failed'));
ALTER TABLE gateway_refunds ADD COLUMN origin text NOT NULL DEFAULT 'ours' CHECK (origin IN ('ours', 'gateway'));
ALTER TABLE gateway_refunds ADD COLUMN attempt integer NOT NULL DEFAULT 1 CHECK (attempt >= 1);
ALTER TABLE gateway_refunds ADD COLUMN retry_at timestamptz;
ALTER TABLE gateway_refunds ADD COLUMN owed_at timestamptz;
ALTER TABLE gateway_refunds ADD COLUMN last_error text CHECK (length(last_error) <= 300);
ALTER TABLE gateway_refunds ADD COLUMN operator_retries integer NOT NULL DEFAULT 0;
ALTER TABLE gateway_refunds ADD COLUMN checks integer NOT NULL DEFAULT 0;
ALTER TABLE gateway_refunds ADD CONSTRAINT gateway_refunds_answered_has_gateway_id
    CHECK (state = 'requested' OR gateway_refund_id IS NOT NULL);
ALTER TABLE gateway_refunds ADD CONSTRAINT gateway_refunds_retry_or_owed_only_when_failed
    CHECK ((retry_at IS NULL AND owed_at IS NULL) OR (state = 'failed' AND (retry_at IS NULL OR owed_at IS NULL)));
COMMENT ON COLUMN gateway_refunds.state IS
    'requested (about to leave, or its answer lost: looked up by refund_ref), pending (the gateway took it: '
    'Razorpay pending, Cashfree PENDING / ONHOLD), succeeded, failed (Razorpay failed, Cashfree CANCELLED).';
COMMENT ON COLUMN gateway_refunds.origin IS
    'ours (we asked for it) or gateway (made at the gateway, e.g. by the merchant in its dashboard, and '
    'read from the gateway before we fulfilled).';
COMMENT ON COLUMN gateway_refunds.attempt IS 'Our attempt number for this job''s refund; refund_ref is fresh per attempt.';
COMMENT ON COLUMN gateway_refunds.retry_at IS 'A failed refund of ours due to be sent again then (by the sweeper).';
COMMENT ON COLUMN gateway_refunds.owed_at IS
    'Failed for good: the money is owed to the shopper and in front of an operator (RefundsFailed alarm, '
    'operator page, POST /v1/refunds/{id}/retry).';
COMMENT ON COLUMN gateway_refunds.last_error IS 'Why the gateway refused it, when it did (never a secret).';
COMMENT ON COLUMN gateway_refunds.operator_retries IS 'Times an operator asked to try an owed refund again.';
COMMENT ON COLUMN gateway_refunds.checks IS 'Fetches of a refund not final yet (spaces the next one out).';
COMMENT ON COLUMN gateway_refunds.gateway_refund_id IS
    'The gateway''s id for the refund (Razorpay rfnd_..., Cashfree cf_refund_id); NULL while requested.';

-- A refund the gateway reports is recorded once, however often it is read or reported; our references
-- are ours alone.
CREATE UNIQUE INDEX gateway_refunds_one_per_gateway_refund ON gateway_refunds (method, gateway_refund_id)
    WHERE gateway_refund_id IS NOT NULL;
CREATE UNIQUE INDEX gateway_refunds_one_per_refund_ref ON gateway_refunds (method, refund_ref)
    WHERE origin = 'ours';
DROP INDEX gateway_refunds_gateway_refund;
CREATE INDEX gateway_refunds_payment ON gateway_refunds (method, gateway_ref);
CREATE INDEX gateway_refunds_due ON gateway_refunds (retry_at) WHERE retry_at IS NOT NULL;
CREATE INDEX gateway_refunds_owed ON gateway_refunds (owed_at) WHERE owed_at IS NOT NULL;
DROP INDEX gateway_refunds_pending;
CREATE INDEX gateway_refunds_to_follow ON gateway_refunds (next_check_at) WHERE state IN ('requested', 'pending');

-- Refunds that ended failed before this release were money to return by hand: owed, in front of an operator.
UPDATE gateway_refunds SET owed_at = coalesce(settled_at, now()) WHERE state = 'failed';

-- The books of the payments made before this release: captured money we refunded or applied.
INSERT INTO gateway_payments (method, gateway_ref, order_id, checkout_id, job_id, currency, captured_paise)
SELECT DISTINCT ON (j.method, j.gateway_ref) j.method, j.gateway_ref, j.order_id, j.checkout_id, j.id,
       a.captured_currency, a.captured_amount_paise
  FROM gateway_attempts a JOIN payment_jobs j ON j.id = a.job_id
 WHERE a.captured_amount_paise IS NOT NULL AND a.captured_currency IS NOT NULL
 ORDER BY j.method, j.gateway_ref, a.updated_at DESC
ON CONFLICT DO NOTHING;
INSERT INTO gateway_payments (method, gateway_ref, order_id, checkout_id, job_id, currency, captured_paise)
SELECT DISTINCT ON (r.method, r.gateway_ref) r.method, r.gateway_ref, r.order_id, j.checkout_id, r.job_id,
       r.currency, r.amount_paise
  FROM gateway_refunds r JOIN payment_jobs j ON j.id = r.job_id
 ORDER BY r.method, r.gateway_ref, r.created_at
ON CONFLICT DO NOTHING;

-- A live job whose message the processor saw go to the DLQ (its last delivery failed): what its shopper and
-- the operator read until a redrive's delivery takes it up again (pq_gateway_begin clears it).
ALTER TABLE payment_jobs ADD COLUMN dead_lettered_at timestamptz;
COMMENT ON COLUMN payment_jobs.dead_lettered_at IS
    'Set when the processor sent the job''s message to the DLQ while the job was live; cleared by the next '
    'delivery (a redrive). Terminal jobs keep what they had: their status says it all.';
