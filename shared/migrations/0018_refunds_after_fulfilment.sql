-- Refunds made at the gateway after we applied the payment to its order (issue 18): a merchant who gives
-- money back from the gateway's dashboard for an order we fulfilled. Both gateways report such refunds by
-- webhook (Razorpay refund.created / refund.processed / refund.failed, Cashfree REFUND_STATUS_WEBHOOK), and
-- the books record them as origin gateway. The order stays paid: only the merchant knows why it gave the
-- money back, so the refund is put in front of an operator (/v1/queue/status refunds.after_fulfilment, the
-- operator page) and never taken over by a refund of ours if it fails.
ALTER TABLE gateway_refunds ADD COLUMN after_applied_at timestamptz;
ALTER TABLE gateway_refunds ADD CONSTRAINT gateway_refunds_after_applied_only_at_gateway
    CHECK (after_applied_at IS NULL OR origin = 'gateway');
COMMENT ON COLUMN gateway_refunds.after_applied_at IS
    'Set for a refund made at the gateway that we learned of after its payment was applied to the order: '
    'the books count it out of applied_paise, the operator sees it, and a failure of it is not taken over.';
CREATE INDEX gateway_refunds_after_applied ON gateway_refunds (after_applied_at) WHERE after_applied_at IS NOT NULL;

-- A refund the gateway reports for a payment no job of ours holds yet (its refund webhook came before the
-- payment's own webhook or the shopper's submit made the job): kept, so that the job, once made, does not
-- fulfil a payment whose money was given back (pq_complete_gateway_payment reads it), and so that the
-- report is not lost to the webhook's deduplication. A merchant's payments from other channels land here
-- too; nothing follows them.
CREATE TABLE gateway_refund_reports (
    method            text NOT NULL,
    gateway_refund_id text NOT NULL,
    gateway_ref       text NOT NULL,
    refund_ref        text,
    amount_paise      bigint CHECK (amount_paise > 0),
    currency          char(3),
    state             text NOT NULL CHECK (state IN ('requested', 'pending', 'succeeded', 'failed')),
    gateway_status    text,
    reported_at       timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (method, gateway_refund_id)
);
CREATE INDEX gateway_refund_reports_payment ON gateway_refund_reports (method, gateway_ref);
COMMENT ON TABLE gateway_refund_reports IS
    'Refunds the gateways reported (webhooks) for payments no job of ours held when they came; the '
    'fulfilment of a later job for the payment refuses while one is not failed.';
