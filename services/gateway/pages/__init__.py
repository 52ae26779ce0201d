"""The people-facing pages the gateway serves: the payer's hosted checkout page (`/pay/{id}`)
and the merchant's dashboard (`/dashboard`)."""
