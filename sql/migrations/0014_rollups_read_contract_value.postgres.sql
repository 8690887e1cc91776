-- Plain PostgreSQL: the rollups read the stored contract value (0013) instead of recovering it, and the
-- five levels are one statement run per level (0007 spelled the same rule 6 out five times). Same rows
-- as before: the backfill of 0013 stored exactly what the recovery gave. 0015 shows the contract value in
-- the higher-timeframe views.

-- One series, every level in order: recompute each interval holding a 1m close in [p_from, p_to]
-- (5m from candles_1m, 15m from the fresh 5m rows, and so on up to 1d). Rule 6 and the sealing are those
-- of 0007: read its header. The contract value is taken over traded parts only (NULL when all are flat).
CREATE OR REPLACE FUNCTION tcp_rollup_series(p_exchange text, p_symbol text, p_from timestamptz,
                                             p_to timestamptz)
RETURNS void LANGUAGE plpgsql AS $fn$
DECLARE
    origin CONSTANT timestamptz := '1970-01-01 00:01:00+00';  -- buckets start 1 minute after a boundary
    lo     timestamptz := p_from;
    hi     timestamptz := p_to;
    level  record;
BEGIN
    FOR level IN
        SELECT target, parts, width, width - INTERVAL '1 minute' AS last
        FROM (VALUES
            (1, 'rollup_5m', 'SELECT *, time AS k, time AS lm, true AS part_sealed FROM candles_1m',
             INTERVAL '5 minutes'),
            (2, 'rollup_15m', 'SELECT *, bucket AS k, last_minute AS lm, sealed AS part_sealed FROM rollup_5m',
             INTERVAL '15 minutes'),
            (3, 'rollup_1h', 'SELECT *, bucket AS k, last_minute AS lm, sealed AS part_sealed FROM rollup_15m',
             INTERVAL '1 hour'),
            (4, 'rollup_4h', 'SELECT *, bucket AS k, last_minute AS lm, sealed AS part_sealed FROM rollup_1h',
             INTERVAL '4 hours'),
            (5, 'rollup_1d', 'SELECT *, bucket AS k, last_minute AS lm, sealed AS part_sealed FROM rollup_4h',
             INTERVAL '24 hours')
        ) AS levels (n, target, parts, width)
        ORDER BY n
    LOOP
        lo := date_bin(level.width, lo, origin);
        hi := date_bin(level.width, hi, origin);
        EXECUTE format('DELETE FROM %I WHERE exchange = $1 AND symbol = $2 AND time BETWEEN $3 AND $4',
                       level.target)
        USING p_exchange, p_symbol, lo + level.last, hi + level.last;
        EXECUTE format($sql$
            INSERT INTO %I (exchange, symbol, bucket, time, open, high, low, close, volume, quote_volume,
                            trade_count, vwap, first_trade_id, last_trade_id, contract_value, last_minute,
                            sealed, inserted_at)
            SELECT exchange, symbol, b, b + $5,
                   coalesce((array_agg(open ORDER BY k) FILTER (WHERE trade_count > 0))[1],
                            (array_agg(close ORDER BY k DESC))[1]),
                   coalesce(max(high) FILTER (WHERE trade_count > 0), (array_agg(close ORDER BY k DESC))[1]),
                   coalesce(min(low) FILTER (WHERE trade_count > 0), (array_agg(close ORDER BY k DESC))[1]),
                   coalesce((array_agg(close ORDER BY k DESC) FILTER (WHERE trade_count > 0))[1],
                            (array_agg(close ORDER BY k DESC))[1]),
                   sum(volume), sum(quote_volume), sum(trade_count)::integer,
                   tcp_vwap(sum(quote_volume), sum(volume) * max(contract_value) FILTER (WHERE trade_count > 0)),
                   (array_agg(first_trade_id ORDER BY k) FILTER (WHERE trade_count > 0))[1],
                   (array_agg(last_trade_id ORDER BY k DESC) FILTER (WHERE trade_count > 0))[1],
                   max(contract_value) FILTER (WHERE trade_count > 0), max(lm),
                   bool_and(part_sealed) AND max(lm) = b + $5, max(inserted_at)
            FROM (SELECT p.*, date_bin($6, p.k, $7) AS b
                  FROM (%s) p
                  WHERE p.exchange = $1 AND p.symbol = $2 AND p.k >= $3 AND p.k < $4) parts
            GROUP BY exchange, symbol, b
            $sql$, level.target, level.parts)
        USING p_exchange, p_symbol, lo, hi + level.width, level.last, level.width, origin;
    END LOOP;
END
$fn$;
