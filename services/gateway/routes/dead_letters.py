"""/v1/admin/dead-letters: events the services' projections parked, across services and shards.

The list asks every service instance for every shard at once (OpsService, libs/common/ops.py)
and merges newest first. Dead-letter ids are time-ordered UUIDs, unique across services, so one
id is the cursor for all of them: each backend returns what is older than it. A backend that
fails is reported (`complete` false), never silently left out. A retry goes to the shard its id
carries, to each service there; the one holding the id applies it.
"""

from __future__ import annotations

import asyncio
import json
import logging
import uuid
from collections.abc import Sequence

from checkout.ops.v1 import ops_pb2, ops_pb2_grpc
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

from libs.common.config import SERVICES
from services.gateway.auth import authenticate, require_operator
from services.gateway.clients import Backends
from services.gateway.errors import ApiError
from services.gateway.render import JsonObject, page
from services.gateway.state import state_of
from services.gateway.validation import Problems, Query, path_id
from services.gateway.wire import timestamp_field

log = logging.getLogger("checkout.gateway")
BACKEND_DEADLINE_SECONDS = 5.0


def _ops(backends: Backends, service: str, shard: int) -> ops_pb2_grpc.OpsServiceAsyncStub:
    return ops_pb2_grpc.OpsServiceStub(backends.channel(backends.address(service, shard)))


def render(letter: ops_pb2.DeadLetter) -> JsonObject:
    return {
        "id": letter.id,
        "service": letter.service,
        "shard": letter.shard,
        "consumer": letter.consumer,
        "projection": letter.projection,
        "event_id": letter.event_id,
        "event_type": letter.event_type,
        "error": letter.error,
        "attempts": letter.attempts,
        "first_seen_at": timestamp_field(letter, "first_seen_at"),
        "last_seen_at": timestamp_field(letter, "last_seen_at"),
        "event": json.loads(letter.envelope_json) if letter.envelope_json else None,
    }


async def list_dead_letters(request: Request) -> JSONResponse:
    caller = await authenticate(request)
    require_operator(caller)
    backends = state_of_backends(request)
    problems = Problems()
    query = Query(request.query_params, problems)
    service = query.choice("service", SERVICES)
    shard_raw = query.choice("shard", [str(s) for s in backends.shards()])
    projection = query.string("projection", max_length=100) or ""
    event_type = query.string("event_type", max_length=100) or ""
    limit = query.limit()
    cursor = query.uuid("cursor")
    problems.raise_if_any()
    services = [service] if service else list(SERVICES)
    shards = [int(shard_raw)] if shard_raw is not None else backends.shards()
    targets = [(s, n) for s in services for n in shards]
    context = caller.context(request)

    async def one(target: tuple[str, int]) -> Sequence[ops_pb2.DeadLetter] | ApiError:
        name, shard = target
        try:
            response = await backends.call(
                _ops(backends, name, shard).ListDeadLetters,
                ops_pb2.ListDeadLettersRequest(
                    shard=shard,
                    limit=limit + 1,
                    before_id=str(cursor) if cursor else "",
                    projection=projection,
                    event_type=event_type,
                ),
                context,
                deadline=BACKEND_DEADLINE_SECONDS,
            )
        except ApiError as error:
            log.warning("dead letters of %s shard %d: %s", name, shard, error.message)
            return error
        return list(response.dead_letters)

    results = await asyncio.gather(*(one(t) for t in targets))
    merged: list[ops_pb2.DeadLetter] = []
    failed: list[JsonObject] = []
    for (name, shard), result in zip(targets, results, strict=True):
        if isinstance(result, ApiError):
            failed.append(
                {"service": name, "shard": shard, "error": {"code": result.code, "message": result.message}}
            )
        else:
            merged.extend(result)
    if failed and len(failed) == len(targets):
        raise ApiError("unavailable", "no service answered")
    merged.sort(key=lambda letter: uuid.UUID(letter.id), reverse=True)
    shown = merged[:limit]
    next_cursor = shown[-1].id if len(merged) > limit else ""
    return JSONResponse(
        {**page([render(letter) for letter in shown], next_cursor), "complete": not failed, "failed": failed}
    )


async def retry_dead_letter(request: Request) -> JSONResponse:
    caller = await authenticate(request)
    require_operator(caller)
    letter_id = path_id(request, "dead letter")
    backends = state_of_backends(request)
    shard = backends.shard_of(letter_id)
    context = caller.context(request)

    async def one(service: str) -> ops_pb2.RetryDeadLetterResponse | ApiError:
        try:
            return await backends.call(
                _ops(backends, service, shard).RetryDeadLetter,
                ops_pb2.RetryDeadLetterRequest(shard=shard, id=str(letter_id)),
                context,
                deadline=BACKEND_DEADLINE_SECONDS,
            )
        except ApiError as error:
            return error

    results = await asyncio.gather(*(one(s) for s in SERVICES))
    for result in results:
        if isinstance(result, ops_pb2.RetryDeadLetterResponse):
            if not result.applied:
                # It stays parked, with one attempt more; the error says why.
                raise ApiError(
                    "failed_precondition",
                    f"the event still fails to apply: {result.dead_letter.error}"[:1000],
                )
            return JSONResponse({"applied": True, "dead_letter": render(result.dead_letter)})
    outages = [r for r in results if isinstance(r, ApiError) and r.code != "not_found"]
    if outages:
        # Not found where it was asked, but a service that may hold it did not answer.
        raise outages[0]
    raise ApiError.not_found("dead letter")


def state_of_backends(request: Request) -> Backends:
    return state_of(request).backends


routes = [
    Route("/v1/admin/dead-letters", list_dead_letters, methods=["GET"]),
    Route("/v1/admin/dead-letters/{id}/retry", retry_dead_letter, methods=["POST"]),
]
