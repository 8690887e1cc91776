-- TimescaleDB only: indicators and signals as hypertables; indicators compressed per series.
SELECT create_hypertable('indicators', by_range('time', INTERVAL '7 days'));
SELECT create_hypertable('signals', by_range('time', INTERVAL '30 days'));

ALTER TABLE indicators SET (
    timescaledb.compress,
    timescaledb.compress_segmentby = 'exchange, symbol, timeframe, indicator, output',
    timescaledb.compress_orderby = 'time DESC'
);
