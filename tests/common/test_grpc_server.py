"""Every service server answers gRPC reflection and health for each of its services by name, so
`grpcurl -plaintext <address> list` and `describe` work."""

from __future__ import annotations

import asyncio

import grpc
from google.protobuf.descriptor_pool import DescriptorPool
from grpc_health.v1 import health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha.proto_reflection_descriptor_database import ProtoReflectionDescriptorDatabase

from libs.common.config import Config
from tests.platform import platform

# What each service serves besides health and reflection (a checkout.*.v1 name per servicer).
EXPECTED = {
    "merchant": {"checkout.merchant.v1.MerchantService", "checkout.ops.v1.OpsService"},
    "invoice": {"checkout.invoice.v1.InvoiceService", "checkout.ops.v1.OpsService"},
    "customer": {"checkout.customer.v1.CustomerService", "checkout.ops.v1.OpsService"},
    "analytics": {"checkout.analytics.v1.AnalyticsService", "checkout.ops.v1.OpsService"},
}


def _reflect(address: str) -> dict[str, list[str]]:
    """What a reflection client (grpcurl's way) learns: each service and its methods."""
    with grpc.insecure_channel(address) as channel:
        database = ProtoReflectionDescriptorDatabase(channel)
        pool = DescriptorPool(database)
        return {
            name: [m.name for m in pool.FindServiceByName(name).methods] for name in database.get_services()
        }


async def test_reflection_lists_and_describes_every_checkout_service_and_health_answers_each(
    config: Config,
) -> None:
    described: dict[str, dict[str, list[str]]] = {}
    async with platform(config) as p:
        for name, runtime in p.runtimes.items():
            assert runtime.server is not None
            # The synchronous reflection client in a thread: the server runs on this loop.
            services = described[name] = await asyncio.to_thread(_reflect, runtime.server.address)
            checkout = {s for s in services if s.startswith("checkout.")}
            assert checkout >= EXPECTED[name], (name, sorted(services))
            assert "grpc.health.v1.Health" in services
            assert all(services[s] for s in checkout), services  # each one describes its methods
            health = health_pb2_grpc.HealthStub(p.channels[name])
            for service in checkout:
                reply = await health.Check(health_pb2.HealthCheckRequest(service=service))
                assert reply.status == health_pb2.HealthCheckResponse.SERVING, (name, service)
    assert "CreateInvoice" in described["invoice"]["checkout.invoice.v1.InvoiceService"]
