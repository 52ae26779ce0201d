-- Issue 15: moving slots between shards online (libs/common/slotmove.py).

-- The slot an id carries: bits 64..75 of a platform UUID (libs/common/ids.py `slot_of`), i.e.
-- hex digits 13..16 of its 32 with the version nibble masked off. NULL for NULL.
CREATE FUNCTION slot_of(id UUID) RETURNS INTEGER
LANGUAGE sql IMMUTABLE STRICT PARALLEL SAFE AS $$
    SELECT ('x' || substr(replace(id::text, '-', ''), 13, 4))::bit(16)::int & 4095
$$;

-- The slot ranges this shard is giving away. While a row is `copying`, every write to a row of
-- its slots is recorded in slot_changes (the mover's catch-up copies those rows again); once it
-- is `moved`, such a write fails with SQLSTATE CKMOV ("slot moved": the caller routes again).
-- A `moved` row stays after the move: a process whose shard map is old is refused, not lost.
CREATE TABLE slot_fences (
    move_id BIGINT PRIMARY KEY,
    first_slot INTEGER NOT NULL,
    last_slot INTEGER NOT NULL,  -- inclusive
    to_shard INTEGER NOT NULL,
    state TEXT NOT NULL CHECK (state IN ('copying', 'moved'))
);

-- Rows written in a moving slot since its move began: table and primary key, in write order.
CREATE TABLE slot_changes (
    id BIGSERIAL PRIMARY KEY,
    move_id BIGINT NOT NULL,
    table_name TEXT NOT NULL,
    row_key JSONB NOT NULL
);
CREATE INDEX idx_slot_changes_move ON slot_changes (move_id, id);
