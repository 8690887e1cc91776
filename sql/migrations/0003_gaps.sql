-- Holes in the live trade stream (connectors.okx.events.Gap): every hole the OKX source detected, whether
-- REST filled it or not, so that a loss is never silent. Plain PostgreSQL, identical on TimescaleDB (a
-- small table: no hypertable). The missing trade ids are from_trade_id < id < to_trade_id.

CREATE TABLE gaps (
    exchange           text        NOT NULL,
    symbol             text        NOT NULL,
    from_trade_id      bigint      NOT NULL,           -- last trade seen before the hole
    to_trade_id        bigint      NOT NULL,           -- first trade id of the push that revealed it
    from_time          timestamptz,                    -- ts_event of from_trade_id; NULL if unknown
    to_time            timestamptz,                    -- ts_event of to_trade_id; NULL if unknown
    filled             boolean     NOT NULL,           -- REST returned every missing trade
    trades_backfilled  integer     NOT NULL DEFAULT 0 CHECK (trades_backfilled >= 0),
    reason             text        NOT NULL DEFAULT 'sequence'
                                   CHECK (reason IN ('reconnect', 'sequence', 'resume')),
    recovery_seconds   double precision,               -- loss of the connection -> backfilled trades emitted
    error              text,                           -- why REST could not fill it, when it could not
    detected_at        timestamptz NOT NULL DEFAULT now(),
    CONSTRAINT gaps_ids CHECK (to_trade_id > from_trade_id),
    -- The same hole seen again (replay after recovery) is the same row: insert with ON CONFLICT.
    CONSTRAINT gaps_key UNIQUE (exchange, symbol, from_trade_id, to_trade_id)
);
CREATE INDEX gaps_detected ON gaps (detected_at DESC);
CREATE INDEX gaps_unfilled ON gaps (exchange, symbol, detected_at DESC) WHERE NOT filled;
