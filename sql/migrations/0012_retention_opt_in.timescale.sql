-- TimescaleDB: retention becomes opt-in, and the higher timeframes follow the 1m candles closer.
--
-- 0009 registered retention policies by default (trades 90 days, candles 3 years), which deleted
-- replayed or imported history (a 2019 tape) at the next start. Every `*_retention` setting now
-- defaults to "never": the default policies are removed here, and `python -m sql.policies` (run by
-- `python3 tcp.py up`) registers a retention job only for a table whose setting is a duration.
SELECT remove_retention_policy('trades', if_exists => true);
SELECT remove_retention_policy('late_trades', if_exists => true);
SELECT remove_retention_policy('rejects', if_exists => true);
SELECT remove_retention_policy('candles_1m', if_exists => true);
SELECT remove_retention_policy('indicators', if_exists => true);
SELECT remove_retention_policy('signals', if_exists => true);
SELECT remove_retention_policy('rollup_5m', if_exists => true);
SELECT remove_retention_policy('rollup_15m', if_exists => true);
SELECT remove_retention_policy('rollup_1h', if_exists => true);
SELECT remove_retention_policy('rollup_4h', if_exists => true);
SELECT remove_retention_policy('rollup_1d', if_exists => true);

-- Refresh every 15 seconds up to 2 seconds before now (the default candle grace, the smallest lag
-- `sql.policies` accepts), instead of every minute up to one minute before now: a higher-timeframe
-- candle is materialised within about a minute of its close (docs/sql.md, "Delay").
SELECT remove_continuous_aggregate_policy('rollup_5m', if_exists => true);
SELECT remove_continuous_aggregate_policy('rollup_15m', if_exists => true);
SELECT remove_continuous_aggregate_policy('rollup_1h', if_exists => true);
SELECT remove_continuous_aggregate_policy('rollup_4h', if_exists => true);
SELECT remove_continuous_aggregate_policy('rollup_1d', if_exists => true);
SELECT add_continuous_aggregate_policy('rollup_5m', start_offset => INTERVAL '3 days',
    end_offset => INTERVAL '2 seconds', schedule_interval => INTERVAL '15 seconds');
SELECT add_continuous_aggregate_policy('rollup_15m', start_offset => INTERVAL '3 days',
    end_offset => INTERVAL '2 seconds', schedule_interval => INTERVAL '15 seconds');
SELECT add_continuous_aggregate_policy('rollup_1h', start_offset => INTERVAL '3 days',
    end_offset => INTERVAL '2 seconds', schedule_interval => INTERVAL '15 seconds');
SELECT add_continuous_aggregate_policy('rollup_4h', start_offset => INTERVAL '3 days',
    end_offset => INTERVAL '2 seconds', schedule_interval => INTERVAL '15 seconds');
SELECT add_continuous_aggregate_policy('rollup_1d', start_offset => INTERVAL '3 days',
    end_offset => INTERVAL '2 seconds', schedule_interval => INTERVAL '15 seconds');
