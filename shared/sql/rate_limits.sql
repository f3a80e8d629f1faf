-- The gateway rate limiter shared by every processor instance (table gateway_rate_limits).

-- Takes p_n tokens from the bucket (capacity p_burst, refilled at p_rate per second).
-- granted = false takes nothing and says how long until p_n tokens are there, unless that is within
-- p_reserve_ms: then the tokens are taken from the bucket's future (reserved; the balance goes below
-- zero) and wait_ms says when their slot comes. Each reservation is a grant the bucket would have made
-- at its slot, and later takers queue behind it, so the grants at their slots keep the bucket's promise
-- (at most p_burst + p_rate * t in any t seconds); golang.org/x/time/rate's Limiter.ReserveN does the
-- same, its maxFutureReserve our p_reserve_ms. The clock is read after the row lock, so refills are
-- computed from monotonic timestamps whatever the contention.
DROP FUNCTION IF EXISTS pq_take_tokens(text, double precision, double precision, integer);
DROP FUNCTION IF EXISTS pq_take_tokens(text, double precision, double precision, integer, integer);
CREATE FUNCTION pq_take_tokens(p_gateway text, p_rate double precision, p_burst double precision, p_n integer,
                               p_reserve_ms integer DEFAULT 0,
                               OUT granted boolean, OUT wait_ms integer, OUT reserved boolean)
LANGUAGE plpgsql AS $$
DECLARE
    v_tokens double precision;
    v_at     timestamptz;
    v_now    timestamptz;
BEGIN
    SELECT l.tokens, l.updated_at INTO v_tokens, v_at FROM gateway_rate_limits l
     WHERE l.gateway = p_gateway FOR UPDATE;
    IF NOT FOUND THEN
        INSERT INTO gateway_rate_limits (gateway, tokens, updated_at)
        VALUES (p_gateway, p_burst, clock_timestamp()) ON CONFLICT (gateway) DO NOTHING;
        SELECT l.tokens, l.updated_at INTO v_tokens, v_at FROM gateway_rate_limits l
         WHERE l.gateway = p_gateway FOR UPDATE;
    END IF;
    v_now := clock_timestamp();
    v_tokens := least(p_burst, v_tokens + p_rate * greatest(0, extract(epoch FROM v_now - v_at)));
    granted := v_tokens >= p_n;
    wait_ms := CASE WHEN granted THEN 0
                    WHEN p_rate <= 0 THEN 2147483647  -- a bucket that never refills
                    ELSE least(2147483647, ceil((p_n - v_tokens) / p_rate * 1000))::integer END;
    -- A bucket smaller than p_n never holds p_n tokens: nothing to reserve there.
    reserved := NOT granted AND p_rate > 0 AND p_burst >= p_n AND wait_ms <= p_reserve_ms;
    UPDATE gateway_rate_limits
       SET tokens = v_tokens - CASE WHEN granted OR reserved THEN p_n ELSE 0 END, updated_at = v_now
     WHERE gateway = p_gateway;
END;
$$;
