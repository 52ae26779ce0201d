"""Consistency tokens through the gateway: a merchant that sends its write's token back reads that
write, from the replica once it has replayed that far, else from the primary; the cache never
answers with an entry older than the token."""

from __future__ import annotations

import uuid

from libs.common.consistency import HEADER, Token
from libs.common.replica_config import ROLES
from tests.common.support import poll
from tests.replicas.conftest import PlatformFactory

# Long enough that the paused replica keeps serving reads that carry no token for the whole
# test: only the token can send a merchant's read to the primary.
PATIENT = {**{name: role.max_lag_seconds for name, role in ROLES.items()}, "read": 60.0, "customer": 60.0}


async def test_with_replay_paused_a_merchant_reading_with_its_token_always_sees_its_write(
    platform_factory: PlatformFactory,
) -> None:
    async with platform_factory(replica_max_lag=PATIENT) as p:
        _, key = await p.merchant()
        await p.replicas_serving()
        await p.replicated.pause()
        for _ in range(3):
            created = await p.create_invoice(key)
            token = created.headers[HEADER]
            invoice_id = created.json()["id"]

            got = await p.http.get(f"/v1/invoices/{invoice_id}", headers={**key, HEADER: token})
            assert got.status_code == 200, got.text
            assert got.json()["id"] == invoice_id
            listed = await p.http.get("/v1/invoices", headers={**key, HEADER: token})
            assert invoice_id in [i["id"] for i in listed.json()["data"]]
            view = await p.http.get(f"/v1/checkout/{invoice_id}", headers={HEADER: token})
            assert view.status_code == 200, view.text

            # Without the token the paused replica answers, as the tolerance allows: no invoice.
            untokened = await p.http.get("/v1/invoices", headers=key)
            assert invoice_id not in [i["id"] for i in untokened.json()["data"]]
        served = p.invoice.replicas.reads
        assert (
            sum(n for (_, _, by, reason), n in served.items() if by == "primary" and reason == "token") >= 9
        )


async def test_a_token_the_replica_has_replayed_is_served_by_the_replica(
    platform_factory: PlatformFactory,
) -> None:
    async with platform_factory() as p:
        _, key = await p.merchant()
        created = await p.create_invoice(key)
        token = created.headers[HEADER]
        await p.replicas_serving()
        before = p.invoice.replicas.reads.copy()
        got = await p.http.get("/v1/invoices", headers={**key, HEADER: token})
        assert created.json()["id"] in [i["id"] for i in got.json()["data"]]
        after = p.invoice.replicas.reads
        assert sum(after.values()) - sum(before.values()) == 1
        shard = p.invoice.shard_of(uuid.UUID(created.json()["merchant_id"]))
        assert (after - before).keys() == {(shard, "read", "replica", "fresh")}


async def test_every_write_answers_with_a_token_naming_its_shard(platform_factory: PlatformFactory) -> None:
    async with platform_factory() as p:
        merchant_id, key = await p.merchant()
        created = await p.create_invoice(key)
        cancelled = await p.http.post(f"/v1/invoices/{created.json()['id']}/cancel", json={}, headers=key)
        assert cancelled.status_code == 200, cancelled.text
        shard = p.invoice.shard_of(merchant_id)
        first = Token.parse(created.headers[HEADER])
        second = Token.parse(cancelled.headers[HEADER])
        assert set(first.positions) == set(second.positions) == {shard}
        assert second.positions[shard] > first.positions[shard]
        # A read is not a write: it answers without one.
        got = await p.http.get(f"/v1/invoices/{created.json()['id']}", headers=key)
        assert HEADER not in got.headers


async def test_a_retried_create_answers_with_a_token_too(platform_factory: PlatformFactory) -> None:
    async with platform_factory() as p:
        _, key = await p.merchant()
        headers = {**key, "Idempotency-Key": "retry-1"}
        first = await p.http.post(
            "/v1/invoices",
            json={
                "title": "t",
                "items": [{"name": "x", "quantity": "1", "unit_price": "1.00"}],
                "currency": "USD",
                "crypto_currency": "ETH",
            },
            headers=headers,
        )
        again = await p.http.post(
            "/v1/invoices",
            json={
                "title": "t",
                "items": [{"name": "x", "quantity": "1", "unit_price": "1.00"}],
                "currency": "USD",
                "crypto_currency": "ETH",
            },
            headers=headers,
        )
        assert first.status_code == again.status_code == 201
        assert again.json()["id"] == first.json()["id"]
        assert (
            Token.parse(again.headers[HEADER]).positions.keys()
            == Token.parse(first.headers[HEADER]).positions.keys()
        )


async def test_the_cache_never_answers_with_an_entry_older_than_the_token(
    platform_factory: PlatformFactory,
) -> None:
    async with platform_factory(replica_max_lag=PATIENT) as p:
        _, key = await p.merchant()
        invoice_id = (await p.create_invoice(key)).json()["id"]
        await p.replicas_serving()
        assert (await p.http.get(f"/v1/invoices/{invoice_id}", headers=key)).json()["status"] == "pending"
        await p.replicated.pause()
        cancelled = await p.http.post(f"/v1/invoices/{invoice_id}/cancel", json={}, headers=key)
        assert cancelled.status_code == 200, cancelled.text
        token = cancelled.headers[HEADER]
        # A read without the token may come from the paused replica (within its tolerance) and
        # see the invoice pending; it must not leave that older copy where the token's read looks.
        stale = await p.http.get(f"/v1/invoices/{invoice_id}", headers=key)
        assert stale.json()["status"] == "pending"
        fresh = await p.http.get(f"/v1/invoices/{invoice_id}", headers={**key, HEADER: token})
        assert fresh.json()["status"] == "cancelled"
        again = await p.http.get(f"/v1/invoices/{invoice_id}", headers={**key, HEADER: token})
        assert again.json()["status"] == "cancelled"


async def test_a_malformed_token_is_refused_naming_the_header(platform_factory: PlatformFactory) -> None:
    async with platform_factory() as p:
        _, key = await p.merchant()
        for bad in (
            "nonsense",
            "v1:",
            "v1:0=xyz",
            "v1:0=1,0=2",
            "v1:" + ",".join(f"{n}=1" for n in range(100)),
        ):
            response = await p.http.get("/v1/invoices", headers={**key, HEADER: bad})
            assert response.status_code == 422, (bad, response.text)
            assert response.json()["error"]["details"][0]["field"] == HEADER


async def test_the_gateways_memory_keeps_no_replica_answer_older_than_the_invoices_last_event(
    platform_factory: PlatformFactory,
) -> None:
    async with platform_factory(replica_max_lag=PATIENT) as p:
        _, key = await p.merchant()
        invoice_id = (await p.create_invoice(key)).json()["id"]
        await p.replicas_serving()
        assert (await p.http.get(f"/v1/checkout/{invoice_id}")).json()["status"] == "pending"
        await p.replicated.pause()
        generation = p.gateway.views.generation(uuid.UUID(invoice_id))
        cancelled = await p.http.post(f"/v1/invoices/{invoice_id}/cancel", json={}, headers=key)
        assert cancelled.status_code == 200, cancelled.text
        # The cancel's own route and then its event on NATS: the gateway has heard of the change.
        await poll(
            lambda: p.gateway.views.generation(uuid.UUID(invoice_id)) >= generation + 2, what="the event"
        )
        # The paused replica may answer (within the tolerance) with the invoice still pending...
        assert (await p.http.get(f"/v1/checkout/{invoice_id}")).json()["status"] == "pending"
        await p.replicated.resume()
        await p.replicas_serving()
        # ...but that older answer was not kept: once the replica has the cancel, so does the page.
        assert (await p.http.get(f"/v1/checkout/{invoice_id}")).json()["status"] == "cancelled"
