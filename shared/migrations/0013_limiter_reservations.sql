-- A gateway job that finds no token takes one from its bucket's future (pq_take_tokens, p_reserve_ms)
-- and hands its message back until that slot, once, instead of asking again and again: each hand-back
-- is an SQS receive, and maxReceiveCount receives send a message to the DLQ. What the job holds, and
-- how many of its deliveries ended waiting, is kept with its attempt (shared/sql/gateway_payment.sql:
-- pq_gateway_token, pq_gateway_limited).

ALTER TABLE gateway_attempts ADD COLUMN reservations jsonb NOT NULL DEFAULT '{}';
COMMENT ON COLUMN gateway_attempts.reservations IS
    'Tokens the job holds from its buckets'' future: {bucket: the time its slot comes}. The delivery '
    'that asks for that bucket at or after the slot uses it instead of taking another token; one that '
    'comes more than a burst''s worth of refill late forfeits it (the bucket counted it at its slot).';
ALTER TABLE gateway_attempts ADD COLUMN limited integer NOT NULL DEFAULT 0;
COMMENT ON COLUMN gateway_attempts.limited IS
    'Deliveries handed back because our own limiter had no token soon enough (each one a receive).';
ALTER TABLE gateway_attempts ADD COLUMN limited_streak integer NOT NULL DEFAULT 0;
ALTER TABLE gateway_attempts ADD COLUMN limited_delivery integer;
COMMENT ON COLUMN gateway_attempts.limited_streak IS
    'How many deliveries in a row, up to limited_delivery (the last one that was handed back for a '
    'token), ended waiting for a token. When every receive of a message was such a wait, its last '
    'receive sends the job again as a new message instead of letting it go to the DLQ.';
