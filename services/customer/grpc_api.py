"""CustomerService over gRPC: the one place that knows the service's protobuf. Each method maps
its request to the application's plain values and the answer (views.py) to its message
(libs/common/views.py); errors are mapped to gRPC statuses by the shared interceptor."""

from __future__ import annotations

from collections.abc import Sequence

import grpc
from checkout.customer.v1 import customer_pb2 as pb
from checkout.customer.v1 import customer_pb2_grpc

from libs.common.views import to_message
from services.customer.application import CustomerApp
from services.customer.requests import CustomerQuery, PaymentQuery


class CustomerServicer(customer_pb2_grpc.CustomerServiceServicer):
    def __init__(self, app: CustomerApp) -> None:
        self.app = app

    async def GetCustomer(
        self,
        request: pb.GetCustomerRequest,
        context: grpc.aio.ServicerContext[pb.GetCustomerRequest, pb.Customer],
    ) -> pb.Customer:
        return to_message(await self.app.get_customer(request.merchant_id, request.customer_id), pb.Customer)

    async def ListCustomers(
        self,
        request: pb.ListCustomersRequest,
        context: grpc.aio.ServicerContext[pb.ListCustomersRequest, pb.ListCustomersResponse],
    ) -> pb.ListCustomersResponse:
        query = CustomerQuery(request.merchant_id, request.email, request.limit, request.cursor)
        page = await self.app.list_customers(query)
        return pb.ListCustomersResponse(
            customers=[to_message(c, pb.Customer) for c in page.items], next_cursor=page.next_cursor
        )

    async def ListCustomerPayments(
        self,
        request: pb.ListCustomerPaymentsRequest,
        context: grpc.aio.ServicerContext[pb.ListCustomerPaymentsRequest, pb.ListCustomerPaymentsResponse],
    ) -> pb.ListCustomerPaymentsResponse:
        query = PaymentQuery(request.merchant_id, request.customer_id, request.limit, request.cursor)
        page = await self.app.list_customer_payments(query)
        return pb.ListCustomerPaymentsResponse(
            payments=[to_message(p, pb.CustomerPayment) for p in page.items], next_cursor=page.next_cursor
        )


def register(server: grpc.aio.Server, app: CustomerApp) -> Sequence[str]:
    customer_pb2_grpc.add_CustomerServiceServicer_to_server(CustomerServicer(app), server)
    return [pb.DESCRIPTOR.services_by_name["CustomerService"].full_name]
