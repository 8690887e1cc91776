-- Backtest runs (docs/backtest.md): one row per strategy run over one series, with its trades and its
-- equity at every candle close. A run is written once, in one transaction, and never updated; deleting a
-- run deletes its trades and equity.

CREATE TABLE backtest_runs (
    run_id        bigint      GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    created_at    timestamptz NOT NULL DEFAULT now(),
    exchange      text        NOT NULL,
    symbol        text        NOT NULL,
    timeframe     text        NOT NULL,
    strategy      text        NOT NULL,   -- the strategy's label
    source        text        NOT NULL CHECK (source IN ('candles', 'trades', 'tapes')),
    data_start    timestamptz NOT NULL,   -- first candle's open
    data_end      timestamptz NOT NULL,   -- last candle's close
    candles       bigint      NOT NULL,
    config        jsonb       NOT NULL,   -- {"strategy": name, "params": {...}, "account": {...}, ...}
    code_version  text        NOT NULL,   -- package version + git commit when available
    metrics       jsonb       NOT NULL    -- market.backtest.compute_metrics(...)
);

CREATE TABLE backtest_trades (
    run_id       bigint           NOT NULL REFERENCES backtest_runs (run_id) ON DELETE CASCADE,
    entry_time   timestamptz      NOT NULL,   -- open instant of the candle whose open filled the entry
    side         text             NOT NULL CHECK (side IN ('long', 'short')),
    entry_price  double precision NOT NULL,
    exit_time    timestamptz,                 -- NULL while open
    exit_price   double precision,            -- NULL while open
    quantity     double precision NOT NULL,
    pnl          double precision NOT NULL,   -- an open trade: marked at the last close
    fees         double precision NOT NULL,
    is_open      boolean          NOT NULL,
    PRIMARY KEY (run_id, entry_time)
);

CREATE TABLE backtest_equity (
    run_id    bigint           NOT NULL REFERENCES backtest_runs (run_id) ON DELETE CASCADE,
    time      timestamptz      NOT NULL,      -- candle close
    close     double precision NOT NULL,
    cash      double precision NOT NULL,
    position  double precision NOT NULL,      -- signed quantity held after this candle
    equity    double precision NOT NULL,
    PRIMARY KEY (run_id, time)
);
