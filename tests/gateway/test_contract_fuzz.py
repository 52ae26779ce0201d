"""Generated requests against the real stack (schemathesis, a fixed seed, bounded): the services
in-process and the gateway served over HTTP by uvicorn, as in production.

For every operation, schema-valid requests (with real ids of this merchant's resources, and with
random ones) and schema-invalid ones. What must hold, across all of them:
- no 5xx;
- every response (status, headers, body) is one the document describes;
- an invalid request is refused (4xx);
- a valid request is never refused for a reason the document does not state: a 4xx that is not
  401/403/404/409/429 is a 422 whose every violation is one of the rules documented with that
  operation's 422 (`x-rules`: what the JSON Schema cannot express, e.g. a total of 0 after
  rounding).
"""

from __future__ import annotations

import asyncio
import re
import threading
from collections import Counter
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any, cast

import httpx
import pytest
import requests
import schemathesis
import uvicorn
from hypothesis import HealthCheck, Phase, given, seed, settings
from hypothesis.errors import Unsatisfiable
from schemathesis import GenerationMode
from schemathesis.checks import not_a_server_error
from schemathesis.core.failures import FailureGroup
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    negative_data_rejection,
    response_headers_conformance,
    response_schema_conformance,
    status_code_conformance,
)

from services.gateway.app import create_app
from tests.gateway.conftest import INVOICE, Platform, bearer, new_key, new_merchant
from tools.devservers import free_port

SEED = 20261125
POSITIVE_PER_OPERATION = 10
NEGATIVE_PER_OPERATION = 4
ACCEPTED = {401, 403, 404, 409, 429}
CHECKS = [
    not_a_server_error,
    status_code_conformance,
    content_type_conformance,
    response_headers_conformance,
    response_schema_conformance,
    negative_data_rejection,
]


@dataclass
class Tally:
    cases: int = 0
    by_status: Counter[int] = field(default_factory=Counter)
    failures: list[str] = field(default_factory=list)


@pytest.fixture
async def served(platform: Platform) -> AsyncIterator[str]:
    """The gateway over real HTTP (uvicorn, httptools), with limits high enough for the run."""
    config = platform.gateway_config(
        rate_limit_free="1000000/minute",
        rate_limit_auth_failures="1000000/minute",
        rate_limit_checkout="1000000/minute",
    )
    port = free_port()
    server = uvicorn.Server(
        uvicorn.Config(
            create_app(config),
            host="127.0.0.1",
            port=port,
            http="httptools",
            lifespan="on",
            log_config=None,
            access_log=False,
        )
    )
    task = asyncio.create_task(server.serve())
    while not server.started:
        await asyncio.sleep(0.01)
    yield f"http://127.0.0.1:{port}"
    server.should_exit = True
    await task


async def resources(base: str, operator: dict[str, str]) -> tuple[dict[str, str], dict[str, dict[str, str]]]:
    """A merchant with every permission and one of each resource, and the ids to try per path."""
    async with httpx.AsyncClient(base_url=base, timeout=30) as client:
        merchant = await new_merchant(client, operator)
        spare_key = await new_key(client, operator, merchant.id)
        spare = (await client.get("/v1/api-keys", headers=bearer(spare_key))).json()["data"]
        spare_id = next(k["id"] for k in spare if k["prefix"] == spare_key[:14])
        invoice = (
            await client.post(
                "/v1/invoices", json={**INVOICE, "customer_email": "fuzz@example.com"}, headers=merchant.auth
            )
        ).json()
        endpoint = (
            await client.post(
                "/v1/webhook-endpoints",
                json={"url": "http://127.0.0.1:9/x", "events": ["*"], "max_retries": 0},
                headers=merchant.auth,
            )
        ).json()
        template = (
            await client.post(
                "/v1/notification-templates",
                json={"event_type": "invoice.paid", "subject": "Paid", "body_template": "Thanks"},
                headers=merchant.auth,
            )
        ).json()
    ids = {
        "/v1/merchants/": {"id": merchant.id},
        "/v1/api-keys/": {"id": spare_id},
        "/v1/invoices/": {"id": invoice["id"]},
        "/v1/checkout/": {"invoice_id": invoice["id"]},
        "/pay/": {"invoice_id": invoice["id"]},
        "/v1/customers/": {"id": invoice["customer_id"]},
        "/v1/webhook-endpoints/": {"id": endpoint["id"]},
        "/v1/notification-templates/": {"id": template["id"]},
    }
    return {
        "merchantKey": merchant.key,
        "operatorToken": operator["Authorization"].removeprefix("Bearer "),
    }, ids


def credentials(operation: Any, tokens: dict[str, str]) -> dict[str, str]:
    security = operation.definition.raw.get("security") or []
    # The operator may act for any merchant: with real merchant ids its answers are real ones.
    names = [name for requirement in security for name in requirement]
    if not names:
        return {}
    name = "operatorToken" if "operatorToken" in names else names[0]
    return {"Authorization": f"Bearer {tokens[name]}"}


def rule_matches(operation: Any, response: Any) -> bool:
    if response.status_code != 422:
        return False
    rules = operation.definition.raw["responses"].get("422", {}).get("x-rules", [])
    details = response.json()["error"]["details"]
    return bool(details) and all(
        any(re.match(r["field"], d["field"]) and re.match(r["reason"], d["reason"]) for r in rules)
        for d in details
    )


@dataclass
class Runner:
    base: str
    tally: Tally
    session: requests.Session
    lock: threading.Lock

    def exercise(
        self, operation: Any, mode: GenerationMode, strategy: Any, examples: int, headers: dict[str, str]
    ) -> None:
        @seed(SEED)
        @settings(
            max_examples=examples,
            database=None,
            deadline=None,
            phases=[Phase.explicit, Phase.generate],
            suppress_health_check=list(HealthCheck),
        )
        @given(case=strategy)
        def one(case: Any) -> None:
            self.check(operation, mode, case, headers)

        try:
            one()
        except Unsatisfiable:
            # Nothing of this operation can be made invalid (no parameters, no body).
            if mode != GenerationMode.NEGATIVE:
                raise

    def check(self, operation: Any, mode: GenerationMode, case: Any, headers: dict[str, str]) -> None:
        case.headers = {**dict(case.headers or {}), **headers}
        response = case.call(base_url=self.base, session=self.session, timeout=30)
        tally = self.tally
        with self.lock:
            tally.cases += 1
            tally.by_status[response.status_code] += 1
        try:
            case.validate_response(response, checks=CHECKS)
        except FailureGroup as failures:
            tally.failures.append(
                f"{operation.label} [{mode}]: {failures.exceptions[0].title}: {response.status_code} "
                f"{response.text[:300]} (query={case.query}, body={str(case.body)[:200]})"
            )
        refused = 400 <= response.status_code < 500 and response.status_code not in ACCEPTED
        if mode == GenerationMode.POSITIVE and refused and not rule_matches(operation, response):
            tally.failures.append(
                f"{operation.label}: a valid request was refused: {response.status_code} "
                f"{response.text[:400]} (query={case.query}, body={str(case.body)[:300]})"
            )


def run(base: str, document: dict[str, Any], tokens: dict[str, str], ids: dict[str, dict[str, str]]) -> Tally:
    schema = schemathesis.openapi.from_dict(document)
    runner = Runner(base, Tally(), requests.Session(), threading.Lock())
    for result in schema.get_all_operations():
        operation = cast(Any, result).ok()
        headers = credentials(operation, tokens)
        real = next((v for prefix, v in ids.items() if operation.path.startswith(prefix)), None)
        runner.exercise(
            operation,
            GenerationMode.POSITIVE,
            operation.as_strategy(GenerationMode.POSITIVE),
            POSITIVE_PER_OPERATION,
            headers,
        )
        if real is not None:
            strategy = operation.as_strategy(GenerationMode.POSITIVE, path_parameters=real)
            runner.exercise(operation, GenerationMode.POSITIVE, strategy, POSITIVE_PER_OPERATION, headers)
        runner.exercise(
            operation,
            GenerationMode.NEGATIVE,
            operation.as_strategy(GenerationMode.NEGATIVE),
            NEGATIVE_PER_OPERATION,
            headers,
        )
    return runner.tally


# Hypothesis draws in a worker thread while this process's event loop serves the platform, whose
# libraries (nats-py, the services' jitter) use the random module's shared state: hypothesis sees
# that state move during a draw and warns about strategies using `random`, which ours do not.
@pytest.mark.filterwarnings("ignore:Do not use the `random` module inside strategies")
async def test_generated_requests_get_only_documented_answers_and_no_5xx(
    served: str, platform: Platform, operator: dict[str, str]
) -> None:
    tokens, ids = await resources(served, operator)
    async with httpx.AsyncClient(base_url=served) as client:
        document = (await client.get("/openapi.json")).json()
    tally = await asyncio.to_thread(run, served, document, tokens, ids)
    summary = f"{tally.cases} cases, statuses {dict(sorted(tally.by_status.items()))}"
    assert tally.cases >= 500, summary
    assert not [s for s in tally.by_status if s >= 500], summary
    assert tally.failures == [], "\n".join([summary, *tally.failures[:40]])
    print(summary)
