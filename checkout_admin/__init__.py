"""`checkout-admin`: the operator's command line (merchants, keys, shards, dead letters,
projection rebuilds, exports)."""
