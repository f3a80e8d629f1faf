-- A checkout marked expired without the gateway's word stays in reconciliation's sight (a review found the
-- hole). A shopper's next checkout request marks a checkout expired as soon as its expiry has passed
-- (pq_checkout_for_order), and a job's failure may; neither fetches the gateway order. A Cashfree order paid
-- just before its expiry, whose webhook was lost or came stale, was then never fetched again (reconciliation
-- took only 'created' checkouts): the captured money was applied, refunded or owed nowhere.
--
-- Now an expired checkout is reconciled, as a created one is, until the sweeper has fetched its gateway order
-- and found it unpaid past its expiry and grace (pq_checkout_reconciled then clears next_check_at), or a job
-- holds its payment. Checkouts that expired before this migration keep their next_check_at: each is looked
-- at once more, which finds any payment the hole stranded. Expired checkouts are claimed apart from created
-- ones, a quarter of a pass at most (pq_checkouts_to_reconcile): that backlog never holds up a checkout paid
-- now, and spends at most that share of the gateway's read budget.
ALTER TABLE gateway_checkouts ALTER COLUMN next_check_at DROP NOT NULL;
COMMENT ON COLUMN gateway_checkouts.next_check_at IS
    'When the sweeper''s reconciliation next fetches the gateway order if no verdict arrived by then (created '
    'or expired checkouts); NULL once an expired one was confirmed unpaid at the gateway.';
CREATE INDEX gateway_checkouts_expired_to_confirm ON gateway_checkouts (next_check_at)
    WHERE status = 'expired' AND next_check_at IS NOT NULL;
