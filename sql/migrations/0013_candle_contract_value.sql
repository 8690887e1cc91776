-- The contract value each 1m candle was built with (OKX ctVal: the base currency one contract is worth;
-- 1 for spot), stored instead of recovered. The stream's vwap is quote_volume / (volume x contract
-- value), so a rollup's vwap needs it; 0007 recovered it from the stored vwap (tcp_contract_value, to 12
-- significant digits, nothing for a flat minute). The writer now stores the value the candle was built
-- with; 0014 makes the rollups read this column.
--
-- Rows stored before are backfilled from that recovery: a traded minute gets its own recovered value, a
-- flat minute that of the series' last traded minute before it (1 when there is none). Only series whose
-- value is not 1 (contracts) are touched: for spot the default is already right.

ALTER TABLE candles_1m ADD COLUMN contract_value numeric NOT NULL DEFAULT 1;

UPDATE candles_1m
SET contract_value = tcp_contract_value(quote_volume, volume, vwap)
WHERE trade_count > 0 AND tcp_contract_value(quote_volume, volume, vwap) <> 1;

UPDATE candles_1m f
SET contract_value = coalesce(
    (SELECT t.contract_value FROM candles_1m t
     WHERE t.exchange = f.exchange AND t.symbol = f.symbol AND t.trade_count > 0 AND t.time < f.time
     ORDER BY t.time DESC LIMIT 1), 1)
WHERE f.trade_count = 0
  AND (f.exchange, f.symbol) IN (SELECT DISTINCT exchange, symbol FROM candles_1m WHERE contract_value <> 1);

ALTER TABLE candles_1m ADD CONSTRAINT candles_1m_contract_value CHECK (contract_value > 0);
