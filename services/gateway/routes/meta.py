"""Liveness, readiness, metrics and the OpenAPI document."""

from __future__ import annotations

import asyncio

from grpc_health.v1 import health_pb2
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from services.gateway.clients import Backends
from services.gateway.context import CallContext, request_id_of
from services.gateway.errors import ApiError
from services.gateway.openapi import DOCUMENT
from services.gateway.state import state_of

HEALTH_DEADLINE_SECONDS = 2.0
SERVING = "SERVING"


async def healthz(request: Request) -> JSONResponse:
    return JSONResponse({"status": "ok"})


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


async def readyz(request: Request) -> JSONResponse:
    backends = state_of(request).backends
    context = CallContext(request_id_of(request), "gateway")
    served = backends.addresses()
    # One check per address: locally every shard of a service shares one server.
    statuses = await asyncio.gather(*(_check(backends, a, context) for a in served))
    checks = [
        {"service": service, "shard": shard, "address": address, "status": status}
        for (address, pairs), status in zip(served.items(), statuses, strict=True)
        for service, shard in pairs
    ]
    down = [c for c in checks if c["status"] != SERVING]
    if down:
        return JSONResponse({"status": "unavailable", "checks": checks, "down": down}, 503)
    return JSONResponse({"status": "ready", "checks": checks})


async def prometheus(request: Request) -> Response:
    return Response(generate_latest(), media_type=CONTENT_TYPE_LATEST)


async def openapi(request: Request) -> JSONResponse:
    return JSONResponse(DOCUMENT)


routes = [
    Route("/healthz", healthz, methods=["GET"]),
    Route("/readyz", readyz, methods=["GET"]),
    Route("/metrics", prometheus, methods=["GET"]),
    Route("/openapi.json", openapi, methods=["GET"]),
]
