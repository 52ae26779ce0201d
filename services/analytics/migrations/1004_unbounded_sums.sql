-- Issue 9: one accepted invoice (quantity 10^18) overflowed NUMERIC(20, 8) and the projection
-- retried it forever. Invoices are now bounded (libs/common/limits.py: TOTAL_MAX), but a day sums
-- any number of them, so no precision can cap the sums: they are NUMERIC without one (exact at
-- any magnitude, at whatever scale each currency's amounts have). conversion_rate is a quotient of
-- two day counts, unbounded for the same reason (it is always rounded to 2 places when written).
ALTER TABLE daily_metrics
    ALTER COLUMN amount_created TYPE NUMERIC,
    ALTER COLUMN amount_paid TYPE NUMERIC,
    ALTER COLUMN conversion_rate TYPE NUMERIC;
ALTER TABLE paid_invoices ALTER COLUMN amount TYPE NUMERIC;
