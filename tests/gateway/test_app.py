"""The HTTP surface with every service down: what the gateway answers on its own, before (or
instead of) asking a service."""

from __future__ import annotations

import uuid

import httpx
import pytest

from services.gateway.auth import is_operator_token
from tests.gateway.conftest import bearer


def assert_error_body(response: httpx.Response, status: int, code: str) -> dict[str, object]:
    assert response.status_code == status
    body = response.json()
    assert set(body) == {"error"}
    error = body["error"]
    assert set(error) == {"code", "message", "details", "request_id"}
    assert error["code"] == code
    assert error["request_id"] == response.headers["X-Request-Id"]
    assert isinstance(error, dict)
    return error


async def test_healthz_answers_ok(offline: httpx.AsyncClient) -> None:
    response = await offline.get("/healthz")
    assert response.status_code == 200
    assert response.json() == {"status": "ok"}


async def test_every_response_carries_a_generated_request_id(offline: httpx.AsyncClient) -> None:
    response = await offline.get("/healthz")
    assert uuid.UUID(response.headers["X-Request-Id"]).version == 4


async def test_the_clients_request_id_is_echoed(offline: httpx.AsyncClient) -> None:
    response = await offline.get("/healthz", headers={"X-Request-Id": "client-abc-123"})
    assert response.headers["X-Request-Id"] == "client-abc-123"


async def test_an_unsafe_request_id_is_replaced_not_echoed(offline: httpx.AsyncClient) -> None:
    response = await offline.get("/healthz", headers={"X-Request-Id": "a b"})
    assert response.headers["X-Request-Id"] != "a b"


async def test_an_unknown_route_is_a_404_error_body(offline: httpx.AsyncClient) -> None:
    response = await offline.get("/v1/nothing-here", headers={"X-Request-Id": "r-404"})
    error = assert_error_body(response, 404, "not_found")
    assert error["request_id"] == "r-404"


async def test_a_wrong_method_is_a_405_error_body_naming_the_allowed_ones(
    offline: httpx.AsyncClient,
) -> None:
    response = await offline.put("/v1/merchants")
    assert_error_body(response, 405, "method_not_allowed")
    assert response.headers["Allow"] == "GET, HEAD, POST"


async def test_invoices_without_authorization_is_a_401_error_body(
    offline: httpx.AsyncClient,
) -> None:
    response = await offline.get("/v1/invoices")
    assert_error_body(response, 401, "unauthenticated")
    assert response.headers["WWW-Authenticate"].startswith("Bearer")


@pytest.mark.parametrize("header", ["Basic abc", "Bearer", "Bearer ck_sk_nothex_secret", "Bearer "])
async def test_a_malformed_bearer_is_a_401(offline: httpx.AsyncClient, header: str) -> None:
    response = await offline.get("/v1/invoices", headers={"Authorization": header})
    assert_error_body(response, 401, "unauthenticated")


def test_an_empty_admin_token_never_matches() -> None:
    assert not is_operator_token("", "")
    assert not is_operator_token("anything", "")
    assert is_operator_token("test-admin", "test-admin")


async def test_a_valid_looking_key_with_the_merchant_service_down_is_a_503(
    offline: httpx.AsyncClient,
) -> None:
    key = f"ck_sk_{uuid.uuid4().hex}_{'s' * 43}"
    response = await offline.get("/v1/invoices", headers=bearer(key))
    assert_error_body(response, 503, "unavailable")


async def test_an_operator_on_a_merchant_endpoint_is_a_403(
    offline: httpx.AsyncClient, operator: dict[str, str]
) -> None:
    response = await offline.get("/v1/invoices", headers=operator)
    assert_error_body(response, 403, "permission_denied")


async def test_malformed_json_is_a_422_naming_the_body(
    offline: httpx.AsyncClient, operator: dict[str, str]
) -> None:
    response = await offline.post(
        "/v1/merchants", content=b"{not json", headers={**operator, "Content-Type": "application/json"}
    )
    error = assert_error_body(response, 422, "invalid_argument")
    details = error["details"]
    assert isinstance(details, list) and [d["field"] for d in details] == ["body"]


async def test_a_missing_contact_email_is_a_422_before_anything_is_minted(
    offline: httpx.AsyncClient, operator: dict[str, str]
) -> None:
    response = await offline.post(
        "/v1/merchants", json={"business_name": "Shop", "contact_email": 5}, headers=operator
    )
    error = assert_error_body(response, 422, "invalid_argument")
    assert error["details"] == [{"field": "contact_email", "reason": "must be a string"}]


async def test_a_malformed_id_is_a_422_naming_the_path_parameter(offline: httpx.AsyncClient) -> None:
    response = await offline.get("/v1/checkout/not-a-uuid")
    error = assert_error_body(response, 422, "invalid_argument")
    assert error["details"] == [{"field": "invoice_id", "reason": "must be an id (a lowercase UUID string)"}]


async def test_a_service_that_is_down_is_a_503(offline: httpx.AsyncClient) -> None:
    response = await offline.get(f"/v1/checkout/{uuid.uuid4()}")
    assert_error_body(response, 503, "unavailable")


async def test_metrics_count_requests_by_route_template(offline: httpx.AsyncClient) -> None:
    await offline.get(f"/v1/checkout/{uuid.uuid4()}")
    text = (await offline.get("/metrics")).text
    assert 'route="/v1/checkout/{invoice_id}"' in text
    assert "gateway_http_request_duration_seconds_bucket" in text


async def test_readyz_is_503_naming_what_is_down(offline: httpx.AsyncClient) -> None:
    response = await offline.get("/readyz")
    assert response.status_code == 503
    body = response.json()
    assert body["status"] == "unavailable"
    assert {(c["service"], c["shard"]) for c in body["down"]} == {
        (service, shard) for service in ("merchant", "invoice", "customer", "analytics") for shard in (0, 1)
    }


async def test_the_index_links_the_docs_and_the_document(offline: httpx.AsyncClient) -> None:
    body = (await offline.get("/")).json()
    assert (body["docs"], body["openapi"]) == ("/docs", "/openapi.json")


async def test_the_docs_page_is_swagger_ui_served_from_local_assets(offline: httpx.AsyncClient) -> None:
    page = await offline.get("/docs")
    assert page.status_code == 200 and page.headers["content-type"].startswith("text/html")
    assert 'url: "/openapi.json"' in page.text
    # Every script and stylesheet the page loads is served by the gateway itself: no CDN.
    import re

    assets = re.findall(r'(?:src|href)="([^"]+)"', page.text)
    assert assets and all(a.startswith("/docs/assets/") for a in assets)
    for asset in assets:
        served = await offline.get(asset)
        assert served.status_code == 200 and len(served.content) > 100, asset
    bundle = await offline.get("/docs/assets/swagger-ui-bundle.js")
    assert b"SwaggerUIBundle" in bundle.content
