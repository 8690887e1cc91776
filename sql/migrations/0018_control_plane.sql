-- The control plane (docs/control.md): paper-trading bots and user indicators, changed by `tcp.py bots`
-- and the dashboard, applied by the running flow. Every change to `bots` or `user_indicators` is written
-- in the same transaction as one `control_log` row; writers take one transaction-scoped advisory lock
-- (connectors/control_store.py) before drawing a change id, so ids commit in id order and a reader that
-- has seen id N has seen every id below N.

CREATE TABLE bots (
    bot_id      bigint      GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    name        text        NOT NULL UNIQUE CHECK (name ~ '^[a-z0-9][a-z0-9_-]{0,62}$'),
    exchange    text        NOT NULL,
    symbol      text        NOT NULL,
    timeframe   text        NOT NULL CHECK (timeframe IN ('1m', '5m', '15m', '1h', '4h', '1d')),
    config      jsonb       NOT NULL,   -- configs.bots.BotConfig, validated before it is written
    state       text        NOT NULL DEFAULT 'created'
                            CHECK (state IN ('created', 'running', 'paused', 'stopped')),
    created_at  timestamptz NOT NULL DEFAULT now(),
    updated_at  timestamptz NOT NULL DEFAULT now()
);

CREATE TABLE user_indicators (
    indicator_id bigint      GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    exchange     text        NOT NULL,
    symbol       text        NOT NULL,
    timeframe    text        NOT NULL CHECK (timeframe IN ('1m', '5m', '15m', '1h', '4h', '1d')),
    label        text        NOT NULL,
    entry        jsonb       NOT NULL,   -- configs.indicators.IndicatorEntry: {"indicator", "label", "params"}
    created_at   timestamptz NOT NULL DEFAULT now(),
    UNIQUE (exchange, symbol, timeframe, label)
);

-- Append-only: one row per change, in commit order.
CREATE TABLE control_log (
    change_id  bigint      GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    at         timestamptz NOT NULL DEFAULT now(),
    kind       text        NOT NULL CHECK (kind IN ('bot', 'indicator')),
    action     text        NOT NULL,   -- bot: add, start, pause, stop, remove; indicator: add, remove
    exchange   text        NOT NULL,
    symbol     text        NOT NULL,
    timeframe  text        NOT NULL,
    target     text        NOT NULL,   -- the bot's name or the indicator's label
    payload    jsonb       NOT NULL    -- bot: {"bot_id", "config", "state"}; indicator: {"entry"} (add)
);

-- Written by the flow only. A bot's fills and equity are keyed by the bot's id, so a removed bot's
-- rows go with it.
CREATE TABLE bot_fills (
    bot_id       bigint           NOT NULL REFERENCES bots (bot_id) ON DELETE CASCADE,
    time         timestamptz      NOT NULL,   -- open instant of the candle whose open filled it
    seq          smallint         NOT NULL,   -- 0, 1: an exit and an entry at the same open
    signal_time  timestamptz      NOT NULL,
    side         text             NOT NULL CHECK (side IN ('buy', 'sell')),
    price        double precision NOT NULL,
    quantity     double precision NOT NULL,
    fee          double precision NOT NULL,
    PRIMARY KEY (bot_id, time, seq)
);

CREATE TABLE bot_equity (
    bot_id    bigint           NOT NULL REFERENCES bots (bot_id) ON DELETE CASCADE,
    time      timestamptz      NOT NULL,      -- candle close
    close     double precision NOT NULL,
    cash      double precision NOT NULL,
    position  double precision NOT NULL,      -- signed quantity held after this candle
    equity    double precision NOT NULL,
    PRIMARY KEY (bot_id, time)
);

-- Where each bot stands: the close of the last candle it processed and its state then (a pickle of
-- market.bots.BotRunner, written by the flow, read by the flow only).
CREATE TABLE bot_state (
    bot_id      bigint      PRIMARY KEY REFERENCES bots (bot_id) ON DELETE CASCADE,
    last_close  timestamptz NOT NULL,
    runner      bytea       NOT NULL,
    updated_at  timestamptz NOT NULL DEFAULT now()
);
