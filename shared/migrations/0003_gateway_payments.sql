-- Gateway-funded payments (Razorpay, Cashfree): the attempt ledger, refunds and the shared rate
-- limiter. The functions the processor calls around each gateway request live in
-- shared/sql/gateway_payment.sql and shared/sql/rate_limits.sql (this file defined them once; a
-- database that applied that text is accepted as is: SUPERSEDED in shared/migrate.py).

ALTER TABLE payment_jobs ADD COLUMN gateway_ref text
    CHECK (gateway_ref IS NULL OR length(gateway_ref) BETWEEN 1 AND 64);
ALTER TABLE payment_jobs ADD CONSTRAINT payment_jobs_gateway_ref_by_method
    CHECK ((method = 'wallet') = (gateway_ref IS NULL));
COMMENT ON COLUMN payment_jobs.gateway_ref IS
    'What the shopper paid at the gateway: a Razorpay payment id or a Cashfree order id.';

-- One gateway payment backs one job, ever: a second job for the same payment is refused at enqueue,
-- and this index makes the race between two requests impossible too. Failed jobs count as well: a
-- payment captured and then refunded (Cashfree still lists it as SUCCESS) must never pay again.
CREATE UNIQUE INDEX payment_jobs_one_job_per_gateway_payment
    ON payment_jobs (method, gateway_ref)
    WHERE gateway_ref IS NOT NULL;
CREATE UNIQUE INDEX payment_transactions_one_per_gateway_payment
    ON payment_transactions (method, gateway_ref) WHERE gateway_ref IS NOT NULL;

CREATE TABLE gateway_attempts (
    job_id                 uuid PRIMARY KEY REFERENCES payment_jobs (id),
    gateway                text NOT NULL CHECK (gateway IN ('razorpay', 'cashfree')),
    gateway_ref            text NOT NULL,
    deliveries             integer NOT NULL DEFAULT 0,
    throttled              integer NOT NULL DEFAULT 0,
    unavailable            integer NOT NULL DEFAULT 0,
    capture_sent_at        timestamptz,
    captured_amount_paise  bigint,
    captured_currency      char(3),
    refund_ref             text NOT NULL,
    refund_sent_at         timestamptz,
    refund_reason          text,
    last_error             text,
    created_at             timestamptz NOT NULL DEFAULT now(),
    updated_at             timestamptz NOT NULL DEFAULT now()
);
COMMENT ON TABLE gateway_attempts IS
    'What we did at the gateway for a job, written before each request leaves. capture_sent_at set '
    'means a capture may have happened: the next delivery settles it by fetching the payment, never '
    'by capturing again. refund_ref is the idempotency reference sent with a refund (Cashfree '
    'refund_id, Razorpay receipt), fixed per job so a retried refund finds the first one.';
COMMENT ON COLUMN gateway_attempts.throttled IS '429 answers received (each one a retry later).';
COMMENT ON COLUMN gateway_attempts.unavailable IS '5xx answers, timeouts and lost connections received.';

CREATE TABLE gateway_refunds (
    id                 bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    job_id             uuid NOT NULL UNIQUE REFERENCES payment_jobs (id),
    order_id           bigint NOT NULL REFERENCES orders (id),
    method             text NOT NULL,
    gateway_ref        text NOT NULL,
    refund_ref         text NOT NULL,
    gateway_refund_id  text NOT NULL,
    amount_paise       bigint NOT NULL CHECK (amount_paise > 0),
    currency           char(3) NOT NULL,
    reason             text NOT NULL,
    created_at         timestamptz NOT NULL DEFAULT now()
);
COMMENT ON TABLE gateway_refunds IS
    'Money a gateway captured for an order we could not fulfil, and sent back. UNIQUE (job_id): a '
    'job refunds at most once. The order stays as it was (pending), as after any failed payment.';

CREATE TABLE gateway_rate_limits (
    gateway     text PRIMARY KEY,
    tokens      double precision NOT NULL,
    updated_at  timestamptz NOT NULL
);
COMMENT ON TABLE gateway_rate_limits IS
    'One token bucket per gateway, shared by every processor instance: a request leaves only with '
    'a token taken here. The row lock serialises takers; the refill is computed from updated_at.';
