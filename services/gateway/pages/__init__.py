"""The people-facing pages the gateway serves: the payer's hosted checkout page (`/pay/{id}`)
and the merchant's dashboard (`/dashboard`)."""

from services.gateway.pages.routes import routes
from services.gateway.pages.state import PagesState

__all__ = ["PagesState", "routes"]
