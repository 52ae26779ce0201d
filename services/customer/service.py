"""The customer service's wiring: schema, servicers and the projections it consumes."""

from pathlib import Path

from libs.common.service import ServiceSpec
from services.customer.grpc_api import register
from services.customer.projections import CustomersProjection, PaymentHistoryProjection

SPEC = ServiceSpec(
    name="customer",
    service_dir=Path(__file__).parent,
    register=register,
    projections=lambda runtime: [CustomersProjection(), PaymentHistoryProjection()],
)
