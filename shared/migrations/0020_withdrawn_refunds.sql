-- A first refund of ours is sent without reading the payment's refunds first (issue 18): Cashfree's order and
-- payment say nothing of refunds made in its dashboard, and a read before every refund cost each refund of a
-- sale a Get Refund token (30 a minute published), which held back the refunds of unfulfillable payments. If
-- a refund made at the gateway came first, ours asks for more than is left and the gateway refuses it (a 4xx,
-- nothing created at the gateway). The job then reads the refunds, books them, and withdraws its refused
-- request: failed, never owed nor retried, because no money moved for it and the rest of the payment goes back
-- under a fresh reference (the next attempt). Every other refusal is owed, as before.
ALTER TABLE gateway_refunds ADD COLUMN withdrawn_at timestamptz;
ALTER TABLE gateway_refunds ADD CONSTRAINT gateway_refunds_withdrawn_failed
    CHECK (withdrawn_at IS NULL OR (state = 'failed' AND origin = 'ours' AND owed_at IS NULL AND retry_at IS NULL));
COMMENT ON COLUMN gateway_refunds.withdrawn_at IS
    'Set for a refund of ours the gateway refused because refunds made at the gateway had left less than it '
    'asked for: nothing was created at the gateway, and a later attempt of ours returns what is left.';

-- A job's refunds are looked up by job (pq_refund_request, pq_gateway_begin, pq_complete_gateway_payment,
-- pq_refunds_to_retry's next attempt): without an index each lookup read every refund ever booked, a cost
-- that grows with a sale's refunds (the request functions run with enable_seqscan off, which only moved the
-- full read to another index).
CREATE INDEX gateway_refunds_job ON gateway_refunds (job_id);
