"""CustomerService over gRPC: thin adapters onto the application (errors are mapped by the
shared interceptor)."""

from __future__ import annotations

from collections.abc import Sequence

import grpc
from checkout.customer.v1 import customer_pb2 as pb
from checkout.customer.v1 import customer_pb2_grpc

from services.customer.application import CustomerApp


class CustomerServicer(customer_pb2_grpc.CustomerServiceServicer):
    def __init__(self, app: CustomerApp) -> None:
        self.app = app

    async def GetCustomer(
        self,
        request: pb.GetCustomerRequest,
        context: grpc.aio.ServicerContext[pb.GetCustomerRequest, pb.Customer],
    ) -> pb.Customer:
        return await self.app.get_customer(request)

    async def ListCustomers(
        self,
        request: pb.ListCustomersRequest,
        context: grpc.aio.ServicerContext[pb.ListCustomersRequest, pb.ListCustomersResponse],
    ) -> pb.ListCustomersResponse:
        return await self.app.list_customers(request)

    async def ListCustomerPayments(
        self,
        request: pb.ListCustomerPaymentsRequest,
        context: grpc.aio.ServicerContext[pb.ListCustomerPaymentsRequest, pb.ListCustomerPaymentsResponse],
    ) -> pb.ListCustomerPaymentsResponse:
        return await self.app.list_customer_payments(request)


def register(server: grpc.aio.Server, app: CustomerApp) -> Sequence[str]:
    customer_pb2_grpc.add_CustomerServiceServicer_to_server(CustomerServicer(app), server)
    return [pb.DESCRIPTOR.services_by_name["CustomerService"].full_name]
