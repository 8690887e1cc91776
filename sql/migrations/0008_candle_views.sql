-- The public higher-timeframe candles, the same views on both engines over the rollup_* storage of 0007
-- (continuous aggregates on TimescaleDB, trigger-kept tables on plain PostgreSQL). Same columns as
-- candles_1m; `time` is the close (TIME.md rule 2); only sealed rows are shown (rule 3: the 1m candle
-- that closes the interval is in, and every part is sealed), so a partly closed interval never appears.
-- `inserted_at` is when the newest 1m candle of the interval was written.

-- 5 minutes candles: the interval [time - 5 minutes, time)
CREATE VIEW candles_5m AS
SELECT exchange, symbol, time, open, high, low, close, volume, quote_volume, trade_count, vwap,
       first_trade_id, last_trade_id, inserted_at
FROM rollup_5m
WHERE sealed;

-- 15 minutes candles: the interval [time - 15 minutes, time)
CREATE VIEW candles_15m AS
SELECT exchange, symbol, time, open, high, low, close, volume, quote_volume, trade_count, vwap,
       first_trade_id, last_trade_id, inserted_at
FROM rollup_15m
WHERE sealed;

-- 1 hour candles: the interval [time - 1 hour, time)
CREATE VIEW candles_1h AS
SELECT exchange, symbol, time, open, high, low, close, volume, quote_volume, trade_count, vwap,
       first_trade_id, last_trade_id, inserted_at
FROM rollup_1h
WHERE sealed;

-- 4 hours candles: the interval [time - 4 hours, time)
CREATE VIEW candles_4h AS
SELECT exchange, symbol, time, open, high, low, close, volume, quote_volume, trade_count, vwap,
       first_trade_id, last_trade_id, inserted_at
FROM rollup_4h
WHERE sealed;

-- 1 day candles: the interval [time - 1 day, time)
CREATE VIEW candles_1d AS
SELECT exchange, symbol, time, open, high, low, close, volume, quote_volume, trade_count, vwap,
       first_trade_id, last_trade_id, inserted_at
FROM rollup_1d
WHERE sealed;

-- Every timeframe in one relation, told apart by `timeframe` ('1m', '5m', '15m', '1h', '4h', '1d').
-- A filter on timeframe skips the other branches at execution time.
CREATE VIEW candles AS
SELECT '1m'::text AS timeframe, exchange, symbol, time, open, high, low, close, volume, quote_volume,
       trade_count, vwap, first_trade_id, last_trade_id, inserted_at
FROM candles_1m
UNION ALL
SELECT '5m'::text AS timeframe, exchange, symbol, time, open, high, low, close, volume, quote_volume,
       trade_count, vwap, first_trade_id, last_trade_id, inserted_at
FROM candles_5m
UNION ALL
SELECT '15m'::text AS timeframe, exchange, symbol, time, open, high, low, close, volume, quote_volume,
       trade_count, vwap, first_trade_id, last_trade_id, inserted_at
FROM candles_15m
UNION ALL
SELECT '1h'::text AS timeframe, exchange, symbol, time, open, high, low, close, volume, quote_volume,
       trade_count, vwap, first_trade_id, last_trade_id, inserted_at
FROM candles_1h
UNION ALL
SELECT '4h'::text AS timeframe, exchange, symbol, time, open, high, low, close, volume, quote_volume,
       trade_count, vwap, first_trade_id, last_trade_id, inserted_at
FROM candles_4h
UNION ALL
SELECT '1d'::text AS timeframe, exchange, symbol, time, open, high, low, close, volume, quote_volume,
       trade_count, vwap, first_trade_id, last_trade_id, inserted_at
FROM candles_1d;
