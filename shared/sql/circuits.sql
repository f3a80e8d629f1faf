-- The gateways' circuit breakers (table gateway_circuits, migration 0021), shared by every container. They are
-- consulted where a checkout chooses its gateway (pq_checkout_route) and fed where a checkout's gateway call
-- ends (pq_checkout_created, pq_checkout_unclaimed), inside those functions' own round trips: a circuit costs
-- no round trip of its own. A closed circuit with no failures is only read, never written, so a healthy sale
-- does not queue its checkouts on one row.

-- How long until the gateway may be called (wait_ms 0: now), and whether that call would be the trial of a
-- circuit that is not closed: open past its cool-down, or half_open with its trial's claim lapsed (the request
-- that claimed it is gone). Reads only: pq_gateway_circuit_trial claims the trial.
CREATE OR REPLACE FUNCTION pq_gateway_circuit_wait(p_gateway text, p_cooldown_s double precision,
                                                   OUT wait_ms integer, OUT trial boolean)
LANGUAGE plpgsql STABLE SET enable_seqscan = off AS $$
DECLARE
    v_circuit gateway_circuits%ROWTYPE;
    v_at timestamptz;
BEGIN
    SELECT * INTO v_circuit FROM gateway_circuits c WHERE c.gateway = p_gateway;
    trial := FOUND AND v_circuit.state <> 'closed';
    IF NOT trial THEN
        wait_ms := 0;
        RETURN;
    END IF;
    v_at := CASE v_circuit.state WHEN 'open' THEN v_circuit.opened_at + make_interval(secs => p_cooldown_s)
                                 ELSE v_circuit.trial_until END;
    wait_ms := greatest(0, ceil(extract(epoch FROM v_at - now()) * 1000))::integer;
END;
$$;

-- Claims the trial call of a circuit that pq_gateway_circuit_wait found ready for one, until p_until: true when
-- this caller has it. Two containers racing for it: the row lock lets one through, the other re-reads the row
-- (half_open, claimed) and is refused.
CREATE OR REPLACE FUNCTION pq_gateway_circuit_trial(p_gateway text, p_cooldown_s double precision,
                                                    p_until timestamptz)
RETURNS boolean
LANGUAGE plpgsql SET enable_seqscan = off AS $$
BEGIN
    UPDATE gateway_circuits c SET state = 'half_open', trial_until = p_until, updated_at = now()
     WHERE c.gateway = p_gateway
       AND ((c.state = 'open' AND c.opened_at + make_interval(secs => p_cooldown_s) <= now())
            OR (c.state = 'half_open' AND c.trial_until <= now()));
    RETURN FOUND;
END;
$$;

-- Whether the gateway may be called now, for a call that needs no token first: true when its circuit is closed,
-- or when this caller claimed its trial (until p_until).
CREATE OR REPLACE FUNCTION pq_gateway_circuit_admits(p_gateway text, p_cooldown_s double precision,
                                                     p_until timestamptz)
RETURNS boolean
LANGUAGE plpgsql SET enable_seqscan = off AS $$
DECLARE
    v_circuit record;
BEGIN
    SELECT * INTO v_circuit FROM pq_gateway_circuit_wait(p_gateway, p_cooldown_s);
    IF v_circuit.wait_ms > 0 THEN
        RETURN false;
    ELSIF v_circuit.trial THEN
        RETURN pq_gateway_circuit_trial(p_gateway, p_cooldown_s, p_until);
    END IF;
    RETURN true;
END;
$$;

-- A call to the gateway ended. p_failed: with a 5xx or a timeout (a run of p_failures_to_open of them opens the
-- circuit; a failed trial opens it again, its cool-down counted afresh); false: the gateway answered (its
-- answer a success or a refusal of the request as made), which closes the circuit; NULL: nothing to learn (a
-- 429, or no call made). A failure of a call made before the circuit opened leaves the cool-down as it is.
CREATE OR REPLACE FUNCTION pq_gateway_circuit_record(p_gateway text, p_failed boolean, p_failures_to_open integer)
RETURNS void
LANGUAGE plpgsql SET enable_seqscan = off AS $$
BEGIN
    IF p_gateway IS NULL THEN  -- the call's checkout is gone: nothing to say which gateway it was
        RETURN;
    ELSIF p_failed THEN
        INSERT INTO gateway_circuits AS c (gateway, state, failures, opened_at)
        VALUES (p_gateway, CASE WHEN p_failures_to_open <= 1 THEN 'open' ELSE 'closed' END, 1,
                CASE WHEN p_failures_to_open <= 1 THEN now() END)
        ON CONFLICT (gateway) DO UPDATE
           SET failures = c.failures + 1,
               state = CASE WHEN c.state = 'half_open' OR c.failures + 1 >= p_failures_to_open THEN 'open'
                            ELSE c.state END,
               opened_at = CASE WHEN c.state = 'half_open' OR (c.state = 'closed'
                                                                AND c.failures + 1 >= p_failures_to_open)
                                THEN now() ELSE c.opened_at END,
               trial_until = NULL, updated_at = now();
    ELSIF NOT p_failed THEN  -- written only when there is something to reset
        UPDATE gateway_circuits c
           SET state = 'closed', failures = 0, opened_at = NULL, trial_until = NULL, updated_at = now()
         WHERE c.gateway = p_gateway AND (c.state <> 'closed' OR c.failures > 0);
    END IF;
END;
$$;
