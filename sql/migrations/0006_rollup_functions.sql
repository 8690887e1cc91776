-- Functions the higher-timeframe rollups use on both engines (docs/sql.md, "Rollups").

-- VWAP exactly as the stream computes it (market.candles.vwap_of): quote / base rounded to 28
-- significant digits, half-even. NULL when base is 0 (a flat candle). Arguments are never negative
-- (CHECKs on candles_1m). Exact: the quotient is taken as an integer division of scaled operands and the
-- remainder decides the rounding, so no digit depends on numeric's default division precision.
CREATE FUNCTION tcp_vwap(quote numeric, base numeric) RETURNS numeric
LANGUAGE plpgsql IMMUTABLE STRICT PARALLEL SAFE AS $$
DECLARE
    digits  integer;
    scaled  numeric;
    n       numeric;
    twice_r numeric;
BEGIN
    IF base = 0 THEN
        RETURN NULL;
    END IF;
    IF quote = 0 THEN
        RETURN 0;
    END IF;
    digits := 27 - floor(log(quote / base))::integer;   -- first guess of the scale giving 28 digits
    LOOP
        scaled := quote * ('1e' || digits)::numeric;
        n := div(scaled, base);                         -- exact truncated quotient
        EXIT WHEN n >= 1e27 AND n < 1e28;
        digits := digits + CASE WHEN n >= 1e28 THEN -1 ELSE 1 END;
    END LOOP;
    twice_r := 2 * (scaled - n * base);
    IF twice_r > base OR (twice_r = base AND mod(n, 2) = 1) THEN
        n := n + 1;
    END IF;
    RETURN trim_scale(n * ('1e' || -digits)::numeric);
END
$$;

-- The contract value a 1m candle was built with: the stream's vwap is quote / (volume x contract value)
-- (derivatives quoted in contracts, OKX ctVal; 1 for spot). Recovered from the candle itself, to 12
-- significant digits, so a rollup's vwap divides by the same base volume as the stream's. NULL when flat.
CREATE FUNCTION tcp_contract_value(quote_volume numeric, volume numeric, vwap numeric) RETURNS numeric
LANGUAGE sql IMMUTABLE STRICT PARALLEL SAFE AS $$
    SELECT CASE WHEN volume > 0 AND vwap > 0 THEN
        trim_scale(round(quote_volume / (vwap * volume),
                         11 - floor(log(quote_volume / (vwap * volume)))::integer))
    END
$$;
