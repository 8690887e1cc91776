-- TimescaleDB: the rollups read the stored contract value (0013) instead of recovering it. A continuous
-- aggregate's query cannot be altered, so the five aggregates of 0007 are dropped (with the views of 0010
-- over them) and created again: the same definitions but for rollup_5m's contract value, with the storage
-- settings of 0009 and the refresh policies of 0012 (`python -m sql.policies` re-applies configured ones);
-- 0015 creates the views again.
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

CREATE MATERIALIZED VIEW rollup_5m
WITH (timescaledb.continuous, timescaledb.materialized_only = true, timescaledb.create_group_indexes = false) AS
SELECT exchange,
       symbol,
       time_bucket(INTERVAL '5 minutes', time, "offset" => INTERVAL '1 minute') AS bucket,
       time_bucket(INTERVAL '5 minutes', time, "offset" => INTERVAL '1 minute') + INTERVAL '4 minutes' AS time,
       coalesce(first(open, time) FILTER (WHERE trade_count > 0), last(close, time)) AS open,
       coalesce(max(high) FILTER (WHERE trade_count > 0), last(close, time)) AS high,
       coalesce(min(low) FILTER (WHERE trade_count > 0), last(close, time)) AS low,
       coalesce(last(close, time) FILTER (WHERE trade_count > 0), last(close, time)) AS close,
       sum(volume) AS volume,
       sum(quote_volume) AS quote_volume,
       sum(trade_count)::integer AS trade_count,
       tcp_vwap(sum(quote_volume), sum(volume) * max(contract_value) FILTER (WHERE trade_count > 0)) AS vwap,
       first(first_trade_id, time) FILTER (WHERE trade_count > 0) AS first_trade_id,
       last(last_trade_id, time) FILTER (WHERE trade_count > 0) AS last_trade_id,
       max(contract_value) FILTER (WHERE trade_count > 0) AS contract_value,
       max(time) AS last_minute,
       max(time) = time_bucket(INTERVAL '5 minutes', time, "offset" => INTERVAL '1 minute') + INTERVAL '4 minutes'
           AS sealed,
       max(inserted_at) AS inserted_at
FROM candles_1m
GROUP BY exchange, symbol, 3
WITH NO DATA;
CREATE INDEX rollup_5m_series_time ON rollup_5m (exchange, symbol, time DESC);
SELECT add_continuous_aggregate_policy('rollup_5m', start_offset => INTERVAL '3 days',
    end_offset => INTERVAL '2 seconds', schedule_interval => INTERVAL '15 seconds');

CREATE MATERIALIZED VIEW rollup_15m
WITH (timescaledb.continuous, timescaledb.materialized_only = true, timescaledb.create_group_indexes = false) AS
SELECT exchange,
       symbol,
       time_bucket(INTERVAL '15 minutes', bucket, "offset" => INTERVAL '1 minute') AS bucket,
       time_bucket(INTERVAL '15 minutes', bucket, "offset" => INTERVAL '1 minute') + INTERVAL '14 minutes' AS time,
       coalesce(first(open, bucket) FILTER (WHERE trade_count > 0), last(close, bucket)) AS open,
       coalesce(max(high) FILTER (WHERE trade_count > 0), last(close, bucket)) AS high,
       coalesce(min(low) FILTER (WHERE trade_count > 0), last(close, bucket)) AS low,
       coalesce(last(close, bucket) FILTER (WHERE trade_count > 0), last(close, bucket)) AS close,
       sum(volume) AS volume,
       sum(quote_volume) AS quote_volume,
       sum(trade_count)::integer AS trade_count,
       tcp_vwap(sum(quote_volume), sum(volume) * max(contract_value)) AS vwap,
       first(first_trade_id, bucket) FILTER (WHERE trade_count > 0) AS first_trade_id,
       last(last_trade_id, bucket) FILTER (WHERE trade_count > 0) AS last_trade_id,
       max(contract_value) AS contract_value,
       max(last_minute) AS last_minute,
       bool_and(sealed)
           AND max(last_minute) = time_bucket(INTERVAL '15 minutes', bucket, "offset" => INTERVAL '1 minute')
                                  + INTERVAL '14 minutes' AS sealed,
       max(inserted_at) AS inserted_at
FROM rollup_5m
GROUP BY exchange, symbol, 3
WITH NO DATA;
CREATE INDEX rollup_15m_series_time ON rollup_15m (exchange, symbol, time DESC);
SELECT add_continuous_aggregate_policy('rollup_15m', start_offset => INTERVAL '3 days',
    end_offset => INTERVAL '2 seconds', schedule_interval => INTERVAL '15 seconds');

CREATE MATERIALIZED VIEW rollup_1h
WITH (timescaledb.continuous, timescaledb.materialized_only = true, timescaledb.create_group_indexes = false) AS
SELECT exchange,
       symbol,
       time_bucket(INTERVAL '1 hour', bucket, "offset" => INTERVAL '1 minute') AS bucket,
       time_bucket(INTERVAL '1 hour', bucket, "offset" => INTERVAL '1 minute') + INTERVAL '59 minutes' AS time,
       coalesce(first(open, bucket) FILTER (WHERE trade_count > 0), last(close, bucket)) AS open,
       coalesce(max(high) FILTER (WHERE trade_count > 0), last(close, bucket)) AS high,
       coalesce(min(low) FILTER (WHERE trade_count > 0), last(close, bucket)) AS low,
       coalesce(last(close, bucket) FILTER (WHERE trade_count > 0), last(close, bucket)) AS close,
       sum(volume) AS volume,
       sum(quote_volume) AS quote_volume,
       sum(trade_count)::integer AS trade_count,
       tcp_vwap(sum(quote_volume), sum(volume) * max(contract_value)) AS vwap,
       first(first_trade_id, bucket) FILTER (WHERE trade_count > 0) AS first_trade_id,
       last(last_trade_id, bucket) FILTER (WHERE trade_count > 0) AS last_trade_id,
       max(contract_value) AS contract_value,
       max(last_minute) AS last_minute,
       bool_and(sealed)
           AND max(last_minute) = time_bucket(INTERVAL '1 hour', bucket, "offset" => INTERVAL '1 minute')
                                  + INTERVAL '59 minutes' AS sealed,
       max(inserted_at) AS inserted_at
FROM rollup_15m
GROUP BY exchange, symbol, 3
WITH NO DATA;
CREATE INDEX rollup_1h_series_time ON rollup_1h (exchange, symbol, time DESC);
SELECT add_continuous_aggregate_policy('rollup_1h', start_offset => INTERVAL '3 days',
    end_offset => INTERVAL '2 seconds', schedule_interval => INTERVAL '15 seconds');

CREATE MATERIALIZED VIEW rollup_4h
WITH (timescaledb.continuous, timescaledb.materialized_only = true, timescaledb.create_group_indexes = false) AS
SELECT exchange,
       symbol,
       time_bucket(INTERVAL '4 hours', bucket, "offset" => INTERVAL '1 minute') AS bucket,
       time_bucket(INTERVAL '4 hours', bucket, "offset" => INTERVAL '1 minute') + INTERVAL '239 minutes' AS time,
       coalesce(first(open, bucket) FILTER (WHERE trade_count > 0), last(close, bucket)) AS open,
       coalesce(max(high) FILTER (WHERE trade_count > 0), last(close, bucket)) AS high,
       coalesce(min(low) FILTER (WHERE trade_count > 0), last(close, bucket)) AS low,
       coalesce(last(close, bucket) FILTER (WHERE trade_count > 0), last(close, bucket)) AS close,
       sum(volume) AS volume,
       sum(quote_volume) AS quote_volume,
       sum(trade_count)::integer AS trade_count,
       tcp_vwap(sum(quote_volume), sum(volume) * max(contract_value)) AS vwap,
       first(first_trade_id, bucket) FILTER (WHERE trade_count > 0) AS first_trade_id,
       last(last_trade_id, bucket) FILTER (WHERE trade_count > 0) AS last_trade_id,
       max(contract_value) AS contract_value,
       max(last_minute) AS last_minute,
       bool_and(sealed)
           AND max(last_minute) = time_bucket(INTERVAL '4 hours', bucket, "offset" => INTERVAL '1 minute')
                                  + INTERVAL '239 minutes' AS sealed,
       max(inserted_at) AS inserted_at
FROM rollup_1h
GROUP BY exchange, symbol, 3
WITH NO DATA;
CREATE INDEX rollup_4h_series_time ON rollup_4h (exchange, symbol, time DESC);
SELECT add_continuous_aggregate_policy('rollup_4h', start_offset => INTERVAL '3 days',
    end_offset => INTERVAL '2 seconds', schedule_interval => INTERVAL '15 seconds');

CREATE MATERIALIZED VIEW rollup_1d
WITH (timescaledb.continuous, timescaledb.materialized_only = true, timescaledb.create_group_indexes = false) AS
SELECT exchange,
       symbol,
       time_bucket(INTERVAL '24 hours', bucket, "offset" => INTERVAL '1 minute') AS bucket,
       time_bucket(INTERVAL '24 hours', bucket, "offset" => INTERVAL '1 minute') + INTERVAL '1439 minutes' AS time,
       coalesce(first(open, bucket) FILTER (WHERE trade_count > 0), last(close, bucket)) AS open,
       coalesce(max(high) FILTER (WHERE trade_count > 0), last(close, bucket)) AS high,
       coalesce(min(low) FILTER (WHERE trade_count > 0), last(close, bucket)) AS low,
       coalesce(last(close, bucket) FILTER (WHERE trade_count > 0), last(close, bucket)) AS close,
       sum(volume) AS volume,
       sum(quote_volume) AS quote_volume,
       sum(trade_count)::integer AS trade_count,
       tcp_vwap(sum(quote_volume), sum(volume) * max(contract_value)) AS vwap,
       first(first_trade_id, bucket) FILTER (WHERE trade_count > 0) AS first_trade_id,
       last(last_trade_id, bucket) FILTER (WHERE trade_count > 0) AS last_trade_id,
       max(contract_value) AS contract_value,
       max(last_minute) AS last_minute,
       bool_and(sealed)
           AND max(last_minute) = time_bucket(INTERVAL '24 hours', bucket, "offset" => INTERVAL '1 minute')
                                  + INTERVAL '1439 minutes' AS sealed,
       max(inserted_at) AS inserted_at
FROM rollup_4h
GROUP BY exchange, symbol, 3
WITH NO DATA;
CREATE INDEX rollup_1d_series_time ON rollup_1d (exchange, symbol, time DESC);
SELECT add_continuous_aggregate_policy('rollup_1d', start_offset => INTERVAL '3 days',
    end_offset => INTERVAL '2 seconds', schedule_interval => INTERVAL '15 seconds');

-- Storage (0009): compressed per series, newest first, after 30 days.
ALTER MATERIALIZED VIEW rollup_5m SET (
    timescaledb.compress = true,
    timescaledb.compress_segmentby = 'exchange, symbol',
    timescaledb.compress_orderby = 'bucket DESC'
);
SELECT add_compression_policy('rollup_5m', compress_after => INTERVAL '30 days');
ALTER MATERIALIZED VIEW rollup_15m SET (
    timescaledb.compress = true,
    timescaledb.compress_segmentby = 'exchange, symbol',
    timescaledb.compress_orderby = 'bucket DESC'
);
SELECT add_compression_policy('rollup_15m', compress_after => INTERVAL '30 days');
ALTER MATERIALIZED VIEW rollup_1h SET (
    timescaledb.compress = true,
    timescaledb.compress_segmentby = 'exchange, symbol',
    timescaledb.compress_orderby = 'bucket DESC'
);
SELECT add_compression_policy('rollup_1h', compress_after => INTERVAL '30 days');
ALTER MATERIALIZED VIEW rollup_4h SET (
    timescaledb.compress = true,
    timescaledb.compress_segmentby = 'exchange, symbol',
    timescaledb.compress_orderby = 'bucket DESC'
);
SELECT add_compression_policy('rollup_4h', compress_after => INTERVAL '30 days');
ALTER MATERIALIZED VIEW rollup_1d SET (
    timescaledb.compress = true,
    timescaledb.compress_segmentby = 'exchange, symbol',
    timescaledb.compress_orderby = 'bucket DESC'
);
SELECT add_compression_policy('rollup_1d', compress_after => INTERVAL '30 days');

-- migrate: after commit
CALL refresh_continuous_aggregate('rollup_5m', NULL, NULL);
CALL refresh_continuous_aggregate('rollup_15m', NULL, NULL);
CALL refresh_continuous_aggregate('rollup_1h', NULL, NULL);
CALL refresh_continuous_aggregate('rollup_4h', NULL, NULL);
CALL refresh_continuous_aggregate('rollup_1d', NULL, NULL);
