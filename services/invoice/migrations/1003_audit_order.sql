-- The events of one command share a timestamp, and their ids are not ordered within a
-- millisecond: an invoice's audit trail is ordered by the aggregate version it recorded.
ALTER TABLE audit_entries ADD COLUMN event_version INTEGER NOT NULL DEFAULT 0;
CREATE INDEX idx_audit_entries_invoice_version ON audit_entries (invoice_id, event_version);
