-- Gateway webhooks deduplicated on what the gateway signs, and every verified one kept (issue items
-- 4 and 6). Until now gateway_webhook_events was unique on Razorpay's X-Razorpay-Event-Id or
-- Cashfree's x-idempotency-key: headers no signature covers, so a genuinely signed old body sent
-- again with a fresh header was a new event (a new row, and a parked job woken to fetch the gateway
-- each time). And payload jsonb NOT NULL could not hold a signed body that JSON allows but jsonb does
-- not (a "\u0000" escape, a lone surrogate) or that is not JSON at all (NaN): recording failed with a
-- 500 on every retry of the gateway, and the webhook was never recorded.
-- pq_webhook_record (shared/sql/checkouts.sql) writes these columns.

ALTER TABLE gateway_webhook_events ADD COLUMN body_sha256 bytea CHECK (length(body_sha256) = 32);
COMMENT ON COLUMN gateway_webhook_events.body_sha256 IS
    'SHA-256 of the raw body, the deduplication key: both gateways sign the body (Cashfree its '
    'timestamp with it), so a replay carries these very bytes whatever its headers. NULL for the '
    'events recorded before migration 0011, whose raw bytes were not kept.';
ALTER TABLE gateway_webhook_events ADD COLUMN body bytea;
COMMENT ON COLUMN gateway_webhook_events.body IS
    'The verified body, byte for byte as signed: the record when payload cannot hold it. NULL for '
    'the events recorded before migration 0011.';
ALTER TABLE gateway_webhook_events ADD COLUMN signed_at timestamptz;
COMMENT ON COLUMN gateway_webhook_events.signed_at IS
    'Cashfree''s x-webhook-timestamp, which its signature covers; NULL for Razorpay, which signs none. '
    'A webhook signed too long before it came is recorded but does no work (outcome stale).';

ALTER TABLE gateway_webhook_events ALTER COLUMN payload DROP NOT NULL;
COMMENT ON COLUMN gateway_webhook_events.payload IS
    'The verified body as jsonb, for queries; NULL when jsonb cannot hold it (a \u0000 escape, a lone '
    'surrogate, not JSON): body keeps it.';

-- The header ids stay, for matching our record with the gateway's dashboard, but no longer decide
-- what is a duplicate.
ALTER TABLE gateway_webhook_events DROP CONSTRAINT gateway_webhook_events_gateway_event_id_key;
COMMENT ON COLUMN gateway_webhook_events.event_id IS
    'The gateway''s unsigned event id header (X-Razorpay-Event-Id, x-idempotency-key), else '
    'sha256:<body_sha256 in hex>. Informational: not unique, not the deduplication key.';
COMMENT ON TABLE gateway_webhook_events IS
    'Every verified gateway webhook, once: UNIQUE (gateway, body_sha256) drops the gateways'' retries '
    'and anyone''s replays of a signed body, whatever their headers.';

-- Like 0009's indexes, built in the deploy's migration transaction: it holds the table's SHARE lock
-- (webhooks wait) until the migration commits, for a time in proportion to the table. The rows
-- recorded before 0011 are all NULL here and never conflict.
CREATE UNIQUE INDEX gateway_webhook_events_body ON gateway_webhook_events (gateway, body_sha256);
