-- The public higher-timeframe views of 0010 with the contract value of the interval's traded minutes
-- added (last, as in candles_1m; NULL when every minute was flat), so every timeframe keeps the columns
-- of candles_1m. On TimescaleDB 0014 dropped them with the aggregates under them: here they are created
-- again; on plain PostgreSQL they are replaced.

CREATE OR REPLACE VIEW candles_5m AS
SELECT r.exchange, r.symbol, r.time, r.open, r.high, r.low, r.close, r.volume, r.quote_volume, r.trade_count,
       r.vwap, r.first_trade_id, r.last_trade_id, r.inserted_at,
       NOT EXISTS (SELECT 1 FROM candles_1m m
                   WHERE m.exchange = r.exchange AND m.symbol = r.symbol AND NOT m.complete
                     AND m.time > r.time - INTERVAL '5 minutes' AND m.time <= r.time) AS complete,
       r.contract_value
FROM rollup_5m r
WHERE r.sealed;

CREATE OR REPLACE VIEW candles_15m AS
SELECT r.exchange, r.symbol, r.time, r.open, r.high, r.low, r.close, r.volume, r.quote_volume, r.trade_count,
       r.vwap, r.first_trade_id, r.last_trade_id, r.inserted_at,
       NOT EXISTS (SELECT 1 FROM candles_1m m
                   WHERE m.exchange = r.exchange AND m.symbol = r.symbol AND NOT m.complete
                     AND m.time > r.time - INTERVAL '15 minutes' AND m.time <= r.time) AS complete,
       r.contract_value
FROM rollup_15m r
WHERE r.sealed;

CREATE OR REPLACE VIEW candles_1h AS
SELECT r.exchange, r.symbol, r.time, r.open, r.high, r.low, r.close, r.volume, r.quote_volume, r.trade_count,
       r.vwap, r.first_trade_id, r.last_trade_id, r.inserted_at,
       NOT EXISTS (SELECT 1 FROM candles_1m m
                   WHERE m.exchange = r.exchange AND m.symbol = r.symbol AND NOT m.complete
                     AND m.time > r.time - INTERVAL '1 hour' AND m.time <= r.time) AS complete,
       r.contract_value
FROM rollup_1h r
WHERE r.sealed;

CREATE OR REPLACE VIEW candles_4h AS
SELECT r.exchange, r.symbol, r.time, r.open, r.high, r.low, r.close, r.volume, r.quote_volume, r.trade_count,
       r.vwap, r.first_trade_id, r.last_trade_id, r.inserted_at,
       NOT EXISTS (SELECT 1 FROM candles_1m m
                   WHERE m.exchange = r.exchange AND m.symbol = r.symbol AND NOT m.complete
                     AND m.time > r.time - INTERVAL '4 hours' AND m.time <= r.time) AS complete,
       r.contract_value
FROM rollup_4h r
WHERE r.sealed;

CREATE OR REPLACE VIEW candles_1d AS
SELECT r.exchange, r.symbol, r.time, r.open, r.high, r.low, r.close, r.volume, r.quote_volume, r.trade_count,
       r.vwap, r.first_trade_id, r.last_trade_id, r.inserted_at,
       NOT EXISTS (SELECT 1 FROM candles_1m m
                   WHERE m.exchange = r.exchange AND m.symbol = r.symbol AND NOT m.complete
                     AND m.time > r.time - INTERVAL '1 day' AND m.time <= r.time) AS complete,
       r.contract_value
FROM rollup_1d r
WHERE r.sealed;

CREATE OR REPLACE VIEW candles AS
SELECT '1m'::text AS timeframe, exchange, symbol, time, open, high, low, close, volume, quote_volume,
       trade_count, vwap, first_trade_id, last_trade_id, inserted_at, complete, contract_value
FROM candles_1m
UNION ALL
SELECT '5m'::text AS timeframe, exchange, symbol, time, open, high, low, close, volume, quote_volume,
       trade_count, vwap, first_trade_id, last_trade_id, inserted_at, complete, contract_value
FROM candles_5m
UNION ALL
SELECT '15m'::text AS timeframe, exchange, symbol, time, open, high, low, close, volume, quote_volume,
       trade_count, vwap, first_trade_id, last_trade_id, inserted_at, complete, contract_value
FROM candles_15m
UNION ALL
SELECT '1h'::text AS timeframe, exchange, symbol, time, open, high, low, close, volume, quote_volume,
       trade_count, vwap, first_trade_id, last_trade_id, inserted_at, complete, contract_value
FROM candles_1h
UNION ALL
SELECT '4h'::text AS timeframe, exchange, symbol, time, open, high, low, close, volume, quote_volume,
       trade_count, vwap, first_trade_id, last_trade_id, inserted_at, complete, contract_value
FROM candles_4h
UNION ALL
SELECT '1d'::text AS timeframe, exchange, symbol, time, open, high, low, close, volume, quote_volume,
       trade_count, vwap, first_trade_id, last_trade_id, inserted_at, complete, contract_value
FROM candles_1d;
