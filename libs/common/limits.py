"""Platform limits: every bound on what a client may send, declared once.

The gateway's request models and the services' domain validation both read these names, so the
edge never accepts what a service refuses, and every column downstream (read models in other
services included) is sized to hold the largest value accepted here. Change a limit here, and
only here.
"""

from __future__ import annotations

from decimal import Decimal

# -- request shape -------------------------------------------------------------------------------
REQUEST_BODY_MAX_BYTES = 1 << 20
PAGE_LIMIT_DEFAULT = 50
PAGE_LIMIT_MAX = 200
CURSOR_MAX_CHARS = 512
SEARCH_QUERY_MAX_CHARS = 500
# A client's X-Request-Id, carried into event metadata and audit entries.
REQUEST_ID_MAX_CHARS = 128
# Checkout-Consistency-Token: a WAL position per shard (libs/common/consistency.py).
CONSISTENCY_TOKEN_MAX_CHARS = 1024
# Days one analytics query may cover.
ANALYTICS_RANGE_MAX_DAYS = 366
# Days one CSV export (GET /v1/exports/*.csv) may cover, and the metadata keys it makes columns
# of (every key is in its `metadata` column as JSON anyway).
EXPORT_RANGE_MAX_DAYS = 366
EXPORT_METADATA_COLUMNS_MAX = 100
# The event feed (GET /v1/events): the longest a long poll may wait for an event.
EVENTS_WAIT_MAX_SECONDS = 30

# -- invoices -------------------------------------------------------------------------------------
TITLE_MAX_CHARS = 200
DESCRIPTION_MAX_CHARS = 2000
ITEMS_MAX = 100
ITEM_NAME_MAX_CHARS = 200
METADATA_MAX_BYTES = 16_384
CANCEL_REASON_MAX_CHARS = 500
EMAIL_MAX_CHARS = 254
CURRENCY_CODE_MAX_CHARS = 10
CRYPTO_SYMBOL_MAX_CHARS = 20
EXPIRY_MIN_SECONDS = 60  # the default of CHECKOUT_INVOICE_MIN_EXPIRY_SECONDS (tests lower it)
EXPIRY_MAX_SECONDS = 7 * 24 * 3600
UNDERPAID_PERCENT_MAX = Decimal(50)

# Money and counts. Decimal strings carry at most MONEY_MAX_FRACTION_DIGITS places (18, the largest
# `decimals` of any supported asset) and DECIMAL_MAX_INTEGER_DIGITS integer digits (a guard that
# makes a hostile "9" * 10**6 cheap to refuse before any range check); magnitudes are bounded so
# that products and sums stay exact and fit every column that holds them. Where they land:
#   invoice   invoices.subtotal/tax/total/crypto_amount, payments.amount: NUMERIC (unbounded)
#   customer  payment_history.amount: NUMERIC (unbounded)
#   analytics paid_invoices.amount, daily_metrics.amount_created/amount_paid: NUMERIC (unbounded:
#             a day sums any number of invoices, so no precision caps it; migration 1004)
#   merchant  invoice_summaries.total/crypto_amount/amount_paid: NUMERIC (unbounded)
# so the bound that matters is the one here: TOTAL_MAX for one invoice, in its fiat currency.
MONEY_MAX_FRACTION_DIGITS = 18
DECIMAL_MAX_INTEGER_DIGITS = 30
QUANTITY_MAX = Decimal(1_000_000)
UNIT_PRICE_MAX = Decimal(1_000_000_000)
TAX_MAX = Decimal(10_000_000_000)
# The largest invoice total in fiat (10^10 units of any currency).
TOTAL_MAX = Decimal(10_000_000_000)

# -- merchants and keys ---------------------------------------------------------------------------
BUSINESS_NAME_MAX_CHARS = 200
SETTINGS_MAX_BYTES = 16_384
API_KEY_NAME_MAX_CHARS = 100
RATE_SPREAD_PERCENT_MAX = Decimal(10)

# -- webhooks and notifications --------------------------------------------------------------------
WEBHOOK_URL_MAX_CHARS = 2048
WEBHOOK_MAX_RETRIES_MAX = 20
WEBHOOK_TIMEOUT_SECONDS_MAX = 30
WEBHOOK_ALLOWED_IPS_MAX = 20
TEMPLATE_SUBJECT_MAX_CHARS = 200
TEMPLATE_BODY_MAX_CHARS = 20_000

# -- hosted pages (services/gateway/pages) ---------------------------------------------------------
# Live-status streams (server-sent events) a payer's page holds open: per client address, so one
# client cannot take every slot, and per gateway process, so open sockets stay bounded.
PAGE_STREAMS_PER_CLIENT_MAX = 10
PAGE_STREAMS_MAX = 2000
# The longest a dashboard form field (an API key at sign-in) may be; the key format is shorter.
SIGN_IN_KEY_MAX_CHARS = 200
