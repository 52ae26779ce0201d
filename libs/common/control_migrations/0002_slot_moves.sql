-- Slot moves (libs/common/slotmover.py): one row per move, its phase the mover's durable
-- position, so a mover killed at any point resumes where it was. Slots are inclusive.
CREATE TABLE slot_moves (
    id UUID PRIMARY KEY,  -- the operator's handle (GET /v1/admin/slot-moves/{id})
    number BIGSERIAL UNIQUE,  -- the shards' name for it (slot_fences.move_id, the fence lock)
    first_slot INTEGER NOT NULL CHECK (first_slot BETWEEN 0 AND 4095),
    last_slot INTEGER NOT NULL CHECK (last_slot BETWEEN first_slot AND 4095),
    from_shard INTEGER NOT NULL,
    to_shard INTEGER NOT NULL,
    phase TEXT NOT NULL CHECK (phase IN ('copying', 'catching_up', 'fencing', 'cleaning', 'done',
                                         'aborting', 'aborted')),
    paused BOOLEAN NOT NULL DEFAULT false,
    abort_requested BOOLEAN NOT NULL DEFAULT false,
    rows_total BIGINT NOT NULL DEFAULT 0,        -- rows in the slots when the copy began
    rows_copied JSONB NOT NULL DEFAULT '{}',     -- "schema.table": rows written to the target
    change_cursor JSONB NOT NULL DEFAULT '{}',   -- schema: last slot_changes id caught up
    fence_ms DOUBLE PRECISION,                   -- how long writes to the slots waited
    copy_seconds DOUBLE PRECISION,               -- the bulk copy's duration (for rows/s)
    map_version INTEGER,                         -- the map the switch published
    error TEXT,
    created_at TIMESTAMPTZ NOT NULL DEFAULT NOW(),
    updated_at TIMESTAMPTZ NOT NULL DEFAULT NOW(),
    finished_at TIMESTAMPTZ
);
-- One move at a time, platform-wide.
CREATE UNIQUE INDEX one_active_slot_move ON slot_moves ((true)) WHERE phase NOT IN ('done', 'aborted');
