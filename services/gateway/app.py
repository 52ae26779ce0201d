"""The gateway's ASGI application: routes built from the operations, the pages for people
(pages/), error rendering, the docs page, and the resources' lifetime."""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

import orjson
import swagger_ui
from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.middleware import Middleware
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import BaseRoute, Mount, Route
from starlette.staticfiles import StaticFiles

from libs.common.config import Config
from services.gateway import contract
from services.gateway.context import request_id_of
from services.gateway.errors import HTTP_STATUS, ApiError, error_response
from services.gateway.middleware import RequestMiddleware, instrument
from services.gateway.operations import Operation
from services.gateway.pages import pay
from services.gateway.pages import routes as pages
from services.gateway.pages.state import PagesState
from services.gateway.routes import (
    admin,
    analytics,
    api_keys,
    customers,
    events,
    exports,
    invoices,
    merchants,
    meta,
    refunds,
    webhooks,
)
from services.gateway.state import GatewayState

log = logging.getLogger("checkout.gateway")
SWAGGER_ASSETS = Path(swagger_ui.__file__).parent / "static"


def all_operations() -> list[Operation]:
    # Starlette tries routes in order: the reads every client polls come first.
    return [
        *invoices.operations,
        *refunds.operations,
        *pay.operations,
        *meta.operations,
        *merchants.operations,
        *api_keys.operations,
        *customers.operations,
        *analytics.operations,
        *admin.operations,
        *webhooks.operations,
        *exports.operations,
        *events.operations,
    ]


async def _api_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, ApiError)
    return error_response(exc, request_id_of(request))


async def _http_error(request: Request, exc: Exception) -> Response:
    """Starlette's own 404 / 405 (no route, wrong method) in the API's error body."""
    assert isinstance(exc, HTTPException)
    if exc.status_code == 404:
        error = ApiError("not_found", f"no endpoint at {request.url.path}")
    elif exc.status_code == 405:
        allowed = _allowed_methods(request)
        error = ApiError(
            "method_not_allowed",
            f"{request.method} is not allowed here; allowed: {', '.join(allowed)}",
            headers={"Allow": ", ".join(allowed)},
        )
    else:
        by_status = {status: code for code, status in HTTP_STATUS.items()}
        error = ApiError(by_status.get(exc.status_code, "internal"), exc.detail)
    return error_response(error, request_id_of(request))


def _allowed_methods(request: Request) -> list[str]:
    # Each method of a path is its own Route, so Starlette's Allow header names only the first.
    methods: set[str] = set()
    for route in request.app.routes:
        if isinstance(route, Route) and route.methods and route.path_regex.match(request.url.path):
            methods |= route.methods
    return sorted(methods)


def create_app(config: Config) -> Starlette:
    state = GatewayState.from_config(config)
    operations = all_operations()
    routes: list[BaseRoute] = [op.route() for op in operations]
    routes.append(Mount("/docs/assets", app=StaticFiles(directory=SWAGGER_ASSETS), name="docs-assets"))
    # The pages for people (HTML), outside the API's document: the payer's page, the dashboard.
    routes += pages.routes
    page_state = PagesState.from_config(config)
    templates: dict[object, str] = {r.endpoint: r.path for r in routes if isinstance(r, Route)}

    @asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        if not await state.cache.ping():
            log.warning("Redis at %s is unreachable; serving without the cache", config.redis_url)
        await state.start()
        try:
            yield
        finally:
            await state.close()
            await page_state.close()

    app = Starlette(
        routes=routes,
        middleware=[Middleware(RequestMiddleware, templates=templates, access_log=config.access_log)],
        exception_handlers={ApiError: _api_error, HTTPException: _http_error},
        lifespan=lifespan,
    )
    instrument(app)
    app.state.gateway = state
    app.state.pages = page_state
    # Built once: the document follows from the code, which does not change while it runs.
    app.state.openapi = orjson.dumps(contract.document(operations))
    return app
