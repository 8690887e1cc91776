-- Candle integrity (TIME.md rule 3 and the resume guarantees of docs/reliability.md).
--
-- `complete`: false when trades of the candle's interval are known to be missing (a hole REST could not
-- fill, recorded in `gaps`), so a partial candle is never silent. The higher timeframes are complete
-- when every minute of their interval is (a flagged minute is rare: the partial index keeps it cheap).
--
-- `candle_conflicts`: a stored candle is final and never updated; a second, different value offered for
-- the same key is kept here (and logged and counted by the writer) instead.

ALTER TABLE candles_1m ADD COLUMN complete boolean NOT NULL DEFAULT true;
CREATE INDEX candles_1m_incomplete ON candles_1m (exchange, symbol, time) WHERE NOT complete;

CREATE TABLE candle_conflicts (
    exchange     text        NOT NULL,
    symbol       text        NOT NULL,
    time         timestamptz NOT NULL,               -- the candle's close
    stored       jsonb       NOT NULL,               -- the final candle already in candles_1m
    offered      jsonb       NOT NULL,               -- the different value that was refused
    detected_at  timestamptz NOT NULL DEFAULT now(),
    CONSTRAINT candle_conflicts_key UNIQUE (exchange, symbol, time, offered)
);
CREATE INDEX candle_conflicts_detected ON candle_conflicts (detected_at DESC);

CREATE OR REPLACE VIEW candles_5m AS
SELECT r.exchange, r.symbol, r.time, r.open, r.high, r.low, r.close, r.volume, r.quote_volume, r.trade_count,
       r.vwap, r.first_trade_id, r.last_trade_id, r.inserted_at,
       NOT EXISTS (SELECT 1 FROM candles_1m m
                   WHERE m.exchange = r.exchange AND m.symbol = r.symbol AND NOT m.complete
                     AND m.time > r.time - INTERVAL '5 minutes' AND m.time <= r.time) AS complete
FROM rollup_5m r
WHERE r.sealed;

CREATE OR REPLACE VIEW candles_15m AS
SELECT r.exchange, r.symbol, r.time, r.open, r.high, r.low, r.close, r.volume, r.quote_volume, r.trade_count,
       r.vwap, r.first_trade_id, r.last_trade_id, r.inserted_at,
       NOT EXISTS (SELECT 1 FROM candles_1m m
                   WHERE m.exchange = r.exchange AND m.symbol = r.symbol AND NOT m.complete
                     AND m.time > r.time - INTERVAL '15 minutes' AND m.time <= r.time) AS complete
FROM rollup_15m r
WHERE r.sealed;

CREATE OR REPLACE VIEW candles_1h AS
SELECT r.exchange, r.symbol, r.time, r.open, r.high, r.low, r.close, r.volume, r.quote_volume, r.trade_count,
       r.vwap, r.first_trade_id, r.last_trade_id, r.inserted_at,
       NOT EXISTS (SELECT 1 FROM candles_1m m
                   WHERE m.exchange = r.exchange AND m.symbol = r.symbol AND NOT m.complete
                     AND m.time > r.time - INTERVAL '1 hour' AND m.time <= r.time) AS complete
FROM rollup_1h r
WHERE r.sealed;

CREATE OR REPLACE VIEW candles_4h AS
SELECT r.exchange, r.symbol, r.time, r.open, r.high, r.low, r.close, r.volume, r.quote_volume, r.trade_count,
       r.vwap, r.first_trade_id, r.last_trade_id, r.inserted_at,
       NOT EXISTS (SELECT 1 FROM candles_1m m
                   WHERE m.exchange = r.exchange AND m.symbol = r.symbol AND NOT m.complete
                     AND m.time > r.time - INTERVAL '4 hours' AND m.time <= r.time) AS complete
FROM rollup_4h r
WHERE r.sealed;

CREATE OR REPLACE VIEW candles_1d AS
SELECT r.exchange, r.symbol, r.time, r.open, r.high, r.low, r.close, r.volume, r.quote_volume, r.trade_count,
       r.vwap, r.first_trade_id, r.last_trade_id, r.inserted_at,
       NOT EXISTS (SELECT 1 FROM candles_1m m
                   WHERE m.exchange = r.exchange AND m.symbol = r.symbol AND NOT m.complete
                     AND m.time > r.time - INTERVAL '1 day' AND m.time <= r.time) AS complete
FROM rollup_1d r
WHERE r.sealed;

CREATE OR REPLACE VIEW candles AS
SELECT '1m'::text AS timeframe, exchange, symbol, time, open, high, low, close, volume, quote_volume,
       trade_count, vwap, first_trade_id, last_trade_id, inserted_at, complete
FROM candles_1m
UNION ALL
SELECT '5m'::text AS timeframe, exchange, symbol, time, open, high, low, close, volume, quote_volume,
       trade_count, vwap, first_trade_id, last_trade_id, inserted_at, complete
FROM candles_5m
UNION ALL
SELECT '15m'::text AS timeframe, exchange, symbol, time, open, high, low, close, volume, quote_volume,
       trade_count, vwap, first_trade_id, last_trade_id, inserted_at, complete
FROM candles_15m
UNION ALL
SELECT '1h'::text AS timeframe, exchange, symbol, time, open, high, low, close, volume, quote_volume,
       trade_count, vwap, first_trade_id, last_trade_id, inserted_at, complete
FROM candles_1h
UNION ALL
SELECT '4h'::text AS timeframe, exchange, symbol, time, open, high, low, close, volume, quote_volume,
       trade_count, vwap, first_trade_id, last_trade_id, inserted_at, complete
FROM candles_4h
UNION ALL
SELECT '1d'::text AS timeframe, exchange, symbol, time, open, high, low, close, volume, quote_volume,
       trade_count, vwap, first_trade_id, last_trade_id, inserted_at, complete
FROM candles_1d;
