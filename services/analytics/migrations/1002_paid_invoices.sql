-- Paid invoices, so daily_metrics count each invoice paid once (payments on chain).

-- One row per invoice that has ever been paid. `paid_on` is the UTC day of its first
-- invoice.paid and never moves; `counted` says whether that day's invoices_paid/amount_paid
-- include it right now: a reorg (invoice.reopened / invoice.invalid / back to partial) takes it
-- out, a later invoice.paid puts it back on the same day, and invoice.confirmed changes nothing.
CREATE TABLE paid_invoices (
    invoice_id UUID PRIMARY KEY,
    merchant_id UUID NOT NULL,
    paid_on DATE NOT NULL,
    amount NUMERIC(20, 8) NOT NULL,  -- the invoice total, fiat
    counted BOOLEAN NOT NULL,
    -- The invoice aggregate version of the last status event applied: an older one replayed
    -- later is ignored.
    invoice_version BIGINT NOT NULL
);

-- conversion_rate = invoices_paid / invoices_created x 100 of one day, and invoices_paid counts
-- invoices by the day they were paid, whatever day they were created: a day can pass 100 %.
-- NUMERIC(5, 2) would overflow at 1000 % and wedge the consumer on that event.
ALTER TABLE daily_metrics ALTER COLUMN conversion_rate TYPE NUMERIC(12, 2);
