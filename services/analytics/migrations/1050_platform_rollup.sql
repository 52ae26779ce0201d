-- Issue 18: platform metrics over 90 days read ~180k daily_metrics rows of a million-invoice
-- shard, three times. Two rollups answer them instead, kept by a trigger on daily_metrics, so
-- every writer (the projection, a rebuild, an older replica during a deploy) keeps them right:
--   platform_daily: a shard's day per currency, summed over merchants (a day is a few rows);
--   merchant_activity: the (merchant, currency, day)s on which a merchant was active, and
--   merchant_currencies, each pair's first and last of them. A pair with its first or last day
--   in [from, to] was active in it, one whose days all lie outside was not; only a pair whose
--   days span the whole range needs a look at merchant_activity (one index probe). For the
--   usual "last N days" no pair does, and the answer reads one small row per pair.
-- Active, as in repository._ACTIVE: an invoice created or paid that day.

CREATE TABLE platform_daily (
    metric_date DATE NOT NULL,
    currency TEXT NOT NULL,
    invoices_created BIGINT NOT NULL DEFAULT 0,
    invoices_paid BIGINT NOT NULL DEFAULT 0,
    -- Sums over every merchant of a shard: unbounded, whatever daily_metrics' columns hold.
    amount_created NUMERIC NOT NULL DEFAULT 0,
    amount_paid NUMERIC NOT NULL DEFAULT 0,
    merchants_active INTEGER NOT NULL DEFAULT 0,
    -- daily_metrics rows summed here: a day whose rows a reorg took back to zeros is still shown.
    metric_rows INTEGER NOT NULL DEFAULT 0,
    PRIMARY KEY (metric_date, currency)
);

CREATE TABLE merchant_activity (
    merchant_id UUID NOT NULL,
    currency TEXT NOT NULL,
    metric_date DATE NOT NULL,
    PRIMARY KEY (merchant_id, currency, metric_date)
);

CREATE TABLE merchant_currencies (
    merchant_id UUID NOT NULL,
    currency TEXT NOT NULL,
    first_day DATE,  -- NULL both when a reorg took back every active day
    last_day DATE,
    PRIMARY KEY (merchant_id, currency)
);

CREATE FUNCTION platform_daily_add(day DATE, cur TEXT, created BIGINT, paid BIGINT,
                                   created_amount NUMERIC, paid_amount NUMERIC, active INTEGER,
                                   metric_rows INTEGER)
RETURNS void LANGUAGE sql SET search_path FROM CURRENT AS $$
    INSERT INTO platform_daily AS p (metric_date, currency, invoices_created, invoices_paid,
                                     amount_created, amount_paid, merchants_active, metric_rows)
    VALUES (day, cur, created, paid, created_amount, paid_amount, active, metric_rows)
    ON CONFLICT (metric_date, currency) DO UPDATE SET
        invoices_created = p.invoices_created + EXCLUDED.invoices_created,
        invoices_paid = p.invoices_paid + EXCLUDED.invoices_paid,
        amount_created = p.amount_created + EXCLUDED.amount_created,
        amount_paid = p.amount_paid + EXCLUDED.amount_paid,
        merchants_active = p.merchants_active + EXCLUDED.merchants_active,
        metric_rows = p.metric_rows + EXCLUDED.metric_rows
$$;

-- Its schema's tables, whoever writes (search_path is the migration's, the service's own).
CREATE FUNCTION daily_metrics_rollup() RETURNS trigger LANGUAGE plpgsql SET search_path FROM CURRENT AS $$
DECLARE
    was_active BOOLEAN := TG_OP <> 'INSERT' AND (OLD.invoices_created > 0 OR OLD.invoices_paid > 0);
    is_active BOOLEAN := TG_OP <> 'DELETE' AND (NEW.invoices_created > 0 OR NEW.invoices_paid > 0);
    same_row BOOLEAN := TG_OP = 'UPDATE' AND OLD.merchant_id = NEW.merchant_id
                        AND OLD.metric_date = NEW.metric_date AND OLD.currency = NEW.currency;
BEGIN
    IF same_row THEN  -- the projection's case: one day's counts change
        PERFORM platform_daily_add(NEW.metric_date, NEW.currency,
                                   NEW.invoices_created - OLD.invoices_created,
                                   NEW.invoices_paid - OLD.invoices_paid,
                                   NEW.amount_created - OLD.amount_created,
                                   NEW.amount_paid - OLD.amount_paid,
                                   is_active::int - was_active::int, 0);
    ELSE
        IF TG_OP <> 'INSERT' THEN
            PERFORM platform_daily_add(OLD.metric_date, OLD.currency, -OLD.invoices_created,
                                       -OLD.invoices_paid, -OLD.amount_created, -OLD.amount_paid,
                                       -was_active::int, -1);
        END IF;
        IF TG_OP <> 'DELETE' THEN
            PERFORM platform_daily_add(NEW.metric_date, NEW.currency, NEW.invoices_created,
                                       NEW.invoices_paid, NEW.amount_created, NEW.amount_paid,
                                       is_active::int, 1);
        END IF;
    END IF;
    IF was_active AND NOT (same_row AND is_active) THEN
        DELETE FROM merchant_activity
        WHERE merchant_id = OLD.merchant_id AND currency = OLD.currency AND metric_date = OLD.metric_date;
        -- Rare (a reorg): the pair's span is read again from what is left.
        UPDATE merchant_currencies c SET
            first_day = (SELECT min(metric_date) FROM merchant_activity a
                         WHERE a.merchant_id = c.merchant_id AND a.currency = c.currency),
            last_day = (SELECT max(metric_date) FROM merchant_activity a
                        WHERE a.merchant_id = c.merchant_id AND a.currency = c.currency)
        WHERE c.merchant_id = OLD.merchant_id AND c.currency = OLD.currency
          AND OLD.metric_date IN (c.first_day, c.last_day);
    END IF;
    IF is_active AND NOT (same_row AND was_active) THEN
        INSERT INTO merchant_activity (merchant_id, currency, metric_date)
        VALUES (NEW.merchant_id, NEW.currency, NEW.metric_date) ON CONFLICT DO NOTHING;
        INSERT INTO merchant_currencies AS c (merchant_id, currency, first_day, last_day)
        VALUES (NEW.merchant_id, NEW.currency, NEW.metric_date, NEW.metric_date)
        ON CONFLICT (merchant_id, currency) DO UPDATE SET
            first_day = LEAST(c.first_day, EXCLUDED.first_day),
            last_day = GREATEST(c.last_day, EXCLUDED.last_day);
    END IF;
    RETURN NULL;
END
$$;

CREATE FUNCTION daily_metrics_rollup_reset() RETURNS trigger LANGUAGE plpgsql SET search_path FROM CURRENT AS $$
BEGIN
    TRUNCATE platform_daily, merchant_activity, merchant_currencies;
    RETURN NULL;
END
$$;

-- No write may slip between the backfill below and the triggers: the consumer waits for this
-- lock (about a second at a million invoices). An asynchronous projection falls that far behind
-- and nobody's request waits, so this table takes a lock where invoices' indexes would not.
LOCK TABLE daily_metrics IN SHARE ROW EXCLUSIVE MODE;

-- On the partitioned table: PostgreSQL puts the row trigger on every partition, later ones too.
CREATE TRIGGER daily_metrics_rollup AFTER INSERT OR UPDATE OR DELETE ON daily_metrics
    FOR EACH ROW EXECUTE FUNCTION daily_metrics_rollup();
-- A rebuild empties daily_metrics with TRUNCATE (the projection's reset_sql), which fires no
-- row trigger.
CREATE TRIGGER daily_metrics_rollup_reset AFTER TRUNCATE ON daily_metrics
    FOR EACH STATEMENT EXECUTE FUNCTION daily_metrics_rollup_reset();

-- What is there already.
INSERT INTO platform_daily
SELECT metric_date, currency, sum(invoices_created), sum(invoices_paid), sum(amount_created), sum(amount_paid),
       count(*) FILTER (WHERE invoices_created > 0 OR invoices_paid > 0), count(*)
FROM daily_metrics GROUP BY metric_date, currency;
INSERT INTO merchant_activity
SELECT merchant_id, currency, metric_date FROM daily_metrics WHERE invoices_created > 0 OR invoices_paid > 0;
INSERT INTO merchant_currencies
SELECT merchant_id, currency, min(metric_date), max(metric_date) FROM merchant_activity GROUP BY merchant_id, currency;
-- Its statistics now, not at autovacuum's next look: the read plans on them.
ANALYZE platform_daily;
ANALYZE merchant_activity;
ANALYZE merchant_currencies;
