-- The control store (libs/common/shardstore.py): which shards exist and which slots each owns.
-- One row per registered shard: where it is and the plan tier it serves ("shared" for the
-- shards of CHECKOUT_SHARD_COUNT / CHECKOUT_SHARD_DSNS, which version 1 is made from).
CREATE TABLE shards (
    id INT PRIMARY KEY CHECK (id >= 0),
    dsn TEXT NOT NULL UNIQUE,
    tier TEXT NOT NULL,
    created_at TIMESTAMPTZ NOT NULL DEFAULT NOW()
);
-- Every shard map ever published, never updated: the newest version is the live one, and a
-- version is published only as the one after the newest (publish_map's compare-and-set is the
-- primary key). `ranges` is [[start, end, shard], ...], end exclusive, covering 0..4095.
CREATE TABLE shard_maps (
    version INT PRIMARY KEY CHECK (version >= 1),
    ranges JSONB NOT NULL,
    reason TEXT NOT NULL,
    created_at TIMESTAMPTZ NOT NULL DEFAULT NOW()
);
