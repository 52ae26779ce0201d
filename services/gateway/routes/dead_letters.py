"""/v1/admin/dead-letters: events the services' projections parked, across services and shards.

The list asks every service instance for every shard at once (OpsService, libs/common/ops.py)
and merges newest first. Dead-letter ids are time-ordered UUIDs, unique across services, so one
id is the cursor for all of them: each backend returns what is older than it. A backend that
fails is reported (`complete` false), never silently left out. A retry goes to the shard its id
carries, to each service there; the one holding the id applies it.
"""

from __future__ import annotations

import asyncio
import logging
import uuid
from collections.abc import Sequence

from checkout.ops.v1 import ops_pb2

from libs.common.config import SERVICES
from services.gateway.errors import ApiError
from services.gateway.operations import Args, Operation, Rule
from services.gateway.schemas.dead_letters import (
    BackendError,
    DeadLetter,
    DeadLetterPage,
    DeadLetterQuery,
    FailedBackend,
    RetriedDeadLetter,
)
from services.gateway.state import state_of

log = logging.getLogger("checkout.gateway")
BACKEND_DEADLINE_SECONDS = 5.0
TAG = "Operator"
SHARD_RULE = Rule(
    r"shard", r"must be one of .+", "shard: one of the configured shards (`GET /v1/admin/shards`)."
)


async def list_dead_letters(args: Args[None, DeadLetterQuery]) -> DeadLetterPage:
    q = args.query
    backends = state_of(args.request).backends
    services = [q.service] if q.service else list(SERVICES)
    shards = [q.shard] if q.shard is not None else backends.shards()
    targets = [(s, n) for s in services for n in shards]
    context = args.context()

    async def one(target: tuple[str, int]) -> Sequence[ops_pb2.DeadLetter] | ApiError:
        name, shard = target
        try:
            response = await backends.call(
                backends.ops(name, shard).ListDeadLetters,
                ops_pb2.ListDeadLettersRequest(
                    shard=shard,
                    limit=q.limit + 1,
                    before_id=q.cursor or "",
                    projection=q.projection or "",
                    event_type=q.event_type or "",
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
    failed: list[FailedBackend] = []
    for (name, shard), result in zip(targets, results, strict=True):
        if isinstance(result, ApiError):
            error = BackendError(code=result.code, message=result.message)
            failed.append(FailedBackend(service=name, shard=shard, error=error))
        else:
            merged.extend(result)
    if failed and len(failed) == len(targets):
        raise ApiError("unavailable", "no service answered")
    merged.sort(key=lambda letter: uuid.UUID(letter.id), reverse=True)
    shown = merged[: q.limit]
    return DeadLetterPage(
        data=[DeadLetter.of(letter) for letter in shown],
        next_cursor=shown[-1].id if len(merged) > q.limit else None,
        complete=not failed,
        failed=failed,
    )


async def retry_dead_letter(args: Args[None, None]) -> RetriedDeadLetter:
    letter_id = args.ids["id"]
    backends = state_of(args.request).backends
    shard = backends.shard_of(letter_id)
    context = args.context()

    async def one(service: str) -> ops_pb2.RetryDeadLetterResponse | ApiError:
        try:
            return await backends.call(
                backends.ops(service, shard).RetryDeadLetter,
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
            return RetriedDeadLetter(applied=True, dead_letter=DeadLetter.of(result.dead_letter))
    outages = [r for r in results if isinstance(r, ApiError) and r.code != "not_found"]
    if outages:
        # Not found where it was asked, but a service that may hold it did not answer.
        raise outages[0]
    raise ApiError.not_found("dead letter")


operations = [
    Operation(
        "GET", "/v1/admin/dead-letters", list_dead_letters, "Events the projections parked", TAG,
        "operator", response=DeadLetterPage, query=DeadLetterQuery, rules=(SHARD_RULE,),
        description="Every service and shard is asked at once, newest first. A backend that does not "
        "answer is listed in `failed` (`complete: false`); 503 only when none answers.",
    ),
    Operation(
        "POST", "/v1/admin/dead-letters/{id}/retry", retry_dead_letter, "Apply a parked event again", TAG,
        "operator", response=RetriedDeadLetter, errors=(404, 409),
        description="On success the dead letter is gone (200). If the event still fails it stays parked "
        "with one attempt more, and the answer is 409 with the error.",
    ),
]  # fmt: skip
