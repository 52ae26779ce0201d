"""DevServers against real servers: embedded ones it starts and stops, external ones it passes on."""

from __future__ import annotations

import asyncio
import json
import logging
import os
import socket
import subprocess
import sys
import time
import uuid
from pathlib import Path
from urllib.parse import parse_qs, urlsplit, urlunsplit

import asyncpg
import nats
import pytest
import redis.asyncio as aioredis

from tools.devservers import DevServers, Servers, free_port, free_ports

ENV_VARS = ("CHECKOUT_DATABASE_URL", "CHECKOUT_NATS_URL", "CHECKOUT_REDIS_URL")
REPO_ROOT = Path(__file__).resolve().parent.parent
DEADLINE = 15.0


def _unset_env(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ENV_VARS:
        monkeypatch.delenv(name, raising=False)


def _alive(pid: int) -> bool:
    """A zombie counts as gone: orphaned postmasters wait for init to reap them."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    return stat.rpartition(")")[2].split()[0] not in ("Z", "X")


def _wait_gone(pid: int) -> bool:
    deadline = time.monotonic() + DEADLINE
    while _alive(pid):
        if time.monotonic() > deadline:
            return False
        time.sleep(0.02)
    return True


def _port_open(port: int, host: str = "127.0.0.1") -> bool:
    try:
        with socket.create_connection((host, port), timeout=1.0):
            return True
    except OSError:
        return False


def _port(url: str) -> int:
    port = urlsplit(url).port
    assert port is not None, url
    return port


def _socket_path(database_url: str) -> Path:
    query = parse_qs(urlsplit(database_url).query)
    return Path(query["host"][0]) / f".s.PGSQL.{query.get('port', ['5432'])[0]}"


def _on_database(dsn: str, database: str) -> str:
    parts = urlsplit(dsn)
    return urlunsplit((parts.scheme, parts.netloc, "/" + database, parts.query, parts.fragment))


async def _exercise(servers: Servers) -> None:
    conn = await asyncpg.connect(servers.database_url)
    try:
        assert await conn.fetchval("SELECT 1") == 1
        await conn.execute("CREATE DATABASE x")
    finally:
        await conn.close()
    conn = await asyncpg.connect(_on_database(servers.database_url, "x"))
    try:
        assert await conn.fetchval("SELECT current_database()") == "x"
    finally:
        await conn.close()

    nc = await nats.connect(servers.nats_url)
    try:
        js = nc.jetstream()
        await js.add_stream(name="DEVSERVERS", subjects=["devservers.>"])
        ack = await js.publish("devservers.hello", b"hello")
        assert (ack.stream, ack.seq) == ("DEVSERVERS", 1)
    finally:
        await nc.close()

    client = aioredis.Redis.from_url(servers.redis_url)
    try:
        assert await client.ping()
        await client.set("devservers:key", "value")
        assert await client.get("devservers:key") == b"value"
    finally:
        await client.aclose()


def test_free_port_returns_a_loopback_port_nobody_listens_on() -> None:
    port = free_port()
    assert 0 < port < 65536
    assert not _port_open(port)


def test_ports_picked_together_are_all_different_and_nobody_listens_on_them() -> None:
    # One at a time, the kernel may hand the same port out again; a stack picks all at once.
    ports = free_ports(64)
    assert len(set(ports)) == 64
    assert all(0 < port < 65536 and not _port_open(port) for port in ports)


def test_embedded_servers_answer_and_stop_cleanly(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    _unset_env(monkeypatch)
    caplog.set_level(logging.INFO, logger="checkout.devservers")
    dev = DevServers(tmp_path)

    with dev as servers:
        pids = dev.pids
        assert set(pids) == {"postgres", "nats-server", "redis-server"}
        assert servers.nats_url.startswith("nats://127.0.0.1:")
        assert servers.redis_url.startswith("redis://127.0.0.1:") and servers.redis_url.endswith("/0")
        assert _socket_path(servers.database_url).is_socket()
        assert f"started embedded NATS on {servers.nats_url}" in caplog.text

        asyncio.run(_exercise(servers))
        psql = Path(sys.modules["pgserver"].__file__ or "").parent / "pginstall" / "bin" / "psql"
        out = subprocess.run(
            [str(psql), servers.database_url, "-tAc", "SELECT 40 + 2"],
            capture_output=True, text=True, timeout=DEADLINE, check=True,
        )  # fmt: skip
        assert out.stdout.strip() == "42"
        for name in ("nats", "redis"):
            assert (tmp_path / name / f"{name}-server.log").stat().st_size > 0

    assert dev.pids == {}
    for name, pid in pids.items():
        assert _wait_gone(pid), f"{name} (pid {pid}) still running after stop()"
    assert not _port_open(_port(servers.nats_url))
    assert not _port_open(_port(servers.redis_url))
    assert not _socket_path(servers.database_url).exists()
    dev.stop()  # idempotent


def test_persistent_postgres_data_and_jetstream_streams_survive_a_restart(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    _unset_env(monkeypatch)

    async def write(servers: Servers) -> None:
        conn = await asyncpg.connect(servers.database_url)
        try:
            await conn.execute("CREATE TABLE kept (value text)")
            await conn.execute("INSERT INTO kept VALUES ('still here')")
        finally:
            await conn.close()
        nc = await nats.connect(servers.nats_url)
        try:
            js = nc.jetstream()
            await js.add_stream(name="KEPT", subjects=["kept"])
            await js.publish("kept", b"1")
        finally:
            await nc.close()

    async def read(servers: Servers) -> tuple[str, int]:
        conn = await asyncpg.connect(servers.database_url)
        try:
            value = await conn.fetchval("SELECT value FROM kept")
        finally:
            await conn.close()
        nc = await nats.connect(servers.nats_url)
        try:
            info = await nc.jetstream().stream_info("KEPT")
        finally:
            await nc.close()
        return value, info.state.messages

    first = DevServers(tmp_path, persistent=True)
    with first as servers:
        first_pids = first.pids
        asyncio.run(write(servers))
    assert all(_wait_gone(pid) for pid in first_pids.values())

    second = DevServers(tmp_path, persistent=True)
    with second as servers:
        assert asyncio.run(read(servers)) == ("still here", 1)
        second_pids = second.pids
    assert all(_wait_gone(pid) for pid in second_pids.values())


def test_a_crashed_owners_leftover_servers_are_adopted_or_stopped_by_the_next_owner(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    _unset_env(monkeypatch)
    code = (
        "import json, sys\n"
        "from pathlib import Path\n"
        "from tools.devservers import DevServers\n"
        "dev = DevServers(Path(sys.argv[1]), persistent=True)\n"
        "dev.start()\n"
        "print(json.dumps(dev.pids), flush=True)\n"
        "sys.stdin.read()\n"
    )
    owner = subprocess.Popen(
        [sys.executable, "-c", code, str(tmp_path)],
        cwd=REPO_ROOT, stdin=subprocess.PIPE, stdout=subprocess.PIPE,
    )  # fmt: skip
    assert owner.stdout is not None and owner.stdin is not None
    try:
        orphans: dict[str, int] = json.loads(owner.stdout.readline())
    finally:
        owner.kill()  # SIGKILL: no atexit, so the servers are orphaned
        owner.wait()
        owner.stdout.close()
        owner.stdin.close()
    assert all(_alive(pid) for pid in orphans.values()), orphans

    dev = DevServers(tmp_path, persistent=True)
    with dev as servers:
        # pgserver adopts the running postmaster; NATS and Redis are replaced.
        assert dev.pids["postgres"] == orphans["postgres"]
        for name in ("nats-server", "redis-server"):
            assert _wait_gone(orphans[name]), f"leftover {name} still running"
        asyncio.run(_exercise(servers))
        pids = dev.pids
    for name, pid in pids.items():
        assert _wait_gone(pid), f"{name} (pid {pid}) still running after stop()"


def test_servers_from_the_environment_are_used_and_nothing_is_started(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, request: pytest.FixtureRequest
) -> None:
    # The "external" servers are embedded ones started here, so the test needs nothing running.
    monkeypatch.delenv("CHECKOUT_DATABASE_URL", raising=False)
    monkeypatch.delenv("CHECKOUT_NATS_URL", raising=False)
    monkeypatch.delenv("CHECKOUT_REDIS_URL", raising=False)
    external = DevServers(tmp_path / "external")
    given = external.start()
    request.addfinalizer(external.stop)
    monkeypatch.setenv("CHECKOUT_DATABASE_URL", given.database_url)
    monkeypatch.setenv("CHECKOUT_NATS_URL", given.nats_url)
    monkeypatch.setenv("CHECKOUT_REDIS_URL", given.redis_url)
    data_dir = tmp_path / "data"

    async def check(servers: Servers) -> None:
        conn = await asyncpg.connect(servers.database_url)
        try:
            assert await conn.fetchval("SELECT 1") == 1
        finally:
            await conn.close()
        nc = await nats.connect(servers.nats_url)
        try:
            stream = f"DEVSERVERS_{uuid.uuid4().hex}"
            js = nc.jetstream()
            await js.add_stream(name=stream, subjects=[f"{stream}.>"])
            try:
                assert (await js.publish(f"{stream}.x", b"x")).seq == 1
            finally:
                await js.delete_stream(stream)
        finally:
            await nc.close()
        client = aioredis.Redis.from_url(servers.redis_url)
        try:
            assert await client.ping()
        finally:
            await client.aclose()

    dev = DevServers(data_dir)
    with dev as servers:
        assert servers == given
        assert dev.pids == {}
        asyncio.run(check(servers))
    assert not data_dir.exists()


async def _replicated(servers: Servers) -> tuple[bool, int]:
    """Whether the standby is one, and what it replayed of a row written on the primary."""
    primary = await asyncpg.connect(servers.database_url)
    standby = await asyncpg.connect(servers.replica_urls[0])
    try:
        await primary.execute("CREATE TABLE replicated (n int); INSERT INTO replicated VALUES (42)")
        position = await primary.fetchval("SELECT pg_current_wal_lsn()")
        deadline = time.monotonic() + DEADLINE
        while not await standby.fetchval("SELECT pg_last_wal_replay_lsn() >= $1", position):
            assert time.monotonic() < deadline, "the standby did not replay the write"
            await asyncio.sleep(0.01)
        return await standby.fetchval("SELECT pg_is_in_recovery()"), await standby.fetchval(
            "SELECT n FROM replicated"
        )
    finally:
        await standby.close()
        await primary.close()


def test_a_streaming_standby_follows_the_embedded_primary_and_stops_with_it(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    _unset_env(monkeypatch)
    dev = DevServers(tmp_path, replicas=1)
    with dev as servers:
        [standby] = dev.standbys
        pid = standby.pid
        assert pid is not None and servers.replica_urls == (standby.url,)
        assert _socket_path(standby.url).is_socket()
        assert asyncio.run(_replicated(servers)) == (True, 42)
    assert _wait_gone(pid)
    assert not standby.pgdata.exists()


def test_standbys_of_an_external_server_are_refused_naming_the_setting(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    _unset_env(monkeypatch)
    monkeypatch.setenv("CHECKOUT_DATABASE_URL", "postgresql://someone@db.example/postgres")
    with pytest.raises(RuntimeError, match="CHECKOUT_SHARD_REPLICAS"):
        DevServers(tmp_path, replicas=1).start()
