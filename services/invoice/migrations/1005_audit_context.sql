-- Issue 9: an audit entry's actor and request id come from the caller's request context (gRPC
-- metadata; the gateway passes a client's X-Request-Id of up to 128 characters on), and the
-- entry is written in the command's own transaction: a value longer than the column failed the
-- whole command. They are text, as in the events' metadata they are copied from.
ALTER TABLE audit_entries
    ALTER COLUMN actor TYPE TEXT,
    ALTER COLUMN request_id TYPE TEXT;
