-- TimescaleDB: default compression (columnstore) and retention policies, equal to the defaults of the
-- `storage` settings section (configs/settings.py StorageSettings). `python -m sql.policies` re-applies
-- them from the configuration; on plain PostgreSQL the same retention runs as DELETEs
-- (`python -m sql.policies --run`). docs/sql.md, "Policies".

-- The rollups compress per series, newest first (candles_1m and trades got their settings in 0002,
-- indicators in 0005).
ALTER MATERIALIZED VIEW rollup_5m SET (
    timescaledb.compress = true,
    timescaledb.compress_segmentby = 'exchange, symbol',
    timescaledb.compress_orderby = 'bucket DESC'
);
ALTER MATERIALIZED VIEW rollup_15m SET (
    timescaledb.compress = true,
    timescaledb.compress_segmentby = 'exchange, symbol',
    timescaledb.compress_orderby = 'bucket DESC'
);
ALTER MATERIALIZED VIEW rollup_1h SET (
    timescaledb.compress = true,
    timescaledb.compress_segmentby = 'exchange, symbol',
    timescaledb.compress_orderby = 'bucket DESC'
);
ALTER MATERIALIZED VIEW rollup_4h SET (
    timescaledb.compress = true,
    timescaledb.compress_segmentby = 'exchange, symbol',
    timescaledb.compress_orderby = 'bucket DESC'
);
ALTER MATERIALIZED VIEW rollup_1d SET (
    timescaledb.compress = true,
    timescaledb.compress_segmentby = 'exchange, symbol',
    timescaledb.compress_orderby = 'bucket DESC'
);

-- Compression: trades after 7 days, 1m candles and indicators after 14, rollups after 30 (beyond their
-- 3-day refresh window, so a refresh never has to rewrite compressed rows).
SELECT add_compression_policy('trades', compress_after => INTERVAL '7 days');
SELECT add_compression_policy('candles_1m', compress_after => INTERVAL '14 days');
SELECT add_compression_policy('indicators', compress_after => INTERVAL '14 days');
SELECT add_compression_policy('rollup_5m', compress_after => INTERVAL '30 days');
SELECT add_compression_policy('rollup_15m', compress_after => INTERVAL '30 days');
SELECT add_compression_policy('rollup_1h', compress_after => INTERVAL '30 days');
SELECT add_compression_policy('rollup_4h', compress_after => INTERVAL '30 days');
SELECT add_compression_policy('rollup_1d', compress_after => INTERVAL '30 days');

-- Retention: raw trades, late trades and rejects 90 days; candles (every timeframe), indicators and
-- signals 3 years (1095 days).
SELECT add_retention_policy('trades', drop_after => INTERVAL '90 days');
SELECT add_retention_policy('late_trades', drop_after => INTERVAL '90 days');
SELECT add_retention_policy('rejects', drop_after => INTERVAL '90 days');
SELECT add_retention_policy('candles_1m', drop_after => INTERVAL '1095 days');
SELECT add_retention_policy('indicators', drop_after => INTERVAL '1095 days');
SELECT add_retention_policy('signals', drop_after => INTERVAL '1095 days');
SELECT add_retention_policy('rollup_5m', drop_after => INTERVAL '1095 days');
SELECT add_retention_policy('rollup_15m', drop_after => INTERVAL '1095 days');
SELECT add_retention_policy('rollup_1h', drop_after => INTERVAL '1095 days');
SELECT add_retention_policy('rollup_4h', drop_after => INTERVAL '1095 days');
SELECT add_retention_policy('rollup_1d', drop_after => INTERVAL '1095 days');
