-- Routing (issue 19): a checkout may ask for "any gateway" ("method": "auto", or a preference list), and is
-- created at the first one that is up and has a token. Whether a gateway is up is a circuit breaker per
-- gateway, held here so that every container (every Lambda of the API) sees the same one, as they share the
-- token buckets of gateway_rate_limits. The functions: shared/sql/circuits.sql, shared/sql/checkouts.sql
-- (pq_checkout_route).
--
-- And one live checkout per order, whatever its gateway: a shopper routed to a second gateway while a checkout
-- at the first one is live would hold two payable gateway orders for one order, and a Razorpay order cannot be
-- cancelled (its states are created, attempted and paid: razorpay.com/docs/payments/orders). The index below
-- replaces 0006's one live checkout per (order, method).
--
-- Like 0006 and 0012, this runs in the deploy's migration transaction; building the index reads the live
-- checkouts once: deploy it when the gateway path is quiet.

CREATE TABLE gateway_circuits (
    gateway      text PRIMARY KEY,
    state        text NOT NULL DEFAULT 'closed' CHECK (state IN ('closed', 'open', 'half_open')),
    failures     integer NOT NULL DEFAULT 0 CHECK (failures >= 0),
    opened_at    timestamptz,
    trial_until  timestamptz,
    updated_at   timestamptz NOT NULL DEFAULT now(),
    CHECK ((state = 'closed') = (opened_at IS NULL)),
    CHECK ((state = 'half_open') = (trial_until IS NOT NULL))
);
COMMENT ON TABLE gateway_circuits IS
    'A circuit breaker per gateway, shared by every container: while it is open, checkouts are not sent to '
    'the gateway (they go to the next one the request allows). A gateway with no row is closed. Rows are '
    'written only when a call fails or a circuit that is not closed and clean changes: a healthy sale reads '
    'them and never writes.';
COMMENT ON COLUMN gateway_circuits.gateway IS 'The gateway package''s name (shared/gateways/registry.py).';
COMMENT ON COLUMN gateway_circuits.state IS
    'closed (calls go), open (none go until the cool-down after opened_at has passed), half_open (one trial '
    'call is under way, claimed until trial_until; its outcome closes or opens the circuit again).';
COMMENT ON COLUMN gateway_circuits.failures IS
    'Calls in a row that failed with a 5xx or a timeout; a call the gateway answered resets it to 0.';
COMMENT ON COLUMN gateway_circuits.opened_at IS 'When the circuit last opened: the cool-down counts from here.';
COMMENT ON COLUMN gateway_circuits.trial_until IS
    'half_open: until when the request that claimed the trial call may still be making it; after that, '
    'another request may claim a trial of its own.';
COMMENT ON COLUMN gateway_circuits.updated_at IS 'Last change.';

-- Orders that hold live checkouts at two gateways (the previous release let a shopper open one at each): the
-- newest stays live; an older one the page was given becomes expired (a payment made to it anyway is still
-- settled by its webhook: paid once, or refunded), one never given to a page (creating, no gateway order bound)
-- and no longer claimed is deleted. One still claimed by a request in flight fails this migration: the deploy's
-- next run applies it.
WITH ranked AS (
    SELECT c.id, c.status, c.create_claimed_until,
           row_number() OVER (PARTITION BY c.order_id ORDER BY c.created_at DESC, c.id) AS rank
      FROM gateway_checkouts c
     WHERE c.status IN ('creating', 'created')
), expired AS (
    UPDATE gateway_checkouts c SET status = 'expired', updated_at = now()
      FROM ranked r
     WHERE c.id = r.id AND r.rank > 1 AND r.status = 'created'
)
DELETE FROM gateway_checkouts c
 USING ranked r
 WHERE c.id = r.id AND r.rank > 1 AND r.status = 'creating'
   AND (r.create_claimed_until IS NULL OR r.create_claimed_until < now());

CREATE UNIQUE INDEX gateway_checkouts_one_live_per_order
    ON gateway_checkouts (order_id) WHERE status IN ('creating', 'created');
DROP INDEX gateway_checkouts_one_live_per_order_method;
