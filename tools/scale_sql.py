"""The SQL that fills a scale-bench shard (tools/scale_data.py runs it, in this order).

`FUNCTIONS` and `MERCHANTS` set up the session: id, slot and word helpers in pg_temp and the
merchants table `scale_data.merchant_rows` fills. Then `INVOICES` (a row per invoice, drawn in
SQL from each merchant's share and catalogue), and what follows from the invoices: `PAYMENTS`,
`AUDIT`, and the analytics service's `DAILY_METRICS`, `PAID_INVOICES` and `PROFILES`. Each
statement inserts in time order, as the services would have written the rows.
"""

FUNCTIONS = """
CREATE FUNCTION pg_temp.uuid7(at timestamptz, slot int) RETURNS uuid LANGUAGE sql AS $$
    -- libs/common/ids.py's layout: 48 bits of unix ms, version 7, the 12-bit slot, variant, random.
    SELECT (lpad(to_hex(floor(extract(epoch FROM at) * 1000)::bigint), 12, '0') || '7'
            || lpad(to_hex(slot), 3, '0') || to_hex(8 + floor(random() * 4)::int)
            || lpad(to_hex(floor(random() * 4294967296)::bigint), 8, '0')
            || lpad(to_hex(floor(random() * 268435456)::bigint), 7, '0'))::uuid
$$;
CREATE FUNCTION pg_temp.slot_of(id uuid) RETURNS int LANGUAGE sql IMMUTABLE AS $$
    SELECT ('x' || substr(id::text, 16, 3))::bit(12)::int
$$;
CREATE FUNCTION pg_temp.word(vocab text[], offset_ int) RETURNS text LANGUAGE sql AS $$
    -- A catalogue word by log-uniform rank: rank 1 about 17 % of draws, rank 60 about 0.4 %.
    SELECT vocab[offset_ + floor(exp(random() * ln(61)))::int - 1]
$$;
"""

MERCHANTS = """
CREATE TEMP TABLE bench_merchants (
    n int PRIMARY KEY, slot int, invoices int, joined timestamptz, currencies text[],
    catalogue int, espresso bool, expiry_seconds int, id uuid)
"""

# $1 vocabulary, $2 now. Every random draw sits in the inner subquery (fenced by OFFSET 0) so
# each is drawn once per row; the outer one derives the columns the projection would write.
INVOICES = """
INSERT INTO invoices (id, merchant_id, customer_id, customer_email, title, description, items,
    subtotal, tax, total, currency, crypto_currency, crypto_amount, amount_paid, network,
    address_index, payment_address, payment_uri, status, exchange_rate, payment_tolerance, metadata,
    expires_at, created_at, updated_at, paid_at, overpaid, paid_late, status_reason)
SELECT id, merchant_id, customer_id, customer_email, title, description,
       jsonb_build_array(jsonb_build_object('name', title, 'quantity', qty::text,
                                            'unit_price', price::text)),
       price * qty, tax, price * qty + tax, currency, crypto, crypto_amount,
       CASE WHEN status IN ('paid', 'confirmed') THEN crypto_amount * (CASE WHEN over THEN 1.1 ELSE 1 END)
            WHEN status = 'partial' OR (status = 'expired' AND r_part < 0.2) THEN round(crypto_amount / 2, 6)
            ELSE 0 END,
       network, g, address,
       CASE crypto WHEN 'BTC' THEN 'bitcoin:' || address || '?amount=' || crypto_amount
            WHEN 'ETH' THEN 'ethereum:' || address || '@1?value=' || (crypto_amount * 1e18)::numeric(40, 0)
            ELSE 'ethereum:0xA0b86991c6218b36c1d19D4a2e9Eb0cE3606eB48@1/transfer?address=' || address
                 || '&uint256=' || (crypto_amount * 1e6)::numeric(30, 0) END,
       status,
       jsonb_build_object('rate', rate::text, 'source', 'coinbase', 'pair', crypto || '-' || currency,
                          'fetched_at', created_at),
       '{"underpaid_percent": "0"}'::jsonb,
       CASE WHEN r_meta < 0.3 THEN jsonb_build_object('order_id', 'ord_' || g) ELSE '{}'::jsonb END,
       expires_at, created_at,
       CASE status WHEN 'pending' THEN created_at WHEN 'expired' THEN expires_at
            WHEN 'confirmed' THEN paid_at + interval '10 minutes'
            WHEN 'cancelled' THEN created_at + (expires_at - created_at) * r_part
            ELSE coalesce(paid_at, created_at + interval '1 minute') END,
       paid_at, status IN ('paid', 'confirmed') AND over, status = 'expired' AND r_part > 0.995,
       CASE status WHEN 'invalid' THEN 'a reorg took back the payment after the invoice expired' END
FROM (
    SELECT *,
           CASE WHEN status IN ('paid', 'confirmed')
                THEN created_at + (expires_at - created_at) * r_part * 0.9 END AS paid_at,
           round(price * qty * 0.08, CASE currency WHEN 'JPY' THEN 0 ELSE 2 END) AS tax,
           round(price * qty * (CASE currency WHEN 'EUR' THEN 1.1 WHEN 'GBP' THEN 1.27 WHEN 'JPY' THEN 0.0067
                                              WHEN 'CAD' THEN 0.73 ELSE 1 END) / rate,
                 CASE crypto WHEN 'ETH' THEN 18 WHEN 'BTC' THEN 8 ELSE 6 END) AS crypto_amount,
           CASE network WHEN 'bitcoin'
                THEN 'bc1q' || substr(translate(md5(id::text) || md5(id::text || 'a'),
                                                '0123456789abcdef', 'qpzry9x8gf2tvdw0'), 1, 38)
                ELSE '0x' || substr(md5(id::text) || md5(id::text || 'a'), 1, 40) END AS address
    FROM (
        SELECT *,
               CASE WHEN r_crypto < 0.5 THEN 'ETH' WHEN r_crypto < 0.75 THEN 'USDC' ELSE 'BTC' END AS crypto,
               CASE WHEN r_crypto < 0.75 THEN 'ethereum' ELSE 'bitcoin' END AS network,
               CASE WHEN r_crypto < 0.5 THEN 2400 WHEN r_crypto < 0.75 THEN 1 ELSE 48000 END AS rate,
               created_at + make_interval(secs => expiry_seconds) AS expires_at,
               CASE WHEN created_at + make_interval(secs => expiry_seconds) > $2::timestamptz THEN
                        CASE WHEN r_status < 0.70 THEN 'pending' WHEN r_status < 0.75 THEN 'partial'
                             WHEN r_status < 0.90 THEN 'paid' ELSE 'confirmed' END
                    WHEN created_at > $2::timestamptz - interval '2 hours' THEN
                        CASE WHEN r_status < 0.65 THEN 'confirmed' WHEN r_status < 0.70 THEN 'paid'
                             WHEN r_status < 0.97 THEN 'expired' ELSE 'cancelled' END
                    ELSE CASE WHEN r_status < 0.70 THEN 'confirmed' WHEN r_status < 0.93 THEN 'expired'
                              WHEN r_status < 0.9695 THEN 'cancelled' WHEN r_status < 0.97 THEN 'invalid'
                              ELSE 'confirmed' END
               END AS status,
               CASE WHEN currency = 'JPY' THEN round(exp(r_price * 6.5)::numeric * 150)
                    ELSE round(exp(r_price * 6.5)::numeric, 2) END AS price
        FROM (
            SELECT pg_temp.uuid7(created_at, m.slot) AS id, m.id AS merchant_id, g, created_at,
                   m.expiry_seconds,
                   CASE WHEN r_customer < 0.8 THEN
                       (substr(md5(m.id::text || ':' || cno), 1, 12) || '8' || lpad(to_hex(m.slot), 3, '0')
                        || '9' || substr(md5(m.id::text || ':' || cno), 13, 15))::uuid END AS customer_id,
                   CASE WHEN r_customer < 0.8 THEN 'customer' || cno || '@shop' || m.n || '.example' END
                       AS customer_email,
                   initcap(pg_temp.word($1, m.catalogue)) || ' ' || pg_temp.word($1, m.catalogue)
                       || CASE WHEN random() < 0.65 THEN ' order' ELSE '' END
                       || CASE WHEN m.espresso AND random() < 0.4 THEN ' espresso' ELSE '' END AS title,
                   CASE WHEN random() < 0.6 THEN
                       'With ' || pg_temp.word($1, m.catalogue) || ' and ' || pg_temp.word($1, m.catalogue)
                       || ', packed by ' || pg_temp.word($1, m.catalogue)
                       || CASE WHEN random() < 0.08
                               THEN ' ref zx' || lpad(to_hex(floor(random() * 1048576)::int), 5, '0')
                               ELSE '' END END AS description,
                   m.currencies[CASE WHEN r_currency < 0.7 THEN 1 WHEN r_currency < 0.9 THEN 2 ELSE 3 END]
                       AS currency,
                   1 + floor(random() * random() * 3)::int AS qty,
                   r_crypto, r_status, r_price, r_part, r_meta, random() < 0.02 AS over
            FROM bench_merchants m,
                 LATERAL (
                     SELECT g, m.joined + random() * ($2::timestamptz - m.joined) AS created_at,
                            random() AS r_customer, floor(random() * (m.invoices / 3 + 1))::int AS cno,
                            random() AS r_currency, random() AS r_crypto, random() AS r_status,
                            random() AS r_price, random() AS r_part, random() AS r_meta
                     FROM generate_series(1, m.invoices) g
                 ) draws
            OFFSET 0
        ) drawn
    ) priced
) derived
ORDER BY created_at
"""

# k payments per paid invoice from the id's random bits (mean about 2); one for a partial, an
# expired one partly paid, a late one, and an invalid one (reorged).
PAYMENTS = """
INSERT INTO payments (id, invoice_id, merchant_id, network, tx_hash, output_index, asset, amount,
    from_address, to_address, status, confirmations, required_confirmations, block_number,
    block_hash, late, detected_at, confirmed_at, created_at, updated_at)
SELECT pg_temp.uuid7(detected_at, pg_temp.slot_of(invoice_id)), invoice_id, merchant_id, network,
       tx_hash, output_index, asset, amount, from_address, to_address, status,
       CASE status WHEN 'confirmed' THEN required WHEN 'confirming' THEN 1 ELSE 0 END, required,
       block_number, CASE WHEN block_number IS NOT NULL
                          THEN '0x' || md5(network || block_number) || md5(block_number || network) END,
       late, detected_at, CASE WHEN status = 'confirmed' THEN detected_at + interval '3 minutes' END,
       detected_at, detected_at
FROM (
    SELECT *,
           CASE WHEN status = 'detected' THEN NULL
                WHEN network = 'bitcoin' THEN 800000 + floor(extract(epoch FROM detected_at) / 600)::bigint % 1000000
                ELSE 18000000 + floor(extract(epoch FROM detected_at) / 12)::bigint % 10000000 END AS block_number
    FROM (
        SELECT i.id AS invoice_id, i.merchant_id, i.network, i.crypto_currency AS asset,
               CASE WHEN i.network = 'bitcoin' THEN '' ELSE '0x' END
                   || md5(i.id::text || '/' || p) || md5(p || '/' || i.id::text) AS tx_hash,
               CASE WHEN i.crypto_currency = 'ETH' THEN -1 ELSE p END AS output_index,
               round(greatest(i.amount_paid, i.crypto_amount / 2) / k, 8) AS amount,
               '0x' || substr(md5(i.id::text || 'from' || p), 1, 40) AS from_address,
               i.payment_address AS to_address,
               CASE WHEN i.status = 'invalid' THEN 'reorged' WHEN i.status = 'paid' THEN 'confirming'
                    WHEN i.status = 'partial' THEN 'detected' ELSE 'confirmed' END AS status,
               CASE WHEN i.network = 'bitcoin' THEN 2 ELSE 12 END AS required,
               i.status = 'expired' AND i.paid_late AS late,
               CASE WHEN i.status = 'expired' AND i.paid_late THEN i.expires_at + interval '20 minutes'
                    ELSE i.created_at + (i.expires_at - i.created_at) * (p - 0.5) / (k + 1) END AS detected_at
        FROM invoices i,
             LATERAL (SELECT CASE
                 WHEN i.status = 'confirmed' THEN 1 + (b >= 108)::int + (b >= 187)::int + (b >= 228)::int
                 WHEN i.status = 'paid' THEN 1 + (b >= 128)::int
                 WHEN i.status IN ('partial', 'invalid') THEN 1
                 WHEN i.status = 'expired' THEN (i.amount_paid > 0)::int + i.paid_late::int
                 ELSE 0 END AS k
                 FROM (SELECT get_byte(uuid_send(i.id), 15) AS b) bits) counted,
             generate_series(1, k) p
    ) paid
) placed
ORDER BY detected_at
"""

AUDIT = """
INSERT INTO audit_entries (id, invoice_id, merchant_id, event, actor, timestamp, request_id, data, event_version)
SELECT pg_temp.uuid7(at, pg_temp.slot_of(invoice_id)), invoice_id, merchant_id, event, actor, at,
       request_id, data, version
FROM (
    SELECT id AS invoice_id, merchant_id, 'invoice.created' AS event, 'api_key:bench' AS actor,
           created_at AS at, 'req-' || left(md5(id::text), 12) AS request_id,
           jsonb_build_object('total', total::text, 'currency', currency,
                              'crypto_amount', crypto_amount::text, 'payment_address', payment_address) AS data,
           1 AS version
    FROM invoices
    UNION ALL
    SELECT id, merchant_id,
           CASE status WHEN 'partial' THEN 'invoice.partially_paid' ELSE 'invoice.' || status END,
           CASE status WHEN 'expired' THEN 'system:expiry' WHEN 'cancelled' THEN 'merchant:bench'
                ELSE 'system:watcher' END,
           updated_at, NULL, jsonb_build_object('status', status, 'amount_paid', amount_paid::text), 3
    FROM invoices WHERE status <> 'pending'
) entries
ORDER BY at
"""

DAILY_METRICS = """
INSERT INTO analytics.daily_metrics (merchant_id, metric_date, currency, invoices_created, invoices_paid,
    amount_created, amount_paid, conversion_rate)
SELECT merchant_id, day, currency, sum(created), sum(paid), sum(amount_created), sum(amount_paid),
       CASE WHEN sum(created) = 0 THEN 0 ELSE round(100 * sum(paid)::numeric / sum(created), 2) END
FROM (
    SELECT merchant_id, (created_at AT TIME ZONE 'UTC')::date AS day, currency, 1 AS created, 0 AS paid,
           total AS amount_created, 0 AS amount_paid
    FROM invoice.invoices
    UNION ALL
    SELECT merchant_id, (paid_at AT TIME ZONE 'UTC')::date, currency, 0, 1, 0, total
    FROM invoice.invoices WHERE status IN ('paid', 'confirmed')
) facts
GROUP BY merchant_id, day, currency
ORDER BY day
"""

PAID_INVOICES = """
INSERT INTO analytics.paid_invoices (invoice_id, merchant_id, paid_on, amount, counted, invoice_version, currency)
SELECT id, merchant_id, (coalesce(paid_at, created_at) AT TIME ZONE 'UTC')::date, total,
       status IN ('paid', 'confirmed'), 4, currency
FROM invoice.invoices WHERE paid_at IS NOT NULL OR status = 'invalid'
"""

PROFILES = """
INSERT INTO invoice.merchant_profiles (merchant_id, wallets, settings, wallets_updated_at,
    settings_updated_at, updated_at)
SELECT id, jsonb_build_object('ethereum', 'xpub-bench-' || n, 'bitcoin', 'zpub-bench-' || n),
       '{"payment_tolerance": {"underpaid_percent": "0"}}', joined, joined, joined
FROM bench_merchants;
INSERT INTO analytics.merchant_directory (merchant_id, created_at) SELECT id, joined FROM bench_merchants;
"""
