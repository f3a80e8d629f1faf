-- The shop's backend (issue 20): a merchant client (a client-credentials token with the
-- payments/merchant scope) creates orders for shoppers, adjusts their wallets, starts wallet payments
-- on their behalf and re-delivers our events. The functions live in shared/sql/merchant.sql.

CREATE TABLE merchant_requests (
    client_id              text NOT NULL CHECK (length(client_id) BETWEEN 1 AND 255),
    idempotency_key        text NOT NULL CHECK (length(idempotency_key) BETWEEN 1 AND 255),
    request_hash           text NOT NULL,
    kind                   text NOT NULL CHECK (kind IN ('order', 'wallet_adjustment')),
    user_id                text NOT NULL REFERENCES users (id),
    order_id               bigint REFERENCES orders (id),
    wallet_transaction_id  bigint REFERENCES wallet_transactions (id),
    created_at             timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (client_id, idempotency_key),
    CHECK ((kind = 'order') = (order_id IS NOT NULL)),
    CHECK ((kind = 'wallet_adjustment') = (wallet_transaction_id IS NOT NULL))
);
COMMENT ON TABLE merchant_requests IS
    'Every order and wallet adjustment a merchant client made, by its Idempotency-Key: the same key and '
    'body answer what the first request made (no second order, no second credit), another body is refused. '
    'Also the record of who made it.';
COMMENT ON COLUMN merchant_requests.client_id IS 'The merchant client: the subject of its client-credentials token.';
COMMENT ON COLUMN merchant_requests.idempotency_key IS 'The client''s Idempotency-Key (its own namespace).';
COMMENT ON COLUMN merchant_requests.request_hash IS 'SHA-256 of the canonical request body.';
COMMENT ON COLUMN merchant_requests.kind IS 'order (POST /v1/merchant/orders) or wallet_adjustment.';
COMMENT ON COLUMN merchant_requests.user_id IS 'The shopper the request was made for.';
COMMENT ON COLUMN merchant_requests.order_id IS 'The order it created (kind order).';
COMMENT ON COLUMN merchant_requests.wallet_transaction_id IS 'The ledger entry it wrote (kind wallet_adjustment).';
CREATE INDEX merchant_requests_user ON merchant_requests (user_id);

ALTER TABLE payment_jobs ADD COLUMN requested_by text;
COMMENT ON COLUMN payment_jobs.requested_by IS
    'The merchant client that started this payment on the shopper''s behalf (POST /v1/merchant/payments); '
    'NULL when the shopper asked for it with their own token.';

-- Re-delivery marks an event unpublished; the sweeper publishes it again (its id unchanged, so a
-- receiver that has it already drops the copy).
ALTER TABLE outbox_events ADD COLUMN redeliveries integer NOT NULL DEFAULT 0;
COMMENT ON COLUMN outbox_events.redeliveries IS 'Times a merchant asked for this event again.';
ALTER TABLE outbox_events ADD COLUMN redelivery_requested_at timestamptz;
COMMENT ON COLUMN outbox_events.redelivery_requested_at IS 'When a merchant last asked for this event again.';
-- GET /v1/merchant/events lists events since a time. Built in the deploy's migration transaction (as
-- 0009's indexes: CONCURRENTLY cannot run in one), holding the table's SHARE lock until it commits,
-- which blocks the outbox writes of payments meanwhile: deploy it when payments are quiet.
CREATE INDEX outbox_events_created_at ON outbox_events (created_at, id);
