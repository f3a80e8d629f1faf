-- The gateway rate limiter shared by every processor instance (table gateway_rate_limits).

-- Takes p_n tokens from the bucket (capacity p_burst, refilled at p_rate per second).
-- granted = false takes nothing and says how long until p_n tokens are there. The clock is read
-- after the row lock, so refills are computed from monotonic timestamps whatever the contention.
DROP FUNCTION IF EXISTS pq_take_tokens(text, double precision, double precision, integer);
CREATE FUNCTION pq_take_tokens(p_gateway text, p_rate double precision, p_burst double precision, p_n integer,
                               OUT granted boolean, OUT wait_ms integer)
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
    wait_ms := CASE WHEN granted THEN 0 ELSE ceil((p_n - v_tokens) / p_rate * 1000)::integer END;
    UPDATE gateway_rate_limits
       SET tokens = v_tokens - CASE WHEN granted THEN p_n ELSE 0 END, updated_at = v_now
     WHERE gateway = p_gateway;
END;
$$;
