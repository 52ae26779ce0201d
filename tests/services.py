"""Run services in-process on free ports, for tests that talk gRPC to a real service."""

from __future__ import annotations

import dataclasses
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import grpc

from libs.common.config import Config
from libs.common.service import Runtime, ServiceSpec


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
