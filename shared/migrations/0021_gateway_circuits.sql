-- Routing (issue 19): a checkout may ask for "any gateway" ("method": "auto", or a preference list), and is
-- created at the first one that is up and has a token. Whether a gateway is up is a circuit breaker per
-- gateway, held here so that every container (every Lambda of the API) sees the same one, as they share the
-- token buckets of gateway_rate_limits. The functions: shared/sql/circuits.sql, shared/sql/checkouts.sql
-- (pq_checkout_route).
--
-- An order may still hold one live checkout per gateway (0006's index): a shopper who closes one gateway's
-- window and picks another is not made to wait out the first checkout, and a second payment to reach the
-- order is refunded in full (shared/services/gateway.py).

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
