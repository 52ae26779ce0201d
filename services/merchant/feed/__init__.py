"""The event feed: a merchant's invoice events, numbered gaplessly per merchant (GET /v1/events)."""
