"""The invoice service's composition root: schema, the audit table's monthly partitions, and what
`build` makes for a runtime. One `InvoiceApp` serves the gRPC calls and backs the expiry job and
the chain watchers; its merchant-service channels and rate client close when the service stops."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from libs.common.composition import Built, ServiceSpec
from libs.common.service import Runtime
from services.invoice.application import InvoiceApp
from services.invoice.grpc_api import register
from services.invoice.history import AUDIT
from services.invoice.jobs import background
from services.invoice.projections import MerchantProfiles


@dataclass(frozen=True, kw_only=True)
class InvoiceBuilt(Built):
    app: InvoiceApp


def build(runtime: Runtime) -> InvoiceBuilt:
    app = InvoiceApp(runtime)
    return InvoiceBuilt(
        register=lambda server: register(server, app),
        projections=[MerchantProfiles()],
        background=background(runtime, app),
        close=[app.close],
        app=app,
    )


SPEC = ServiceSpec(
    name="invoice",
    service_dir=Path(__file__).parent,
    build=build,
    partitioned=[AUDIT],
    # Events stay hot: libs/common/archive.py says why.
    archived=[AUDIT],
)
