-- The watchers ask every poll for the addresses of a network's open invoices
-- (services/invoice/ledger.py `watched`): a partial index keeps that off the full table.
CREATE INDEX idx_invoices_network_open ON invoices (network, id)
    WHERE status IN ('pending', 'partial', 'paid', 'invalid');
