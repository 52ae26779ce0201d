"""The merchant service's wiring: schema, servicers and (later) the consumers it runs."""

from pathlib import Path

from libs.common.service import ServiceSpec
from services.merchant.grpc_api import register

SPEC = ServiceSpec(name="merchant", service_dir=Path(__file__).parent, register=register)
