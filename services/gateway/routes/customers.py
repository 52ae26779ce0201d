"""/v1/customers: the customers projected from a merchant's invoices (merchant key)."""

from __future__ import annotations

from checkout.customer.v1 import customer_pb2
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

from services.gateway import render
from services.gateway.auth import authenticate, require_merchant
from services.gateway.state import state_of
from services.gateway.validation import Problems, Query, path_id


async def list_customers(request: Request) -> JSONResponse:
    caller = await authenticate(request)
    merchant_id = require_merchant(caller, "customers:read")
    problems = Problems()
    query = Query(request.query_params, problems)
    email = query.string("email", max_length=320)
    limit, cursor = query.limit(), query.cursor()
    problems.raise_if_any()
    backends = state_of(request).backends
    listed = await backends.call(
        backends.customers(backends.shard_of(merchant_id)).ListCustomers,
        customer_pb2.ListCustomersRequest(
            merchant_id=str(merchant_id), email=email or "", limit=limit, cursor=cursor
        ),
        caller.context(request),
    )
    return JSONResponse(render.page([render.customer(c) for c in listed.customers], listed.next_cursor))


async def get_customer(request: Request) -> JSONResponse:
    caller = await authenticate(request)
    merchant_id = require_merchant(caller, "customers:read")
    customer_id = path_id(request, "customer")
    backends = state_of(request).backends
    customer = await backends.call(
        backends.customers(backends.shard_of(merchant_id)).GetCustomer,
        customer_pb2.GetCustomerRequest(merchant_id=str(merchant_id), customer_id=str(customer_id)),
        caller.context(request),
    )
    return JSONResponse(render.customer(customer))


async def list_customer_payments(request: Request) -> JSONResponse:
    caller = await authenticate(request)
    merchant_id = require_merchant(caller, "customers:read")
    customer_id = path_id(request, "customer")
    problems = Problems()
    query = Query(request.query_params, problems)
    limit, cursor = query.limit(), query.cursor()
    problems.raise_if_any()
    backends = state_of(request).backends
    listed = await backends.call(
        backends.customers(backends.shard_of(merchant_id)).ListCustomerPayments,
        customer_pb2.ListCustomerPaymentsRequest(
            merchant_id=str(merchant_id), customer_id=str(customer_id), limit=limit, cursor=cursor
        ),
        caller.context(request),
    )
    return JSONResponse(
        render.page([render.customer_payment(p) for p in listed.payments], listed.next_cursor)
    )


routes = [
    Route("/v1/customers", list_customers, methods=["GET"]),
    Route("/v1/customers/{id}", get_customer, methods=["GET"]),
    Route("/v1/customers/{id}/payments", list_customer_payments, methods=["GET"]),
]
