-- Plain PostgreSQL: the rollups read the stored contract value (0013) instead of recovering it. Same rows
-- as before: the backfill of 0013 stored exactly what the recovery gave. 0015 shows the contract value in
-- the higher-timeframe views.
--
-- tcp_rollup_series is written again from one statement pair per level, composed here for the five
-- levels (0007 spelled the same rule 6 out five times): the function it creates is plain static SQL, as
-- fast as 0007's (its plans are cached; a statement built at every call would be planned at every call).
-- For one series, every level in order, it recomputes each interval holding a 1m close in [p_from, p_to]
-- (5m from candles_1m, 15m from the fresh 5m rows, and so on up to 1d). Rule 6 and the sealing are those
-- of 0007: read its header. The contract value is taken over traded parts only (NULL when all are flat).
DO $do$
DECLARE
    level_sql CONSTANT text := $level$
    -- %1$s from %2$s
    lo := date_bin(%3$L::interval, lo, origin);
    hi := date_bin(%3$L::interval, hi, origin);
    DELETE FROM %1$I
    WHERE exchange = p_exchange AND symbol = p_symbol
      AND time BETWEEN lo + %4$L::interval AND hi + %4$L::interval;
    INSERT INTO %1$I (exchange, symbol, bucket, time, open, high, low, close, volume, quote_volume,
                      trade_count, vwap, first_trade_id, last_trade_id, contract_value, last_minute,
                      sealed, inserted_at)
    SELECT exchange, symbol, b, b + %4$L::interval,
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
           bool_and(part_sealed) AND max(lm) = b + %4$L::interval, max(inserted_at)
    FROM (SELECT p.*, date_bin(%3$L::interval, p.k, origin) AS b
          FROM (%5$s) p
          WHERE p.exchange = p_exchange AND p.symbol = p_symbol
            AND p.k >= lo AND p.k < hi + %3$L::interval) parts
    GROUP BY exchange, symbol, b;
$level$;
    levels text := '';
    level  record;
BEGIN
    FOR level IN
        SELECT target, source, parts, width, width - INTERVAL '1 minute' AS last
        FROM (VALUES
            (1, 'rollup_5m', 'candles_1m',
             'SELECT *, time AS k, time AS lm, true AS part_sealed FROM candles_1m', INTERVAL '5 minutes'),
            (2, 'rollup_15m', 'rollup_5m',
             'SELECT *, bucket AS k, last_minute AS lm, sealed AS part_sealed FROM rollup_5m', INTERVAL '15 minutes'),
            (3, 'rollup_1h', 'rollup_15m',
             'SELECT *, bucket AS k, last_minute AS lm, sealed AS part_sealed FROM rollup_15m', INTERVAL '1 hour'),
            (4, 'rollup_4h', 'rollup_1h',
             'SELECT *, bucket AS k, last_minute AS lm, sealed AS part_sealed FROM rollup_1h', INTERVAL '4 hours'),
            (5, 'rollup_1d', 'rollup_4h',
             'SELECT *, bucket AS k, last_minute AS lm, sealed AS part_sealed FROM rollup_4h', INTERVAL '24 hours')
        ) AS each_level (n, target, source, parts, width)
        ORDER BY n
    LOOP
        levels := levels || format(level_sql, level.target, level.source, level.width, level.last, level.parts);
    END LOOP;
    EXECUTE format($create$
CREATE OR REPLACE FUNCTION tcp_rollup_series(p_exchange text, p_symbol text, p_from timestamptz,
                                             p_to timestamptz)
RETURNS void LANGUAGE plpgsql AS $fn$
DECLARE
    origin CONSTANT timestamptz := '1970-01-01 00:01:00+00';  -- buckets start 1 minute after a boundary
    lo     timestamptz := p_from;
    hi     timestamptz := p_to;
BEGIN
%s
END
$fn$
$create$, levels);
END
$do$;
