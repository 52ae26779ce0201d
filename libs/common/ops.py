"""OpsService: the operator's calls every service runtime serves the same way (dead letters,
a shard's usage).

The gateway fans out to every service and shard and merges (services/gateway/routes/admin.py).
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Sequence
from typing import TYPE_CHECKING

import grpc
from checkout.ops.v1 import ops_pb2 as pb
from checkout.ops.v1 import ops_pb2_grpc

from libs.common import balance, deadletters, limits
from libs.common.errors import InvalidArgument, NotFound
from libs.common.protoconv import timestamp

if TYPE_CHECKING:
    from libs.common.consumer import ProjectionConsumer
    from libs.common.service import Runtime

SERVICE_NAME = pb.DESCRIPTOR.services_by_name["OpsService"].full_name


def to_proto(letter: deadletters.DeadLetter, service: str, shard: int) -> pb.DeadLetter:
    return pb.DeadLetter(
        id=str(letter.id),
        service=service,
        shard=shard,
        consumer=letter.consumer,
        projection=letter.projection,
        event_id=str(letter.event_id),
        event_type=letter.event_type,
        error=letter.error,
        attempts=letter.attempts,
        first_seen_at=timestamp(letter.first_seen_at),
        last_seen_at=timestamp(letter.last_seen_at),
        envelope_json=json.dumps(letter.envelope, separators=(",", ":")),
    )


def _id(raw: str, field: str) -> uuid.UUID:
    try:
        return uuid.UUID(raw)
    except ValueError:
        raise InvalidArgument.field(field, "must be a UUID") from None


class OpsServicer(ops_pb2_grpc.OpsServiceServicer):
    def __init__(self, runtime: Runtime) -> None:
        self.rt = runtime

    async def ListDeadLetters(
        self,
        request: pb.ListDeadLettersRequest,
        context: grpc.aio.ServicerContext[pb.ListDeadLettersRequest, pb.ListDeadLettersResponse],
    ) -> pb.ListDeadLettersResponse:
        pool = self.rt.shard_pool(request.shard)
        if not 1 <= request.limit <= limits.PAGE_LIMIT_MAX:
            raise InvalidArgument.field("limit", f"must be between 1 and {limits.PAGE_LIMIT_MAX}")
        before = _id(request.before_id, "before_id") if request.before_id else None
        async with pool.acquire() as conn:
            letters = await deadletters.listing(
                conn,
                limit=request.limit,
                before=before,
                projection=request.projection,
                event_type=request.event_type,
            )
        return pb.ListDeadLettersResponse(
            dead_letters=[to_proto(letter, self.rt.spec.name, request.shard) for letter in letters]
        )

    async def RetryDeadLetter(
        self,
        request: pb.RetryDeadLetterRequest,
        context: grpc.aio.ServicerContext[pb.RetryDeadLetterRequest, pb.RetryDeadLetterResponse],
    ) -> pb.RetryDeadLetterResponse:
        pool = self.rt.shard_pool(request.shard)
        letter_id = _id(request.id, "id")
        async with pool.acquire() as conn:
            letter = await deadletters.fetch(conn, letter_id)
        consumer = self._consumer(letter.projection, request.shard) if letter else None
        result = await consumer.retry_parked(letter_id) if consumer else None
        if result is None:
            raise NotFound(f"dead letter {letter_id} not found")
        return pb.RetryDeadLetterResponse(
            applied=result.applied, dead_letter=to_proto(result.letter, self.rt.spec.name, request.shard)
        )

    async def GetShardUsage(
        self,
        request: pb.GetShardUsageRequest,
        context: grpc.aio.ServicerContext[pb.GetShardUsageRequest, pb.GetShardUsageResponse],
    ) -> pb.GetShardUsageResponse:
        async with self.rt.shard_pool(request.shard).acquire() as conn:
            usage = await balance.shard_usage(conn, self.rt.spec.name)
        return pb.GetShardUsageResponse(
            rows=usage.rows,
            bytes=usage.bytes,
            slots=[pb.SlotUsage(slot=s, rows=n) for s, n in sorted(usage.slot_rows.items())],
        )

    def _consumer(self, projection: str, shard: int) -> ProjectionConsumer | None:
        return next(
            (c for c in self.rt.consumers if c.projection.name == projection and c.shard == shard), None
        )


def register_ops(server: grpc.aio.Server, runtime: Runtime) -> Sequence[str]:
    ops_pb2_grpc.add_OpsServiceServicer_to_server(OpsServicer(runtime), server)
    return [SERVICE_NAME]
