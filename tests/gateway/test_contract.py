"""The served OpenAPI document: valid OpenAPI 3.1, generated from the same declarations that
route, validate and render, and complete (every route, error, security scheme and webhook)."""

from __future__ import annotations

import re
from typing import Any

import httpx
import jsonschema
import pytest
from openapi_spec_validator import validate
from starlette.routing import Route

from libs.common import events
from libs.common.config import Config
from services.gateway.app import all_operations, create_app
from services.gateway.pages import routes as pages


@pytest.fixture(scope="module")
def document() -> dict[str, Any]:
    import orjson

    app = create_app(Config())
    doc: dict[str, Any] = orjson.loads(app.state.openapi)
    return doc


def test_the_document_is_valid_openapi_3_1(document: dict[str, Any]) -> None:
    assert document["openapi"] == "3.1.0"
    validate(document)


async def test_the_document_is_served_at_openapi_json(
    offline: httpx.AsyncClient, document: dict[str, Any]
) -> None:
    response = await offline.get("/openapi.json")
    assert response.status_code == 200 and response.headers["content-type"] == "application/json"
    assert response.json() == document


def test_every_served_route_is_documented_and_nothing_else(document: dict[str, Any]) -> None:
    served = {(op.path, op.method.lower()) for op in all_operations() if op.documented}
    documented = {(path, method) for path, item in document["paths"].items() for method in item}
    assert documented == served
    undocumented = methods_of(create_app(Config()).routes) - served
    # The docs page, the payer page's event stream, and the pages for people (HTML).
    assert undocumented == {("/docs", "get"), ("/pay/{invoice_id}/events", "get")} | methods_of(pages.routes)
    assert ("/pay/{invoice_id}", "get") in undocumented and ("/dashboard", "get") in undocumented


def methods_of(routes: list[Any]) -> set[tuple[str, str]]:
    return {
        (r.path, m.lower()) for r in routes if isinstance(r, Route) for m in (r.methods or ()) if m != "HEAD"
    }


def test_every_operation_documents_its_errors_and_credentials(document: dict[str, Any]) -> None:
    for path, item in document["paths"].items():
        for method, op in item.items():
            responses = op["responses"]
            if op["security"]:
                assert {"401", "403", "429", "503"} <= set(responses), (method, path)
            if "{" in path:
                assert {"404", "422"} <= set(responses), (method, path)
            if "requestBody" in op:
                assert {"415", "422"} <= set(responses), (method, path)
                assert "example" in op["requestBody"]["content"]["application/json"], (method, path)
            for status, response in responses.items():
                if status.startswith(("4", "5")) and op["operationId"] != "readyz":
                    target = (
                        document["components"]["responses"][response["$ref"].rsplit("/", 1)[1]]
                        if "$ref" in response
                        else response
                    )
                    assert target["content"]["application/json"]["schema"] == {
                        "$ref": "#/components/schemas/ErrorBody"
                    }


def test_both_security_schemes_and_the_error_body_are_described(document: dict[str, Any]) -> None:
    schemes = document["components"]["securitySchemes"]
    assert {name: s["scheme"] for name, s in schemes.items()} == {
        "merchantKey": "bearer",
        "operatorToken": "bearer",
    }
    error = document["components"]["schemas"]["ErrorInfo"]
    assert set(error["required"]) == {"code", "message", "details", "request_id"}


def test_every_webhook_event_is_described_with_its_signature_header(document: dict[str, Any]) -> None:
    assert set(document["webhooks"]) == set(events.WEBHOOK_EVENT_TYPES)
    paid = document["webhooks"]["invoice.paid"]["post"]
    headers = {p["name"]: p for p in paid["parameters"]}
    assert {"Checkout-Signature", "Checkout-Event-Id"} <= set(headers) and headers["Checkout-Signature"][
        "required"
    ]
    assert re.match(headers["Checkout-Signature"]["schema"]["pattern"], "t=1700000000,v1=" + "ab" * 32)
    payload = paid["requestBody"]["content"]["application/json"]["schema"]
    assert payload["required"] == ["id", "type", "created_at", "data"]
    data = document["components"]["schemas"][payload["properties"]["data"]["$ref"].rsplit("/", 1)[1]]
    assert {"invoice_id", "status", "amount_paid"} <= set(data["properties"])


def test_every_request_example_is_valid_against_its_own_schema(document: dict[str, Any]) -> None:
    checked = 0
    for item in document["paths"].values():
        for op in item.values():
            content = op.get("requestBody", {}).get("content", {}).get("application/json")
            if content is None:
                continue
            schema = {**content["schema"], "components": document["components"]}
            jsonschema.validate(content["example"], schema, cls=jsonschema.Draft202012Validator)
            checked += 1
    assert checked == sum(1 for op in all_operations() if op.body is not None)


def test_the_docs_and_the_bounds_come_from_the_one_owner_of_limits(document: dict[str, Any]) -> None:
    from libs.common import limits

    invoice = document["components"]["schemas"]["InvoiceCreate"]["properties"]
    assert invoice["title"]["maxLength"] == limits.TITLE_MAX_CHARS
    assert invoice["items"]["maxItems"] == limits.ITEMS_MAX
    quantity = document["components"]["schemas"]["LineItemIn"]["properties"]["quantity"]
    assert {"type": "integer", "minimum": 1, "maximum": int(limits.QUANTITY_MAX)} in quantity["anyOf"]


def test_invoices_link_their_payers_page_and_the_pages_live_status_is_described(
    document: dict[str, Any],
) -> None:
    invoice = document["components"]["schemas"]["Invoice"]
    assert "checkout_url" in invoice["required"] and invoice["properties"]["checkout_url"]["format"] == "uri"
    status = document["paths"]["/pay/{invoice_id}/status"]["get"]
    assert status["security"] == [] and {"404", "422", "429"} <= set(status["responses"])
    body = status["responses"]["200"]["content"]["application/json"]["schema"]
    assert body == {"$ref": "#/components/schemas/PayerStatus"}
    described = document["components"]["schemas"]["PayerStatus"]["properties"]
    assert {"status", "label", "detail", "owed", "payable", "final", "payments"} <= set(described)
