-- Plain PostgreSQL: the higher timeframes as tables kept by the database itself, with the same columns,
-- the same bucket keys and the same arithmetic as the TimescaleDB continuous aggregates of
-- 0007_rollups.timescale.sql (read that file's header for the label, rule 6 and sealing design). The
-- public relations candles_5m ... candles_1d are the views of 0008 on both engines.
--
-- Maintenance, in the writing transaction: statement-level triggers on candles_1m note the changed range
-- of each series in rollup_pending; a statement that brings a minute closing a 5-minute boundary (the
-- only moments an interval of any level can become sealed, hence visible) recomputes the series' pending
-- range at every level in order (15m from the fresh 5m rows, ... 1d from 4h), the way a continuous
-- aggregate refresh recomputes invalidated buckets. So a candle becomes visible in the same transaction
-- as the 1m candle that seals it. Deleting 1m rows (retention) does not touch the rollups, as drop_chunks
-- does not touch continuous aggregates. refresh_rollups(from, to) recomputes a range and flushes every
-- pending range at once (after a backfill of old minutes, or loading with triggers disabled).

CREATE TABLE rollup_5m (
    exchange        text        NOT NULL,
    symbol          text        NOT NULL,
    bucket          timestamptz NOT NULL,
    time            timestamptz NOT NULL,
    open            numeric     NOT NULL,
    high            numeric     NOT NULL,
    low             numeric     NOT NULL,
    close           numeric     NOT NULL,
    volume          numeric     NOT NULL,
    quote_volume    numeric     NOT NULL,
    trade_count     integer     NOT NULL,
    vwap            numeric,
    first_trade_id  bigint,
    last_trade_id   bigint,
    contract_value  numeric,
    last_minute     timestamptz NOT NULL,
    sealed          boolean     NOT NULL,
    inserted_at     timestamptz NOT NULL,
    CONSTRAINT rollup_5m_pkey PRIMARY KEY (exchange, symbol, time)
);

CREATE TABLE rollup_15m (
    exchange        text        NOT NULL,
    symbol          text        NOT NULL,
    bucket          timestamptz NOT NULL,
    time            timestamptz NOT NULL,
    open            numeric     NOT NULL,
    high            numeric     NOT NULL,
    low             numeric     NOT NULL,
    close           numeric     NOT NULL,
    volume          numeric     NOT NULL,
    quote_volume    numeric     NOT NULL,
    trade_count     integer     NOT NULL,
    vwap            numeric,
    first_trade_id  bigint,
    last_trade_id   bigint,
    contract_value  numeric,
    last_minute     timestamptz NOT NULL,
    sealed          boolean     NOT NULL,
    inserted_at     timestamptz NOT NULL,
    CONSTRAINT rollup_15m_pkey PRIMARY KEY (exchange, symbol, time)
);

CREATE TABLE rollup_1h (
    exchange        text        NOT NULL,
    symbol          text        NOT NULL,
    bucket          timestamptz NOT NULL,
    time            timestamptz NOT NULL,
    open            numeric     NOT NULL,
    high            numeric     NOT NULL,
    low             numeric     NOT NULL,
    close           numeric     NOT NULL,
    volume          numeric     NOT NULL,
    quote_volume    numeric     NOT NULL,
    trade_count     integer     NOT NULL,
    vwap            numeric,
    first_trade_id  bigint,
    last_trade_id   bigint,
    contract_value  numeric,
    last_minute     timestamptz NOT NULL,
    sealed          boolean     NOT NULL,
    inserted_at     timestamptz NOT NULL,
    CONSTRAINT rollup_1h_pkey PRIMARY KEY (exchange, symbol, time)
);

CREATE TABLE rollup_4h (
    exchange        text        NOT NULL,
    symbol          text        NOT NULL,
    bucket          timestamptz NOT NULL,
    time            timestamptz NOT NULL,
    open            numeric     NOT NULL,
    high            numeric     NOT NULL,
    low             numeric     NOT NULL,
    close           numeric     NOT NULL,
    volume          numeric     NOT NULL,
    quote_volume    numeric     NOT NULL,
    trade_count     integer     NOT NULL,
    vwap            numeric,
    first_trade_id  bigint,
    last_trade_id   bigint,
    contract_value  numeric,
    last_minute     timestamptz NOT NULL,
    sealed          boolean     NOT NULL,
    inserted_at     timestamptz NOT NULL,
    CONSTRAINT rollup_4h_pkey PRIMARY KEY (exchange, symbol, time)
);

CREATE TABLE rollup_1d (
    exchange        text        NOT NULL,
    symbol          text        NOT NULL,
    bucket          timestamptz NOT NULL,
    time            timestamptz NOT NULL,
    open            numeric     NOT NULL,
    high            numeric     NOT NULL,
    low             numeric     NOT NULL,
    close           numeric     NOT NULL,
    volume          numeric     NOT NULL,
    quote_volume    numeric     NOT NULL,
    trade_count     integer     NOT NULL,
    vwap            numeric,
    first_trade_id  bigint,
    last_trade_id   bigint,
    contract_value  numeric,
    last_minute     timestamptz NOT NULL,
    sealed          boolean     NOT NULL,
    inserted_at     timestamptz NOT NULL,
    CONSTRAINT rollup_1d_pkey PRIMARY KEY (exchange, symbol, time)
);

-- One series, every level in order: recompute each interval holding a 1m close in [p_from, p_to]
-- (15m from the fresh 5m rows, and so on up to 1d).
CREATE FUNCTION tcp_rollup_series(p_exchange text, p_symbol text, p_from timestamptz, p_to timestamptz)
RETURNS void LANGUAGE plpgsql AS $fn$
DECLARE
    origin CONSTANT timestamptz := '1970-01-01 00:01:00+00';  -- buckets start 1 minute after a boundary
    lo     timestamptz := p_from;
    hi     timestamptz := p_to;
BEGIN
    -- rollup_5m from candles_1m
    lo := date_bin(INTERVAL '5 minutes', lo, origin);
    hi := date_bin(INTERVAL '5 minutes', hi, origin);
    DELETE FROM rollup_5m
    WHERE exchange = p_exchange AND symbol = p_symbol
      AND time BETWEEN lo + INTERVAL '4 minutes' AND hi + INTERVAL '4 minutes';
    INSERT INTO rollup_5m (exchange, symbol, bucket, time, open, high, low, close, volume, quote_volume,
                          trade_count, vwap, first_trade_id, last_trade_id, contract_value, last_minute,
                          sealed, inserted_at)
    SELECT exchange, symbol, b, b + INTERVAL '4 minutes',
           coalesce((array_agg(open ORDER BY k) FILTER (WHERE trade_count > 0))[1],
                    (array_agg(close ORDER BY k DESC))[1]),
           coalesce(max(high) FILTER (WHERE trade_count > 0), (array_agg(close ORDER BY k DESC))[1]),
           coalesce(min(low) FILTER (WHERE trade_count > 0), (array_agg(close ORDER BY k DESC))[1]),
           coalesce((array_agg(close ORDER BY k DESC) FILTER (WHERE trade_count > 0))[1],
                    (array_agg(close ORDER BY k DESC))[1]),
           sum(volume), sum(quote_volume), sum(trade_count)::integer,
           tcp_vwap(sum(quote_volume), sum(volume) * max(cv)),
           (array_agg(first_trade_id ORDER BY k) FILTER (WHERE trade_count > 0))[1],
           (array_agg(last_trade_id ORDER BY k DESC) FILTER (WHERE trade_count > 0))[1],
           max(cv), max(lm), bool_and(sealed) AND max(lm) = b + INTERVAL '4 minutes', max(inserted_at)
    FROM (SELECT c.exchange, c.symbol, c.open, c.high, c.low, c.close, c.volume, c.quote_volume,
                 c.trade_count,
                 c.first_trade_id, c.last_trade_id, c.inserted_at, c.time AS k,
                 date_bin(INTERVAL '5 minutes', c.time, origin) AS b,
                 tcp_contract_value(c.quote_volume, c.volume, c.vwap) AS cv, c.time AS lm, true AS sealed
          FROM candles_1m c
          WHERE c.exchange = p_exchange AND c.symbol = p_symbol
            AND c.time >= lo AND c.time < hi + INTERVAL '5 minutes') parts
    GROUP BY exchange, symbol, b;

    -- rollup_15m from rollup_5m
    lo := date_bin(INTERVAL '15 minutes', lo, origin);
    hi := date_bin(INTERVAL '15 minutes', hi, origin);
    DELETE FROM rollup_15m
    WHERE exchange = p_exchange AND symbol = p_symbol
      AND time BETWEEN lo + INTERVAL '14 minutes' AND hi + INTERVAL '14 minutes';
    INSERT INTO rollup_15m (exchange, symbol, bucket, time, open, high, low, close, volume, quote_volume,
                          trade_count, vwap, first_trade_id, last_trade_id, contract_value, last_minute,
                          sealed, inserted_at)
    SELECT exchange, symbol, b, b + INTERVAL '14 minutes',
           coalesce((array_agg(open ORDER BY k) FILTER (WHERE trade_count > 0))[1],
                    (array_agg(close ORDER BY k DESC))[1]),
           coalesce(max(high) FILTER (WHERE trade_count > 0), (array_agg(close ORDER BY k DESC))[1]),
           coalesce(min(low) FILTER (WHERE trade_count > 0), (array_agg(close ORDER BY k DESC))[1]),
           coalesce((array_agg(close ORDER BY k DESC) FILTER (WHERE trade_count > 0))[1],
                    (array_agg(close ORDER BY k DESC))[1]),
           sum(volume), sum(quote_volume), sum(trade_count)::integer,
           tcp_vwap(sum(quote_volume), sum(volume) * max(cv)),
           (array_agg(first_trade_id ORDER BY k) FILTER (WHERE trade_count > 0))[1],
           (array_agg(last_trade_id ORDER BY k DESC) FILTER (WHERE trade_count > 0))[1],
           max(cv), max(lm), bool_and(sealed) AND max(lm) = b + INTERVAL '14 minutes', max(inserted_at)
    FROM (SELECT c.exchange, c.symbol, c.open, c.high, c.low, c.close, c.volume, c.quote_volume,
                 c.trade_count,
                 c.first_trade_id, c.last_trade_id, c.inserted_at, c.bucket AS k,
                 date_bin(INTERVAL '15 minutes', c.bucket, origin) AS b,
                 c.contract_value AS cv, c.last_minute AS lm, c.sealed AS sealed
          FROM rollup_5m c
          WHERE c.exchange = p_exchange AND c.symbol = p_symbol
            AND c.bucket >= lo AND c.bucket < hi + INTERVAL '15 minutes') parts
    GROUP BY exchange, symbol, b;

    -- rollup_1h from rollup_15m
    lo := date_bin(INTERVAL '1 hour', lo, origin);
    hi := date_bin(INTERVAL '1 hour', hi, origin);
    DELETE FROM rollup_1h
    WHERE exchange = p_exchange AND symbol = p_symbol
      AND time BETWEEN lo + INTERVAL '59 minutes' AND hi + INTERVAL '59 minutes';
    INSERT INTO rollup_1h (exchange, symbol, bucket, time, open, high, low, close, volume, quote_volume,
                          trade_count, vwap, first_trade_id, last_trade_id, contract_value, last_minute,
                          sealed, inserted_at)
    SELECT exchange, symbol, b, b + INTERVAL '59 minutes',
           coalesce((array_agg(open ORDER BY k) FILTER (WHERE trade_count > 0))[1],
                    (array_agg(close ORDER BY k DESC))[1]),
           coalesce(max(high) FILTER (WHERE trade_count > 0), (array_agg(close ORDER BY k DESC))[1]),
           coalesce(min(low) FILTER (WHERE trade_count > 0), (array_agg(close ORDER BY k DESC))[1]),
           coalesce((array_agg(close ORDER BY k DESC) FILTER (WHERE trade_count > 0))[1],
                    (array_agg(close ORDER BY k DESC))[1]),
           sum(volume), sum(quote_volume), sum(trade_count)::integer,
           tcp_vwap(sum(quote_volume), sum(volume) * max(cv)),
           (array_agg(first_trade_id ORDER BY k) FILTER (WHERE trade_count > 0))[1],
           (array_agg(last_trade_id ORDER BY k DESC) FILTER (WHERE trade_count > 0))[1],
           max(cv), max(lm), bool_and(sealed) AND max(lm) = b + INTERVAL '59 minutes', max(inserted_at)
    FROM (SELECT c.exchange, c.symbol, c.open, c.high, c.low, c.close, c.volume, c.quote_volume,
                 c.trade_count,
                 c.first_trade_id, c.last_trade_id, c.inserted_at, c.bucket AS k,
                 date_bin(INTERVAL '1 hour', c.bucket, origin) AS b,
                 c.contract_value AS cv, c.last_minute AS lm, c.sealed AS sealed
          FROM rollup_15m c
          WHERE c.exchange = p_exchange AND c.symbol = p_symbol
            AND c.bucket >= lo AND c.bucket < hi + INTERVAL '1 hour') parts
    GROUP BY exchange, symbol, b;

    -- rollup_4h from rollup_1h
    lo := date_bin(INTERVAL '4 hours', lo, origin);
    hi := date_bin(INTERVAL '4 hours', hi, origin);
    DELETE FROM rollup_4h
    WHERE exchange = p_exchange AND symbol = p_symbol
      AND time BETWEEN lo + INTERVAL '239 minutes' AND hi + INTERVAL '239 minutes';
    INSERT INTO rollup_4h (exchange, symbol, bucket, time, open, high, low, close, volume, quote_volume,
                          trade_count, vwap, first_trade_id, last_trade_id, contract_value, last_minute,
                          sealed, inserted_at)
    SELECT exchange, symbol, b, b + INTERVAL '239 minutes',
           coalesce((array_agg(open ORDER BY k) FILTER (WHERE trade_count > 0))[1],
                    (array_agg(close ORDER BY k DESC))[1]),
           coalesce(max(high) FILTER (WHERE trade_count > 0), (array_agg(close ORDER BY k DESC))[1]),
           coalesce(min(low) FILTER (WHERE trade_count > 0), (array_agg(close ORDER BY k DESC))[1]),
           coalesce((array_agg(close ORDER BY k DESC) FILTER (WHERE trade_count > 0))[1],
                    (array_agg(close ORDER BY k DESC))[1]),
           sum(volume), sum(quote_volume), sum(trade_count)::integer,
           tcp_vwap(sum(quote_volume), sum(volume) * max(cv)),
           (array_agg(first_trade_id ORDER BY k) FILTER (WHERE trade_count > 0))[1],
           (array_agg(last_trade_id ORDER BY k DESC) FILTER (WHERE trade_count > 0))[1],
           max(cv), max(lm), bool_and(sealed) AND max(lm) = b + INTERVAL '239 minutes', max(inserted_at)
    FROM (SELECT c.exchange, c.symbol, c.open, c.high, c.low, c.close, c.volume, c.quote_volume,
                 c.trade_count,
                 c.first_trade_id, c.last_trade_id, c.inserted_at, c.bucket AS k,
                 date_bin(INTERVAL '4 hours', c.bucket, origin) AS b,
                 c.contract_value AS cv, c.last_minute AS lm, c.sealed AS sealed
          FROM rollup_1h c
          WHERE c.exchange = p_exchange AND c.symbol = p_symbol
            AND c.bucket >= lo AND c.bucket < hi + INTERVAL '4 hours') parts
    GROUP BY exchange, symbol, b;

    -- rollup_1d from rollup_4h
    lo := date_bin(INTERVAL '24 hours', lo, origin);
    hi := date_bin(INTERVAL '24 hours', hi, origin);
    DELETE FROM rollup_1d
    WHERE exchange = p_exchange AND symbol = p_symbol
      AND time BETWEEN lo + INTERVAL '1439 minutes' AND hi + INTERVAL '1439 minutes';
    INSERT INTO rollup_1d (exchange, symbol, bucket, time, open, high, low, close, volume, quote_volume,
                          trade_count, vwap, first_trade_id, last_trade_id, contract_value, last_minute,
                          sealed, inserted_at)
    SELECT exchange, symbol, b, b + INTERVAL '1439 minutes',
           coalesce((array_agg(open ORDER BY k) FILTER (WHERE trade_count > 0))[1],
                    (array_agg(close ORDER BY k DESC))[1]),
           coalesce(max(high) FILTER (WHERE trade_count > 0), (array_agg(close ORDER BY k DESC))[1]),
           coalesce(min(low) FILTER (WHERE trade_count > 0), (array_agg(close ORDER BY k DESC))[1]),
           coalesce((array_agg(close ORDER BY k DESC) FILTER (WHERE trade_count > 0))[1],
                    (array_agg(close ORDER BY k DESC))[1]),
           sum(volume), sum(quote_volume), sum(trade_count)::integer,
           tcp_vwap(sum(quote_volume), sum(volume) * max(cv)),
           (array_agg(first_trade_id ORDER BY k) FILTER (WHERE trade_count > 0))[1],
           (array_agg(last_trade_id ORDER BY k DESC) FILTER (WHERE trade_count > 0))[1],
           max(cv), max(lm), bool_and(sealed) AND max(lm) = b + INTERVAL '1439 minutes', max(inserted_at)
    FROM (SELECT c.exchange, c.symbol, c.open, c.high, c.low, c.close, c.volume, c.quote_volume,
                 c.trade_count,
                 c.first_trade_id, c.last_trade_id, c.inserted_at, c.bucket AS k,
                 date_bin(INTERVAL '24 hours', c.bucket, origin) AS b,
                 c.contract_value AS cv, c.last_minute AS lm, c.sealed AS sealed
          FROM rollup_4h c
          WHERE c.exchange = p_exchange AND c.symbol = p_symbol
            AND c.bucket >= lo AND c.bucket < hi + INTERVAL '24 hours') parts
    GROUP BY exchange, symbol, b;
END
$fn$;


-- Changed ranges not yet rolled up (they hold no sealed interval yet).
CREATE TABLE rollup_pending (
    exchange   text        NOT NULL,
    symbol     text        NOT NULL,
    from_time  timestamptz NOT NULL,
    to_time    timestamptz NOT NULL,
    CONSTRAINT rollup_pending_pkey PRIMARY KEY (exchange, symbol)
);

-- Note [p_from, p_to] of one series as changed; roll the whole pending range up when p_seals.
CREATE FUNCTION tcp_rollup_changed(p_exchange text, p_symbol text, p_from timestamptz, p_to timestamptz,
                                   p_seals boolean)
RETURNS void LANGUAGE plpgsql AS $fn$
DECLARE
    pending record;
BEGIN
    IF p_seals THEN
        DELETE FROM rollup_pending WHERE exchange = p_exchange AND symbol = p_symbol
        RETURNING from_time, to_time INTO pending;
        PERFORM tcp_rollup_series(p_exchange, p_symbol, least(p_from, pending.from_time),
                                  greatest(p_to, pending.to_time));
    ELSE
        INSERT INTO rollup_pending AS p (exchange, symbol, from_time, to_time)
        VALUES (p_exchange, p_symbol, p_from, p_to)
        ON CONFLICT (exchange, symbol) DO UPDATE
        SET from_time = least(p.from_time, EXCLUDED.from_time), to_time = greatest(p.to_time, EXCLUDED.to_time);
    END IF;
END
$fn$;

CREATE FUNCTION tcp_candles_1m_rollup() RETURNS trigger LANGUAGE plpgsql AS $fn$
DECLARE
    series record;
BEGIN
    FOR series IN
        SELECT exchange, symbol, min(time) AS t_from, max(time) AS t_to,
               bool_or(date_bin(INTERVAL '5 minutes', time, TIMESTAMPTZ '1970-01-01 00:00:00+00') = time) AS seals
        FROM changed
        GROUP BY exchange, symbol
    LOOP
        PERFORM tcp_rollup_changed(series.exchange, series.symbol, series.t_from, series.t_to, series.seals);
    END LOOP;
    RETURN NULL;
END
$fn$;

CREATE FUNCTION tcp_candles_1m_rollup_update() RETURNS trigger LANGUAGE plpgsql AS $fn$
DECLARE
    series record;
BEGIN
    FOR series IN
        SELECT exchange, symbol, min(time) AS t_from, max(time) AS t_to,
               bool_or(date_bin(INTERVAL '5 minutes', time, TIMESTAMPTZ '1970-01-01 00:00:00+00') = time) AS seals
        FROM (SELECT exchange, symbol, time FROM changed
              UNION ALL
              SELECT exchange, symbol, time FROM replaced) touched
        GROUP BY exchange, symbol
    LOOP
        PERFORM tcp_rollup_changed(series.exchange, series.symbol, series.t_from, series.t_to, series.seals);
    END LOOP;
    RETURN NULL;
END
$fn$;

CREATE TRIGGER candles_1m_rollup_insert AFTER INSERT ON candles_1m
    REFERENCING NEW TABLE AS changed FOR EACH STATEMENT EXECUTE FUNCTION tcp_candles_1m_rollup();
CREATE TRIGGER candles_1m_rollup_update AFTER UPDATE ON candles_1m
    REFERENCING OLD TABLE AS replaced NEW TABLE AS changed
    FOR EACH STATEMENT EXECUTE FUNCTION tcp_candles_1m_rollup_update();

-- Recompute every series with 1m candles closing in [p_from, p_to] (NULL: unbounded) and every pending
-- range; returns how many series were rolled up.
CREATE FUNCTION refresh_rollups(p_from timestamptz DEFAULT NULL, p_to timestamptz DEFAULT NULL)
RETURNS integer LANGUAGE plpgsql AS $fn$
DECLARE
    series record;
    n      integer := 0;
BEGIN
    FOR series IN
        SELECT exchange, symbol, min(t_from) AS t_from, max(t_to) AS t_to
        FROM (SELECT exchange, symbol, min(time) AS t_from, max(time) AS t_to
              FROM candles_1m
              WHERE (p_from IS NULL OR time >= p_from) AND (p_to IS NULL OR time <= p_to)
              GROUP BY exchange, symbol
              UNION ALL
              SELECT exchange, symbol, from_time, to_time FROM rollup_pending) ranges
        GROUP BY exchange, symbol
    LOOP
        PERFORM tcp_rollup_changed(series.exchange, series.symbol, series.t_from, series.t_to, true);
        n := n + 1;
    END LOOP;
    RETURN n;
END
$fn$;

SELECT refresh_rollups();
