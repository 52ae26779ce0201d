"""Every route of the hosted pages: the payer's checkout page, the dashboard, their assets. The
payer page's live endpoints are API operations (pay.operations), routed with the others."""

from __future__ import annotations

from starlette.routing import BaseRoute, Route

from services.gateway.pages import dash_invoices, dash_overview, dash_settings, dashboard, html, pay, refund

routes: list[BaseRoute] = [
    *pay.routes,
    *refund.routes,
    Route("/dashboard/login", dashboard.sign_in_page, methods=["GET"]),
    Route("/dashboard/login", dashboard.sign_in, methods=["POST"]),
    Route("/dashboard/logout", dashboard.sign_out, methods=["POST"]),
    *dash_overview.routes,
    *dash_invoices.routes,
    *dash_settings.routes,
    *html.routes,
]
