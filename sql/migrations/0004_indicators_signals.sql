-- Indicator values and strategy signals computed in-stream on closed candles (TIME.md rule 7).
-- `time` is the close of the candle the value was computed on: it uses no candle closing later.

-- Long layout: one row per (series, time, indicator label, output). User configs can add
-- indicators and parameter sets without schema changes, and the rows compress well per series.
CREATE TABLE indicators (
    exchange     text             NOT NULL,
    symbol       text             NOT NULL,
    timeframe    text             NOT NULL CHECK (timeframe IN ('1m', '5m', '15m', '1h', '4h', '1d')),
    time         timestamptz      NOT NULL,
    indicator    text             NOT NULL,   -- the configured label, e.g. ema_fast, macd, bbands
    output       text             NOT NULL,   -- TA-Lib's output name: value, macd, macdsignal, upperband ...
    value        double precision NOT NULL,
    inserted_at  timestamptz      NOT NULL DEFAULT now(),
    CONSTRAINT indicators_pkey PRIMARY KEY (exchange, symbol, timeframe, indicator, output, time)
);

CREATE TABLE signals (
    exchange     text        NOT NULL,
    symbol       text        NOT NULL,
    timeframe    text        NOT NULL CHECK (timeframe IN ('1m', '5m', '15m', '1h', '4h', '1d')),
    time         timestamptz NOT NULL,        -- close of the candle that caused the signal
    strategy     text        NOT NULL,        -- the configured label, e.g. ema_crossover
    action       text        NOT NULL CHECK (action IN ('buy', 'sell', 'flat')),
    reason       text        NOT NULL,
    values       jsonb       NOT NULL,        -- the numbers that triggered it
    inserted_at  timestamptz NOT NULL DEFAULT now(),
    CONSTRAINT signals_pkey PRIMARY KEY (exchange, symbol, timeframe, strategy, time)
);
CREATE INDEX signals_time ON signals (exchange, symbol, time DESC);
