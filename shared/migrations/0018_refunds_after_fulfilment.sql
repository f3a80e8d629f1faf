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
