-- Core tables, identical on plain PostgreSQL and TimescaleDB (0002 turns them into hypertables there).
-- Every time is TIMESTAMPTZ. Prices and sizes are NUMERIC without a scale: the exchange's decimal
-- string is kept exactly. Candle rows are right-labelled: `time` is the candle's close (TIME.md rule 2).

CREATE TABLE trades (
    exchange     text        NOT NULL,
    symbol       text        NOT NULL,
    trade_id     bigint      NOT NULL,
    time         timestamptz NOT NULL,                 -- ts_event: the exchange's trade time
    price        numeric     NOT NULL CHECK (price > 0),
    size         numeric     NOT NULL CHECK (size > 0),
    side         text        NOT NULL CHECK (side IN ('buy', 'sell')),  -- taker side
    received_at  timestamptz,                          -- ts_recv; NULL for trades read from a tape
    fill_count   integer     NOT NULL DEFAULT 1 CHECK (fill_count >= 1),  -- OKX `count`: fills in one push
    seq_id       bigint,                               -- OKX `seqId`, when present
    exch_source  text,                                 -- OKX `source` ("0" normal, "1" liquidity programme)
    origin       text        NOT NULL,                 -- lineage: 'ws' | 'rest' | 'tape'
    ingested_at  timestamptz NOT NULL DEFAULT now(),
    -- Identity (TIME.md rule 10) and, column order chosen for it, the index for per-symbol time ranges.
    CONSTRAINT trades_key UNIQUE (exchange, symbol, time, trade_id)
);

CREATE TABLE candles_1m (
    exchange        text        NOT NULL,
    symbol          text        NOT NULL,
    time            timestamptz NOT NULL,              -- the close; the candle covers [time - 1 minute, time)
    open            numeric     NOT NULL,
    high            numeric     NOT NULL,
    low             numeric     NOT NULL,
    close           numeric     NOT NULL,
    volume          numeric     NOT NULL CHECK (volume >= 0),
    quote_volume    numeric     NOT NULL CHECK (quote_volume >= 0),
    trade_count     integer     NOT NULL CHECK (trade_count >= 0),  -- 0 marks a flat candle (TIME.md rule 5)
    vwap            numeric,                           -- NULL for a flat candle
    first_trade_id  bigint,                            -- NULL for a flat candle
    last_trade_id   bigint,
    inserted_at     timestamptz NOT NULL DEFAULT now(),
    CONSTRAINT candles_1m_pkey PRIMARY KEY (exchange, symbol, time),
    CONSTRAINT candles_1m_ohlc CHECK (low <= open AND low <= close AND open <= high AND close <= high),
    CONSTRAINT candles_1m_flat CHECK (
        (trade_count = 0 AND volume = 0 AND vwap IS NULL AND first_trade_id IS NULL AND last_trade_id IS NULL
         AND open = high AND high = low AND low = close)
        OR (trade_count > 0 AND first_trade_id IS NOT NULL AND last_trade_id IS NOT NULL)
    )
);

-- A trade that arrived after its candle had been emitted (TIME.md rule 4): stored here and in `trades`,
-- never folded into the candle.
CREATE TABLE late_trades (
    exchange      text        NOT NULL,
    symbol        text        NOT NULL,
    trade_id      bigint      NOT NULL,
    time          timestamptz NOT NULL,                -- ts_event of the late trade
    price         numeric     NOT NULL,
    size          numeric     NOT NULL,
    side          text        NOT NULL CHECK (side IN ('buy', 'sell')),
    received_at   timestamptz,
    candle_close  timestamptz NOT NULL,                -- close of the 1m candle it missed
    lateness      interval    NOT NULL,                -- watermark at arrival minus the trade's own time
    detected_at   timestamptz NOT NULL DEFAULT now(),
    CONSTRAINT late_trades_key UNIQUE (exchange, symbol, trade_id, time)
);

-- Input that could not be turned into data: kept verbatim with the reason (nothing is dropped silently).
CREATE TABLE rejects (
    received_at  timestamptz NOT NULL,
    source       text        NOT NULL,                 -- where it came from, e.g. 'okx-ws', 'okx-rest'
    reason       text        NOT NULL,
    raw          bytea       NOT NULL,                 -- the message as received
    raw_digest   bytea       NOT NULL,                 -- sha256(raw): with received_at, makes re-delivery idempotent
    CONSTRAINT rejects_key UNIQUE (received_at, source, raw_digest)
);
CREATE INDEX rejects_time ON rejects (received_at DESC);
