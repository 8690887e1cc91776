-- TimescaleDB only: hypertables and compression settings for the core tables.
-- (Compression and retention *policies*, i.e. when chunks are compressed or dropped, are applied
-- separately from configs/.)

SELECT create_hypertable('trades', by_range('time', INTERVAL '1 day'));
SELECT create_hypertable('candles_1m', by_range('time', INTERVAL '7 days'));
SELECT create_hypertable('late_trades', by_range('time', INTERVAL '7 days'));
SELECT create_hypertable('rejects', by_range('received_at', INTERVAL '7 days'));

ALTER TABLE trades SET (
    timescaledb.compress,
    timescaledb.compress_segmentby = 'exchange, symbol',
    timescaledb.compress_orderby = 'time DESC, trade_id DESC'
);
ALTER TABLE candles_1m SET (
    timescaledb.compress,
    timescaledb.compress_segmentby = 'exchange, symbol',
    timescaledb.compress_orderby = 'time DESC'
);
