"""The whole stack over HTTP, as the e2e tests use it (their fixtures, not a copy of them)."""

from tests.e2e.conftest import http, operator

__all__ = ["http", "operator"]
