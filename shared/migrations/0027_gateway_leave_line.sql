-- A gateway job's shopper could not leave the line (DELETE /v1/payments/{job_id} answered 409 paid_at_gateway):
-- its money is at the gateway, and only the job's delivery reads it, so nothing could end the job at once
-- without guessing what to return. Now the shopper's word is recorded here, and the job's delivery treats its
-- order as not to be fulfilled (pq_gateway_unfulfillable: reason cancelled): an authorisation is released,
-- captured money refunded, in its turn, by the path every unfulfillable gateway payment takes.
-- New column, nullable, no default: nothing rewritten.
ALTER TABLE payment_jobs ADD COLUMN cancel_requested_at timestamptz;
COMMENT ON COLUMN payment_jobs.cancel_requested_at IS
    'A gateway job its shopper asked to leave the line while it waited: its delivery returns the payment '
    '(released or refunded) instead of fulfilling the order, and the job fails with reason cancelled.';
