-- The latest health snapshot of each collector, upserted by the live flow at every snapshot (about every
-- 5 s), so that readers without Redis (the dashboard on the database alone, the status line of
-- `tcp.py up`) see each collector's state and its cause. A row whose `time` is older than 30 s
-- (connectors.live_items.HEALTH_EXPIRES_AFTER) is not current: its collector is not reporting. The
-- history of snapshots is on the Redis stream `tcp:health`; this table keeps only the latest.

CREATE TABLE collector_health (
    collector     text        PRIMARY KEY,                -- e.g. 'okx:public-0'
    time          timestamptz NOT NULL,                   -- when the snapshot was taken
    status        text        NOT NULL
                              CHECK (status IN ('starting', 'running', 'reconnecting', 'stopped', 'error')),
    is_healthy    boolean     NOT NULL,
    status_since  timestamptz,                            -- when the collector entered `status`
    last_error    text,                                   -- the last connection error, if any
    payload       jsonb       NOT NULL                    -- the snapshot as published (docs/redis.md)
);
