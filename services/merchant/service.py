"""The merchant service's wiring: schema, servicers, and the invoice events it consumes to
deliver webhooks and notifications (plus the loops that send them)."""

from pathlib import Path

from libs.common.service import ServiceSpec
from services.merchant.grpc_api import register
from services.merchant.webhooks.delivery import dispatcher_of
from services.merchant.webhooks.projections import InvoiceEvents

SPEC = ServiceSpec(
    name="merchant",
    service_dir=Path(__file__).parent,
    register=register,
    projections=lambda runtime: [InvoiceEvents()],
    after_commit=lambda runtime: dispatcher_of(runtime).after_commit,
    background=lambda runtime: dispatcher_of(runtime).loops(),
    # Keys, merchants and webhooks are read from the primary: a revoke or an edit counts at once.
    replica_reads=False,
)
