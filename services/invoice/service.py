"""The invoice service's wiring: schema, servicers, the merchant projection it consumes, and the
audit table's monthly partitions."""

from __future__ import annotations

import asyncio
from pathlib import Path

from libs.common.service import Runtime, ServiceSpec
from libs.common.supervise import Loop
from services.invoice.application import app_of
from services.invoice.grpc_api import register
from services.invoice.history import AUDIT
from services.invoice.jobs import background
from services.invoice.projections import MerchantProfiles


async def _close_on_stop(runtime: Runtime) -> None:
    # Runtime.stop cancels background tasks: that is when the merchant-service channels close.
    try:
        await asyncio.Event().wait()
    finally:
        await app_of(runtime).close()


SPEC = ServiceSpec(
    name="invoice",
    service_dir=Path(__file__).parent,
    register=register,
    projections=lambda runtime: [MerchantProfiles()],
    partitioned=[AUDIT],
    # Events stay hot: libs/common/archive.py says why.
    archived=[AUDIT],
    background=lambda runtime: [
        Loop("merchant-channels", lambda: _close_on_stop(runtime)),
        *background(runtime),
    ],
)
