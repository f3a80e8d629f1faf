-- A Razorpay order takes a payment whenever one is made to it: it is created, attempted or paid, and nothing
-- ends it before (razorpay.com/docs/payments/orders). Our checkout's expiry is ours alone. A checkout found
-- unpaid past its expiry was confirmed and never fetched again, so a payment made to it later whose webhooks
-- were all lost (Razorpay disables a webhook that fails for 24 hours) was applied, refunded or owed nowhere.
--
-- Now such a checkout stays in reconciliation's sight until watch_until (its expiry plus PQ_CHECKOUT_LATE_WATCH_S,
-- set when the gateway's order outlives it: PaymentGateway.order_expires), looked at once a day. Watched ones
-- are claimed in a lane of their own (pq_checkouts_to_reconcile), by this index, so however many a sale leaves
-- they never hold up an expired checkout still waiting for the gateway's first word (0023's lane, by the other
-- index here: 0023's own index is left for the previous release's claim). New column, nullable, no default:
-- nothing rewritten; the indexes hold expired checkouts still fetched, a small part of the table.
ALTER TABLE gateway_checkouts ADD COLUMN watch_until timestamptz;
COMMENT ON COLUMN gateway_checkouts.watch_until IS
    'Set when the gateway found the expired checkout unpaid but its order can still be paid: reconciliation '
    'fetches it once a day until then (next_check_at), so that a late payment is found.';
CREATE INDEX gateway_checkouts_watched ON gateway_checkouts (next_check_at)
    WHERE status = 'expired' AND watch_until IS NOT NULL AND next_check_at IS NOT NULL;
CREATE INDEX gateway_checkouts_expired_unconfirmed ON gateway_checkouts (next_check_at)
    WHERE status = 'expired' AND watch_until IS NULL AND next_check_at IS NOT NULL;
