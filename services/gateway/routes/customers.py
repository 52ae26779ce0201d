"""/v1/customers: the customers projected from a merchant's invoices (merchant key)."""

from __future__ import annotations

from checkout.customer.v1 import customer_pb2

from services.gateway.operations import Args, Operation, Rule
from services.gateway.pagination import Page, PageQuery
from services.gateway.schemas.customers import Customer, CustomerListQuery, CustomerPayment
from services.gateway.state import state_of

TAG = "Customers"
CURSOR_RULE = Rule(r"cursor", r".+", "cursor: must be a `next_cursor` this API returned.")


async def list_customers(args: Args[None, CustomerListQuery]) -> Page[Customer]:
    q = args.query
    backends = state_of(args.request).backends
    listed = await backends.call(
        backends.customers(backends.shard_of(args.merchant_id)).ListCustomers,
        customer_pb2.ListCustomersRequest(
            merchant_id=str(args.merchant_id), email=q.email or "", limit=q.limit, cursor=q.cursor_or_empty
        ),
        args.context(),
    )
    return Page[Customer].of([Customer.of(c) for c in listed.customers], listed.next_cursor)


async def get_customer(args: Args[None, None]) -> Customer:
    backends = state_of(args.request).backends
    customer = await backends.call(
        backends.customers(backends.shard_of(args.merchant_id)).GetCustomer,
        customer_pb2.GetCustomerRequest(merchant_id=str(args.merchant_id), customer_id=str(args.ids["id"])),
        args.context(),
    )
    return Customer.of(customer)


async def list_customer_payments(args: Args[None, PageQuery]) -> Page[CustomerPayment]:
    backends = state_of(args.request).backends
    listed = await backends.call(
        backends.customers(backends.shard_of(args.merchant_id)).ListCustomerPayments,
        customer_pb2.ListCustomerPaymentsRequest(
            merchant_id=str(args.merchant_id),
            customer_id=str(args.ids["id"]),
            limit=args.query.limit,
            cursor=args.query.cursor_or_empty,
        ),
        args.context(),
    )
    return Page[CustomerPayment].of([CustomerPayment.of(p) for p in listed.payments], listed.next_cursor)


operations = [
    Operation(
        "GET", "/v1/customers", list_customers, "List customers", TAG, "merchant",
        response=Page[Customer], permission="customers:read", query=CustomerListQuery, rules=(CURSOR_RULE,),
    ),
    Operation(
        "GET", "/v1/customers/{id}", get_customer, "Read a customer", TAG, "merchant",
        response=Customer, permission="customers:read", errors=(404,),
    ),
    Operation(
        "GET", "/v1/customers/{id}/payments", list_customer_payments, "A customer's payment history", TAG,
        "merchant", response=Page[CustomerPayment], permission="customers:read", query=PageQuery,
        errors=(404,), rules=(CURSOR_RULE,),
    ),
]  # fmt: skip
