"""The gateway's HTTP speed against a bare Starlette app returning the same bytes (issue 10).

In one process tree: the whole stack (`tools.devstack.Stack`: four services and the gateway, as
`make up` runs them) and a bare Starlette app under the same uvicorn (uvloop, httptools) that
answers every request with the bytes the gateway answered. The two are measured interleaved,
A/B/A/B, so a noisy neighbour on this shared machine hits both, and the figures are medians of
the rounds and ratios of those medians:

- `GET /v1/invoices/{id}` and `GET /v1/checkout/{id}` at 16 connections: requests/s and p99;
- one sequential client: p50 of a point lookup;
- `POST /v1/invoices` at 16 connections across 16 merchants, and all on one merchant, beside a
  bare POST that reads the body and echoes the invoice's bytes.

The load (tools/http_load.py) comes from `wrk` (Debian's `wrk` package) when it is on the PATH,
from a Python load generator in its own process otherwise (it says so; its own cost makes every
ratio look better for the gateway than wrk's would, so install wrk for figures worth quoting).

    python -m tools.bench_http [--rounds 5] [--seconds 4] [--only post] [--profile DIR]

`--only get|post` measures one kind of row; `--profile DIR` first records py-spy on the gateway
under the lookup load (`gateway-get.txt`) and on the gateway and the invoice service under the
16-merchant create load (`gateway-post.txt`, `invoice-post.txt`).
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import textwrap
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from tools.devservers import DevServers, Servers, free_port
from tools.devstack import DEMO_ETHEREUM_XPUB, Stack, free_stack_ports, request
from tools.http_load import Load, load

ROOT = Path(__file__).resolve().parent.parent
CONNECTIONS = 16
INVOICE = {
    "title": "Bench",
    "items": [{"name": "Beans", "quantity": 2, "unit_price": "12.50"}],
    "currency": "USD",
    "crypto_currency": "ETH",
}
# Limits far above what the bench sends: it measures the path, not the limiter refusing.
UNLIMITED = {
    "CHECKOUT_RATE_LIMIT_FREE": "100000000/minute",
    "CHECKOUT_RATE_LIMIT_CHECKOUT": "100000000/minute",
    "CHECKOUT_RATE_LIMIT_AUTH_FAILURES": "100000000/minute",
}

BARE_APP = """
import os, sys
from pathlib import Path
from starlette.applications import Starlette
from starlette.responses import Response
from starlette.routing import Route
import uvicorn

get_body = Path(sys.argv[2]).read_bytes()
post_body = Path(sys.argv[3]).read_bytes()

async def get(request):
    return Response(get_body, media_type="application/json")

async def post(request):
    await request.body()
    return Response(post_body, status_code=201, media_type="application/json")

app = Starlette(routes=[Route("/{path:path}", get, methods=["GET"]), Route("/{path:path}", post, methods=["POST"])])
uvicorn.run(app, host="127.0.0.1", port=int(sys.argv[1]), loop="uvloop", http="httptools",
            log_level="warning", access_log=False)
"""


# -- the processes --------------------------------------------------------------------------------


@contextmanager
def bare_app(get_body: bytes, post_body: bytes, directory: Path) -> Iterator[str]:
    (directory / "get.json").write_bytes(get_body)
    (directory / "post.json").write_bytes(post_body)
    (directory / "bare.py").write_text(textwrap.dedent(BARE_APP))
    port = free_port()
    process = subprocess.Popen(
        [
            sys.executable,
            str(directory / "bare.py"),
            str(port),
            str(directory / "get.json"),
            str(directory / "post.json"),
        ],
        cwd=ROOT,
        start_new_session=True,
    )
    try:
        base = f"http://127.0.0.1:{port}"
        deadline = time.monotonic() + 30
        while True:
            try:
                request(base, "GET", "/ready", "")
                break
            except OSError:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.1)
        yield base
    finally:
        os.killpg(process.pid, signal.SIGTERM)
        process.wait(10)


def _median(loads: list[Load]) -> dict[str, float]:
    return {
        "rps": round(statistics.median(x.rps for x in loads), 1),
        "p50_ms": round(statistics.median(x.p50_ms for x in loads), 2),
        "p99_ms": round(statistics.median(x.p99_ms for x in loads), 2),
        "non_2xx": sum(x.non_2xx for x in loads),
    }


def ab(
    name: str,
    gateway: str,
    bare: str,
    *,
    rounds: int,
    seconds: float,
    connections: int,
    method: str = "GET",
    keys: list[str],
    body: str = "",
) -> dict[str, Any]:
    """Interleaved rounds of the same load on both; medians and their ratios."""
    runs: dict[str, list[Load]] = {"gateway": [], "bare": []}
    for _ in range(rounds):
        for target, base in (("bare", bare), ("gateway", gateway)):
            runs[target].append(
                load(
                    base + name.split(" ", 1)[1],
                    method=method,
                    keys=keys,
                    body=body,
                    connections=connections,
                    seconds=seconds,
                )
            )
    g, b = _median(runs["gateway"]), _median(runs["bare"])
    return {
        "connections": connections,
        "gateway": g,
        "bare_starlette": b,
        "rps_ratio": round(g["rps"] / b["rps"], 3),
        "p99_ratio": round(g["p99_ms"] / b["p99_ms"], 2),
    }


def _merchant(stack: Stack) -> tuple[str, str]:
    status, merchant = request(stack.base_url, "POST", "/v1/merchants", stack.admin_token, {
        "business_name": "Bench", "contact_email": f"bench-{uuid.uuid4().hex[:8]}@example.com",
        "wallets": {"ethereum": DEMO_ETHEREUM_XPUB}})  # fmt: skip
    assert status == 201, merchant
    status, key = request(
        stack.base_url,
        "POST",
        f"/v1/merchants/{merchant['id']}/api-keys",
        stack.admin_token,
        {"name": "bench"},
    )
    assert status == 201, key
    return merchant["id"], key["key"]


GET_ROWS = ("invoice_get", "checkout_get", "invoice_get_sequential")
POST_ROWS = ("invoice_post_16_merchants", "invoice_post_one_merchant")


def run(
    rounds: int = 5, seconds: float = 4.0, profile: Path | None = None, only: str | None = None
) -> dict[str, Any]:
    if not shutil.which("wrk"):
        print(
            "bench_http: wrk is not installed (apt-get install wrk); measuring with the Python load "
            "generator, whose own cost flatters the gateway's ratios",
            file=sys.stderr,
        )
    with tempfile.TemporaryDirectory() as tmp_name, DevServers(Path(tmp_name) / "servers") as servers:
        return _run(servers, Path(tmp_name), rounds, seconds, profile, only)


def _run(
    servers: Servers, tmp: Path, rounds: int, seconds: float, profile: Path | None, only: str | None
) -> dict[str, Any]:
    http_port, grpc_ports = free_stack_ports()
    stack = Stack(servers, http_port=http_port, grpc_ports=grpc_ports,
                  admin_token=uuid.uuid4().hex, log_dir=tmp / "logs", extra_env=UNLIMITED)  # fmt: skip
    stack.start()
    try:
        merchants = [_merchant(stack) for _ in range(CONNECTIONS)]
        key = merchants[0][1]
        status, invoice = request(stack.base_url, "POST", "/v1/invoices", key, INVOICE)
        assert status == 201, invoice
        with urllib_get(stack.base_url + f"/v1/invoices/{invoice['id']}", key) as get_bytes:
            pass
        with bare_app(get_bytes, json.dumps(invoice).encode(), tmp) as bare:
            gw = stack.base_url
            invoice_path = f"/v1/invoices/{invoice['id']}"
            checkout_path = f"/v1/checkout/{invoice['id']}"
            body = json.dumps(INVOICE)
            keys = [k for _, k in merchants]
            if profile is not None:
                profile.mkdir(parents=True, exist_ok=True)
                _profile(stack, ["gateway"], gw + invoice_path, "GET", [key], "", profile / "{}-get.txt")
                _profile(stack, ["gateway", "invoice"], gw + "/v1/invoices", "POST", keys, body,
                         profile / "{}-post.txt")  # fmt: skip
            generator = "wrk" if shutil.which("wrk") else "python (wrk not found: apt-get install wrk)"
            results: dict[str, Any] = {
                "load_generator": generator,
                "rounds": rounds,
                "seconds_per_round": seconds,
            }
            if only in (None, "get"):
                results["invoice_get"] = ab(
                    f"GET {invoice_path}",
                    gw,
                    bare,
                    rounds=rounds,
                    seconds=seconds,
                    connections=CONNECTIONS,
                    keys=[key],
                )
                results["checkout_get"] = ab(
                    f"GET {checkout_path}",
                    gw,
                    bare,
                    rounds=rounds,
                    seconds=seconds,
                    connections=CONNECTIONS,
                    keys=[],
                )
                results["invoice_get_sequential"] = ab(
                    f"GET {invoice_path}", gw, bare, rounds=rounds, seconds=seconds, connections=1, keys=[key]
                )
            if only in (None, "post"):
                results["invoice_post_16_merchants"] = ab("POST /v1/invoices", gw, bare, rounds=rounds, seconds=seconds,
                                                          connections=CONNECTIONS, method="POST", keys=keys, body=body)  # fmt: skip
                results["invoice_post_one_merchant"] = ab("POST /v1/invoices", gw, bare, rounds=rounds, seconds=seconds,
                                                          connections=CONNECTIONS, method="POST", keys=[key], body=body)  # fmt: skip
        results["targets"] = targets(results)
        return results
    finally:
        stack.stop()


def targets(results: dict[str, Any]) -> dict[str, Any]:
    """Issue 10's bar for the lookups, issue 11's for creates, for the rows that were measured."""
    met: dict[str, Any] = {}
    if "invoice_get" in results:
        met["get"] = {
            "rps_ratio_min": 0.35,
            "p99_ratio_max": 3.0,
            "sequential_p50_ms_max": 3.0,
            "met": all(
                results[n]["rps_ratio"] >= 0.35 and results[n]["p99_ratio"] <= 3.0
                for n in ("invoice_get", "checkout_get")
            )
            and results["invoice_get_sequential"]["gateway"]["p50_ms"] < 3.0,
        }
    if "invoice_post_16_merchants" in results:
        many, one = (
            results["invoice_post_16_merchants"]["gateway"],
            results["invoice_post_one_merchant"]["gateway"],
        )
        met["post"] = {
            "rps_16_merchants_min": 300,
            "rps_one_merchant_min": 150,
            "p99_ms_max": 100,
            "met": many["rps"] >= 300 and one["rps"] >= 150 and max(many["p99_ms"], one["p99_ms"]) < 100,
        }
    return met


@contextmanager
def urllib_get(url: str, key: str) -> Iterator[bytes]:
    import urllib.request

    with urllib.request.urlopen(
        urllib.request.Request(url, headers={"Authorization": f"Bearer {key}"}), timeout=10
    ) as r:
        yield r.read()


def _profile(
    stack: Stack, services: list[str], url: str, method: str, keys: list[str], body: str, out: Path
) -> None:
    """py-spy's view of `services` (the `{}` of `out` is each one's name) under one load."""
    py_spy = str(Path(sys.executable).parent / "py-spy")
    spies = []
    for name in services:
        pid, output = str(stack.processes[name].pid), str(out).format(name)
        command = [py_spy, "record", "--pid", pid, "--duration", "8", "--format", "raw", "--output", output]
        spies.append(subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL))
    time.sleep(1)
    load(url, method=method, keys=keys, body=body, connections=CONNECTIONS, seconds=8)
    for spy in spies:
        spy.wait(30)


def table(results: dict[str, Any]) -> str:
    rows = [
        "| load | gateway req/s | bare req/s | ratio | gateway p50 / p99 ms | bare p50 / p99 ms |",
        "|---|---|---|---|---|---|",
    ]
    for name in (*GET_ROWS, *POST_ROWS):
        if name not in results:
            continue
        r = results[name]
        g, b = r["gateway"], r["bare_starlette"]
        rows.append(f"| {name} ({r['connections']} conn) | {g['rps']:.0f} | {b['rps']:.0f} | {r['rps_ratio']:.2f}x "
                    f"| {g['p50_ms']:.2f} / {g['p99_ms']:.2f} | {b['p50_ms']:.2f} / {b['p99_ms']:.2f} |")  # fmt: skip
    return "\n".join(rows)


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m tools.bench_http")
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--seconds", type=float, default=4.0)
    parser.add_argument("--only", choices=("get", "post"), help="measure only these rows")
    parser.add_argument("--profile", type=Path, help="write py-spy profiles into this directory")
    parser.add_argument("--out", type=Path, default=ROOT / "bench-results" / "bench_http.json")
    args = parser.parse_args()
    results = run(args.rounds, args.seconds, args.profile, args.only)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(results, indent=2) + "\n")
    print(json.dumps(results, indent=2))
    print(table(results))


if __name__ == "__main__":
    main()
