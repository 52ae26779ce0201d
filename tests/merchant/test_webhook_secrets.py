"""Webhook signing secrets never enter the event store, JetStream or the logs: events name a
reference, the secret is kept encrypted (services/merchant/webhooks/vault.py), and deliveries
still verify with it, with secrets written by older events, and across a key rotation (issue 9,
item 7)."""

from __future__ import annotations

import dataclasses
import datetime as dt
import logging
import uuid
from collections.abc import AsyncIterator

import asyncpg
import nats
import pytest
from checkout.merchant.v1 import events_pb2 as ev
from checkout.merchant.v1 import merchant_pb2 as pb
from cryptography.fernet import Fernet

from libs.common import ids
from libs.common.config import Config, ConfigError
from libs.common.db import migrate_shard, migrations_for
from libs.common.protoconv import timestamp
from services.merchant import projections
from services.merchant.service import SPEC
from services.merchant.webhooks import signing
from services.merchant.webhooks.projections import apply as apply_webhook_event
from services.merchant.webhooks.vault import SecretVault
from tests.common.eventsource import EventSource, event_source
from tests.common.support import poll
from tests.merchant.test_webhook_delivery import create_endpoint, new_invoice
from tests.merchant.webhook_support import Receiver, new_merchant, receiver, stub_of
from tests.services import running


@pytest.fixture
def config(config: Config) -> Config:
    return dataclasses.replace(config, webhook_allow_loopback=True, webhook_poll_seconds=0.2)


@pytest.fixture
async def source(config: Config) -> AsyncIterator[EventSource]:
    async with event_source(config) as started:
        yield started


@pytest.fixture
async def hook() -> AsyncIterator[Receiver]:
    async with receiver() as started:
        yield started


async def stream_messages(config: Config) -> list[bytes]:
    """Every message of the test's JetStream stream: headers and data, as any consumer gets them."""
    nc = await nats.connect(config.nats_url)
    try:
        js = nc.jetstream()
        state = (await js.stream_info(config.stream_name)).state
        found = []
        for seq in range(state.first_seq, state.last_seq + 1):
            msg = await js.get_msg(config.stream_name, seq)
            found.append(repr(msg.headers).encode() + b"\n" + (msg.data or b""))
        return found
    finally:
        await nc.close()


async def test_after_creating_and_rotating_no_event_stream_message_or_log_holds_the_secret(
    config: Config, source: EventSource, hook: Receiver, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    async with running(SPEC, config) as (runtime, channel):
        stub = stub_of(channel)
        merchant = await new_merchant(stub, config, tag="sealed")
        key = await stub.CreateApiKey(
            pb.CreateApiKeyRequest(
                merchant_id=str(merchant), name="k", operator=True, use_default_permissions=True
            )
        )
        await stub.VerifyApiKey(pb.VerifyApiKeyRequest(key=key.key))
        created = await create_endpoint(stub, merchant, hook.url())
        rotated = await stub.RotateWebhookSecret(
            pb.RotateWebhookSecretRequest(merchant_id=str(merchant), endpoint_id=created.endpoint.id)
        )
        secrets = [created.secret, rotated.secret]
        assert all(s.startswith("whsec_") for s in secrets)

        await new_invoice(source, merchant)
        await poll(lambda: len(hook.received) == 1, what="the webhook POST")
        got = hook.received[0]
        # Signed with the new secret, and with the old one during the overlap.
        for secret in secrets:
            signing.verify(secret, got.body, got.headers["checkout-signature"])

        pool = runtime.pool_for(merchant)
        stored = [
            f"{r['event_type']} {r['event_data']} {r['metadata']}"
            for r in await pool.fetch("SELECT event_type, event_data::text, metadata::text FROM events")
        ]
        assert any(s.startswith("webhook_endpoint.secret_rotated") for s in stored)
        read_models = [str(dict(r)) for r in await pool.fetch("SELECT * FROM webhook_endpoints")] + [
            str(bytes(r["ciphertext"])) for r in await pool.fetch("SELECT ciphertext FROM webhook_secrets")
        ]

        async def relayed() -> bool:
            return any(b"webhook_endpoint.secret_rotated" in m for m in await stream_messages(config))

        await poll(relayed, what="the merchant relay to publish the rotation")
        messages = await stream_messages(config)
        logged = [r.getMessage() for r in caplog.records] + [caplog.text]
        for secret in secrets:
            assert not [s for s in stored if secret in s], "a secret is in the event store"
            assert not [m for m in messages if secret.encode() in m], "a secret is on JetStream"
            assert not [r for r in read_models if secret in r], "a secret is stored in plaintext"
            assert not [line for line in logged if secret in line], "a secret is in the logs"
        assert not [line for line in logged if key.key in line], "an API key is in the logs"
        assert not [m for m in messages if key.key.encode() in m]


def legacy_endpoint(
    merchant_id: uuid.UUID, url: str, secret: str
) -> tuple[uuid.UUID, ev.WebhookEndpointCreated]:
    """A webhook_endpoint.created as written before secret references: the secret inside."""
    endpoint_id = ids.new_id(ids.slot_of(merchant_id))
    return endpoint_id, ev.WebhookEndpointCreated(
        endpoint_id=str(endpoint_id),
        merchant_id=str(merchant_id),
        url=url,
        events=["invoice.created"],
        secret=secret,
        max_retries=3,
        retry_backoff="exponential",
        timeout_seconds=5,
        created_at=timestamp(dt.datetime.now(dt.UTC)),
    )


async def test_an_endpoint_whose_event_holds_its_plaintext_secret_keeps_signing_and_rotates_away(
    config: Config, source: EventSource, hook: Receiver
) -> None:
    async with running(SPEC, config) as (runtime, channel):
        stub = stub_of(channel)
        merchant = await new_merchant(stub, config, tag="legacy")
        old_secret = signing.new_secret()
        endpoint_id, created = legacy_endpoint(merchant, hook.url(), old_secret)
        pool = runtime.pool_for(merchant)
        async with pool.acquire() as conn, conn.transaction():
            [stored] = await runtime.store.append(
                conn,
                aggregate_id=endpoint_id,
                aggregate_type="WebhookEndpoint",
                expected_version=0,
                new_events=[created],
            )
            await apply_webhook_event(conn, stored)
        await new_invoice(source, merchant)
        await poll(lambda: len(hook.received) == 1, what="the delivery to the old endpoint")
        signing.verify(old_secret, hook.received[0].body, hook.received[0].headers["checkout-signature"])

        rotated = await stub.RotateWebhookSecret(
            pb.RotateWebhookSecretRequest(merchant_id=str(merchant), endpoint_id=str(endpoint_id))
        )
        # A rebuild from these events (the old one with the secret inside) changes nothing.
        before = [dict(r) for r in await pool.fetch("SELECT * FROM webhook_endpoints")]
        async with pool.acquire() as conn, conn.transaction():
            await projections.rebuild(conn, runtime.store)
        assert [dict(r) for r in await pool.fetch("SELECT * FROM webhook_endpoints")] == before
        await new_invoice(source, merchant)
        await poll(lambda: len(hook.received) == 2, what="the delivery after the rotation")
        header = hook.received[1].headers["checkout-signature"]
        signing.verify(rotated.secret, hook.received[1].body, header)
        signing.verify(old_secret, hook.received[1].body, header)  # the overlap


async def test_the_migration_points_existing_endpoints_at_the_events_that_hold_their_secrets(
    config: Config,
) -> None:
    dsn, schema = config.shard_dsn(0), "merchant_secrets_migration"
    migrations = migrations_for(SPEC.service_dir)
    await migrate_shard(dsn, schema, [m for m in migrations if m.version < "1004"])
    conn = await asyncpg.connect(dsn, server_settings={"search_path": schema})
    try:
        merchant_id, endpoint_id, now = uuid.uuid4(), uuid.uuid4(), dt.datetime.now(dt.UTC)
        first, second = signing.new_secret(), signing.new_secret()
        created_id, rotated_id = uuid.uuid4(), uuid.uuid4()
        await conn.execute("CREATE TABLE events_legacy PARTITION OF events DEFAULT")
        for event_id, version, event_type, secret in (
            (created_id, 1, "webhook_endpoint.created", first),
            (rotated_id, 2, "webhook_endpoint.secret_rotated", second),
        ):
            await conn.execute(
                "INSERT INTO events (id, aggregate_id, aggregate_type, event_type, event_version, event_data) "
                "VALUES ($1, $2, 'WebhookEndpoint', $3, $4, $5)",
                event_id,
                endpoint_id,
                event_type,
                version,
                f'{{"secret": "{secret}"}}',
            )
        await conn.execute(
            "INSERT INTO merchants (id, business_name, contact_email, created_at, updated_at) "
            "VALUES ($1, 'Old', 'old@shop.test', $2, $2)",
            merchant_id,
            now,
        )
        await conn.execute(
            """INSERT INTO webhook_endpoints (id, merchant_id, url, events, secret, previous_secret,
                   previous_secret_expires_at, max_retries, retry_backoff, timeout_seconds, created_at, updated_at)
               VALUES ($1, $2, 'https://shop.example/hook', '{*}', $3, $4, $5, 3, 'linear', 5, $5, $5)""",
            endpoint_id,
            merchant_id,
            second,
            first,
            now,
        )
        assert "1004_webhook_secrets" in await migrate_shard(dsn, schema, migrations)
        row = await conn.fetchrow("SELECT * FROM webhook_endpoints")
        assert row is not None and not {"secret", "previous_secret"} & set(row.keys())
        assert (row["secret_ref"], row["previous_secret_ref"]) == (rotated_id, created_id)
        vault = SecretVault(config.webhook_secret_keys)
        assert await vault.reveal(conn, [rotated_id, created_id]) == {rotated_id: second, created_id: first}
    finally:
        await conn.close()


async def test_a_new_key_seals_and_the_old_still_opens_and_the_service_needs_one(config: Config) -> None:
    old, new = Fernet.generate_key().decode(), Fernet.generate_key().decode()
    dsn, schema = config.shard_dsn(0), "merchant_vault_keys"
    await migrate_shard(dsn, schema, migrations_for(SPEC.service_dir))
    conn = await asyncpg.connect(dsn, server_settings={"search_path": schema})
    try:
        endpoint_id, merchant_id = uuid.uuid4(), uuid.uuid4()
        sealed_old, sealed_new = uuid.uuid4(), uuid.uuid4()
        await SecretVault([old]).seal(
            conn, ref=sealed_old, endpoint_id=endpoint_id, merchant_id=merchant_id, secret="whsec_old"
        )
        rotated = SecretVault([new, old])  # a new key in front: it seals, both open
        await rotated.seal(
            conn, ref=sealed_new, endpoint_id=endpoint_id, merchant_id=merchant_id, secret="whsec_new"
        )
        assert await rotated.reveal(conn, [sealed_old, sealed_new]) == {
            sealed_old: "whsec_old",
            sealed_new: "whsec_new",
        }
        assert await SecretVault([new]).reveal(conn, [sealed_old, sealed_new]) == {sealed_new: "whsec_new"}
    finally:
        await conn.close()
    with pytest.raises(ConfigError, match="CHECKOUT_WEBHOOK_SECRET_KEYS is required"):
        SecretVault([])
    with pytest.raises(ConfigError, match="CHECKOUT_WEBHOOK_SECRET_KEYS: key 2"):
        SecretVault([new, "not-a-key"])
    assert Config.from_env({"CHECKOUT_WEBHOOK_SECRET_KEYS": f" {new} , {old} "}).webhook_secret_keys == (
        new,
        old,
    )
