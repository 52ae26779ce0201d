"""The customer service's composition root: schema, and what `build` makes for a runtime (the
servicer over its application and the projections it consumes)."""

from pathlib import Path

from libs.common.composition import Built, ServiceSpec
from libs.common.service import Runtime
from services.customer.application import CustomerApp
from services.customer.grpc_api import register
from services.customer.projections import CustomersProjection, PaymentHistoryProjection


def build(runtime: Runtime) -> Built:
    app = CustomerApp(runtime)
    return Built(
        register=lambda server: register(server, app),
        projections=[CustomersProjection(), PaymentHistoryProjection()],
    )


SPEC = ServiceSpec(
    name="customer",
    service_dir=Path(__file__).parent,
    build=build,
)
