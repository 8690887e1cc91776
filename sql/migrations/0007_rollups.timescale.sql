-- TimescaleDB: the higher timeframes as hierarchical continuous aggregates (5m over candles_1m, 15m over
-- 5m, 1h over 15m, 4h over 1h, 1d over 4h). The public, right-labelled relations are the views
-- candles_5m ... candles_1d of 0008; these rollup_* relations are their storage. Why this shape:
-- docs/sql.md, "Rollups".
--
-- Labels. candles_1m.time is a close, so the minutes of the interval [open, close) have the times
-- open + 1 minute ... close. time_bucket is left-closed and labelled by the start, so every level buckets
-- with "offset" => 1 minute: the bucket [open + 1 minute, close + 1 minute) holds exactly those minutes,
-- and `bucket` is the close of the interval's first minute. `time` (the close) = bucket + width - 1 minute
-- is stored next to it and indexed, so reads filter and sort on the public timestamp directly.
--
-- Rule 6. Flat minutes (trade_count = 0) give no prices: open/high/low/close and the trade ids are taken
-- FILTER (WHERE trade_count > 0); only when every part is flat do they fall back to the last part's close
-- (a flat part carries the previous close). Sums for volume, quote volume and trade count; vwap as the
-- stream computes it (tcp_vwap over volume x the contract value recovered from the 1m candles).
--
-- Sealing (rule 3). A row is sealed, hence public, only when it holds the 1m candle closing its interval
-- (max(last_minute) = time) and every part it was built from was sealed too (bool_and(sealed)). The
-- stream writes a series' 1m candles in close order, so the closing minute's presence proves the
-- interval complete whatever the refresh timing. Real-time aggregation is off (materialized_only): it would show
-- intervals whose minutes have not all closed.
--
-- Refresh policies: the last 3 days, ending 1 minute ago, every minute. The window end is aligned on the
-- plain bucket grid, which is the grid of the closes, so an interval is materialised no earlier than
-- 1 minute after it closed (past the default 2 s grace); were it earlier, it would be unsealed, hence
-- hidden. `python -m sql.policies` re-applies them from configs (storage section).

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
       tcp_vwap(sum(quote_volume), sum(volume) * max(tcp_contract_value(quote_volume, volume, vwap))) AS vwap,
       first(first_trade_id, time) FILTER (WHERE trade_count > 0) AS first_trade_id,
       last(last_trade_id, time) FILTER (WHERE trade_count > 0) AS last_trade_id,
       max(tcp_contract_value(quote_volume, volume, vwap)) AS contract_value,
       max(time) AS last_minute,
       max(time) = time_bucket(INTERVAL '5 minutes', time, "offset" => INTERVAL '1 minute') + INTERVAL '4 minutes'
           AS sealed,
       max(inserted_at) AS inserted_at
FROM candles_1m
GROUP BY exchange, symbol, 3
WITH NO DATA;
CREATE INDEX rollup_5m_series_time ON rollup_5m (exchange, symbol, time DESC);
SELECT add_continuous_aggregate_policy('rollup_5m', start_offset => INTERVAL '3 days',
    end_offset => INTERVAL '1 minute', schedule_interval => INTERVAL '1 minute');

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
    end_offset => INTERVAL '1 minute', schedule_interval => INTERVAL '1 minute');

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
    end_offset => INTERVAL '1 minute', schedule_interval => INTERVAL '1 minute');

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
    end_offset => INTERVAL '1 minute', schedule_interval => INTERVAL '1 minute');

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
    end_offset => INTERVAL '1 minute', schedule_interval => INTERVAL '1 minute');

