"""Run services in-process on free ports, for tests that talk gRPC to a real service."""

from __future__ import annotations

import dataclasses
from collections.abc import AsyncIterator, Callable, Sequence
from contextlib import asynccontextmanager

import grpc

from libs.common.composition import Built, ServiceSpec
from libs.common.config import Config
from libs.common.consumer import Projection
from libs.common.service import Runtime


@asynccontextmanager
async def running(spec: ServiceSpec, config: Config) -> AsyncIterator[tuple[Runtime, grpc.aio.Channel]]:
    runtime = Runtime(spec, dataclasses.replace(config, grpc_listen="127.0.0.1:0"))
    await runtime.start()
    assert runtime.server is not None
    channel = grpc.aio.insecure_channel(runtime.server.address)
    try:
        yield runtime, channel
    finally:
        await channel.close(grace=None)
        await runtime.stop()


def with_projections(
    spec: ServiceSpec, change: Callable[[Sequence[Projection]], Sequence[Projection]]
) -> ServiceSpec:
    """`spec` built as usual, except for the projections it consumes: `change` of its own."""

    def build(runtime: Runtime) -> Built:
        built = spec.build(runtime)
        return dataclasses.replace(built, projections=change(built.projections))

    return dataclasses.replace(spec, build=build)
