"""Liveness, readiness, metrics, the OpenAPI document and its docs page, and the index."""

from __future__ import annotations

import asyncio

from grpc_health.v1 import health_pb2
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from pydantic import Field
from starlette.responses import HTMLResponse, Response

from services.gateway.clients import Backends
from services.gateway.context import CallContext, request_id_of
from services.gateway.errors import ApiError
from services.gateway.operations import Args, Operation, Reply
from services.gateway.schemas.base import ResponseModel
from services.gateway.state import state_of

HEALTH_DEADLINE_SECONDS = 2.0
SERVING = "SERVING"
TAG = "Meta"


class Health(ResponseModel):
    status: str = Field(json_schema_extra={"enum": ["ok"]})


class Check(ResponseModel):
    service: str
    shard: int
    address: str
    status: str = Field(description="SERVING, NOT_SERVING, or why it could not be asked (unavailable, ...).")


class Readiness(ResponseModel):
    status: str = Field(json_schema_extra={"enum": ["ready", "unavailable"]})
    checks: list[Check]
    down: list[Check] | None = None


class Index(ResponseModel):
    name: str
    docs: str = Field(description="Interactive documentation (Swagger UI).")
    openapi: str
    health: str


async def index(args: Args[None, None]) -> Index:
    return Index(name="checkout gateway", docs="/docs", openapi="/openapi.json", health="/healthz")


async def healthz(args: Args[None, None]) -> Health:
    return Health(status="ok")


async def _check(backends: Backends, address: str, context: CallContext) -> str:
    """The overall health of the server at `address`, or why it could not be asked."""
    try:
        response = await backends.call(
            backends.health(address).Check,
            health_pb2.HealthCheckRequest(service=""),
            context,
            deadline=HEALTH_DEADLINE_SECONDS,
        )
    except ApiError as error:
        return error.code
    return str(health_pb2.HealthCheckResponse.ServingStatus.Name(response.status))


async def readyz(args: Args[None, None]) -> Reply:
    backends = state_of(args.request).backends
    context = CallContext(request_id_of(args.request), "gateway")
    served = backends.addresses()
    # One check per address: locally every shard of a service shares one server.
    statuses = await asyncio.gather(*(_check(backends, a, context) for a in served))
    checks = [
        Check(service=service, shard=shard, address=address, status=status)
        for (address, pairs), status in zip(served.items(), statuses, strict=True)
        for service, shard in pairs
    ]
    down = [c for c in checks if c.status != SERVING]
    if down:
        return Reply(Readiness(status="unavailable", checks=checks, down=down), status=503)
    return Reply(Readiness(status="ready", checks=checks))


async def prometheus(args: Args[None, None]) -> Response:
    return Response(generate_latest(), media_type=CONTENT_TYPE_LATEST)


async def openapi(args: Args[None, None]) -> Response:
    return Response(args.request.app.state.openapi, media_type="application/json")


async def docs(args: Args[None, None]) -> HTMLResponse:
    return HTMLResponse(DOCS_PAGE)


# Swagger UI from the swagger-ui-py package's own files (mounted at /docs/assets by app.py).
DOCS_PAGE = """<!doctype html>
<html lang="en">
<head>
  <meta charset="utf-8">
  <title>Checkout API</title>
  <link rel="stylesheet" href="/docs/assets/swagger-ui.css">
  <link rel="icon" type="image/png" href="/docs/assets/favicon-32x32.png">
</head>
<body>
  <div id="swagger-ui"></div>
  <script src="/docs/assets/swagger-ui-bundle.js"></script>
  <script>
    window.ui = SwaggerUIBundle({
      url: "/openapi.json",
      dom_id: "#swagger-ui",
      deepLinking: true,
      persistAuthorization: true,
      tryItOutEnabled: true,
      displayRequestDuration: true,
    });
  </script>
</body>
</html>
"""

operations = [
    Operation("GET", "/", index, "Where things are", TAG, "none", response=Index),
    Operation("GET", "/healthz", healthz, "Liveness: the gateway runs", TAG, "none", response=Health),
    Operation(
        "GET", "/readyz", readyz, "Readiness: every shard of every service serves", TAG, "none",
        response=Readiness, errors=(503,),
    ),
    Operation(
        "GET", "/metrics", prometheus, "Prometheus metrics", TAG, "none", media_type=CONTENT_TYPE_LATEST,
    ),
    Operation("GET", "/openapi.json", openapi, "This document", TAG, "none", media_type="application/json"),
    Operation("GET", "/docs", docs, "Interactive docs", TAG, "none", media_type="text/html", documented=False),
]  # fmt: skip
