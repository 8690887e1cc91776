-- TimescaleDB only: a run's trades and equity as hypertables. A year of 1m candles is 525,600 equity
-- rows per run, so equity chunks span 30 days of data time; trades are far fewer.

SELECT create_hypertable('backtest_trades', by_range('entry_time', INTERVAL '365 days'));
SELECT create_hypertable('backtest_equity', by_range('time', INTERVAL '30 days'));
