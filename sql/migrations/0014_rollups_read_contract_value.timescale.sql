-- TimescaleDB: the rollups read the stored contract value (0013) instead of recovering it. A continuous
-- aggregate's query cannot be altered, so the five aggregates of 0007 are dropped (with the views of 0010
-- over them) and created again: the same definitions but for rollup_5m's contract value, written once for
-- the five levels, with the storage settings of 0009 and the refresh policies of 0012 (`python -m
-- sql.policies` re-applies configured ones); 0015 creates the views again.
-- The aggregates are created empty, and the migrator materialises them over the whole history once this
-- transaction has committed (the section after the marker below: a refresh cannot run in a transaction).
-- Same rows as before: the backfill of 0013 stored exactly what the recovery gave.

DROP VIEW candles;
DROP VIEW candles_1d;
DROP VIEW candles_4h;
DROP VIEW candles_1h;
DROP VIEW candles_15m;
DROP VIEW candles_5m;
DROP MATERIALIZED VIEW rollup_1d;
DROP MATERIALIZED VIEW rollup_4h;
DROP MATERIALIZED VIEW rollup_1h;
DROP MATERIALIZED VIEW rollup_15m;
DROP MATERIALIZED VIEW rollup_5m;

-- Each level from the one below (5m from candles_1m): rule 6, labels and sealing as in 0007 (read its
-- header). `part_key` orders the parts; a level's parts are sealed when all are (a 1m candle always is).
-- The contract value is taken over traded parts only (NULL when all are flat).
DO $do$
DECLARE
    level record;
BEGIN
    FOR level IN
        SELECT target, parts, part_key, part_last, parts_sealed, width, width - INTERVAL '1 minute' AS last
        FROM (VALUES
            (1, 'rollup_5m', 'candles_1m', 'time', 'time', 'true', INTERVAL '5 minutes'),
            (2, 'rollup_15m', 'rollup_5m', 'bucket', 'last_minute', 'bool_and(sealed)', INTERVAL '15 minutes'),
            (3, 'rollup_1h', 'rollup_15m', 'bucket', 'last_minute', 'bool_and(sealed)', INTERVAL '1 hour'),
            (4, 'rollup_4h', 'rollup_1h', 'bucket', 'last_minute', 'bool_and(sealed)', INTERVAL '4 hours'),
            (5, 'rollup_1d', 'rollup_4h', 'bucket', 'last_minute', 'bool_and(sealed)', INTERVAL '24 hours')
        ) AS levels (n, target, parts, part_key, part_last, parts_sealed, width)
        ORDER BY n
    LOOP
        EXECUTE format($sql$
            CREATE MATERIALIZED VIEW %1$I
            WITH (timescaledb.continuous, timescaledb.materialized_only = true,
                  timescaledb.create_group_indexes = false) AS
            SELECT exchange,
                   symbol,
                   time_bucket(%3$L::interval, %4$I, "offset" => INTERVAL '1 minute') AS bucket,
                   time_bucket(%3$L::interval, %4$I, "offset" => INTERVAL '1 minute') + %5$L::interval AS time,
                   coalesce(first(open, %4$I) FILTER (WHERE trade_count > 0), last(close, %4$I)) AS open,
                   coalesce(max(high) FILTER (WHERE trade_count > 0), last(close, %4$I)) AS high,
                   coalesce(min(low) FILTER (WHERE trade_count > 0), last(close, %4$I)) AS low,
                   coalesce(last(close, %4$I) FILTER (WHERE trade_count > 0), last(close, %4$I)) AS close,
                   sum(volume) AS volume,
                   sum(quote_volume) AS quote_volume,
                   sum(trade_count)::integer AS trade_count,
                   tcp_vwap(sum(quote_volume), sum(volume) * max(contract_value) FILTER (WHERE trade_count > 0))
                       AS vwap,
                   first(first_trade_id, %4$I) FILTER (WHERE trade_count > 0) AS first_trade_id,
                   last(last_trade_id, %4$I) FILTER (WHERE trade_count > 0) AS last_trade_id,
                   max(contract_value) FILTER (WHERE trade_count > 0) AS contract_value,
                   max(%6$I) AS last_minute,
                   %7$s AND max(%6$I) = time_bucket(%3$L::interval, %4$I, "offset" => INTERVAL '1 minute')
                                        + %5$L::interval AS sealed,
                   max(inserted_at) AS inserted_at
            FROM %2$I
            GROUP BY exchange, symbol, 3
            WITH NO DATA$sql$,
            level.target, level.parts, level.width, level.part_key, level.last, level.part_last,
            level.parts_sealed);
        EXECUTE format('CREATE INDEX %I ON %I (exchange, symbol, time DESC)',
                       level.target || '_series_time', level.target);
        PERFORM add_continuous_aggregate_policy(level.target::regclass, start_offset => INTERVAL '3 days',
            end_offset => INTERVAL '2 seconds', schedule_interval => INTERVAL '15 seconds');
        -- storage (0009): compressed per series, newest first, after 30 days
        EXECUTE format($sql$ALTER MATERIALIZED VIEW %I SET (timescaledb.compress = true,
            timescaledb.compress_segmentby = 'exchange, symbol', timescaledb.compress_orderby = 'bucket DESC')$sql$,
            level.target);
        PERFORM add_compression_policy(level.target::regclass, compress_after => INTERVAL '30 days');
    END LOOP;
END
$do$;

-- migrate: after commit
CALL refresh_continuous_aggregate('rollup_5m', NULL, NULL);
CALL refresh_continuous_aggregate('rollup_15m', NULL, NULL);
CALL refresh_continuous_aggregate('rollup_1h', NULL, NULL);
CALL refresh_continuous_aggregate('rollup_4h', NULL, NULL);
CALL refresh_continuous_aggregate('rollup_1d', NULL, NULL);
