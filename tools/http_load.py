"""HTTP load for the benchmarks: `wrk` when it is on the PATH, else a Python generator.

`load` runs one fixed load (method, body, one API key per connection) against a URL for some
seconds and returns requests/s, p50, p99 and the count of non-2xx answers. The Python generator
runs in its own process (`python -m tools.http_load SPEC`) so its cost is not charged to the
processes measured; it still costs the machine more than wrk does, so prefer wrk for figures.
"""

from __future__ import annotations

import asyncio
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


@dataclass(frozen=True)
class Load:
    rps: float
    p50_ms: float
    p99_ms: float
    non_2xx: int


WRK_SCRIPT = """
local keys = {%(keys)s}
local body = %(body)s
local counter = 0
function setup(thread)
  counter = counter + 1
  thread:set("key", keys[((counter - 1) %% #keys) + 1])
end
function init(args)
  wrk.method = "%(method)s"
  if body ~= "" then wrk.body = body end
  wrk.headers["Content-Type"] = "application/json"
  if key ~= "" then wrk.headers["Authorization"] = "Bearer " .. key end
end
"""


def _lua_string(text: str) -> str:
    return json.dumps(text)  # a JSON string literal is a valid Lua string literal here


def wrk(url: str, *, method: str, keys: list[str], body: str, connections: int, seconds: float) -> Load:
    with tempfile.NamedTemporaryFile("w", suffix=".lua", delete=False) as script:
        script.write(
            WRK_SCRIPT
            % {
                "keys": ", ".join(_lua_string(k) for k in keys or [""]),
                "body": _lua_string(body),
                "method": method,
            }
        )
    try:
        threads = connections if len(keys) > 1 else min(2, connections)
        out = subprocess.run(
            [
                "wrk",
                f"-t{threads}",
                f"-c{connections}",
                f"-d{max(1, round(seconds))}s",
                "--latency",
                "-s",
                script.name,
                url,
            ],
            capture_output=True,
            text=True,
            check=True,
        ).stdout
    finally:
        os.unlink(script.name)
    return Load(
        rps=float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1)),  # type: ignore[union-attr]
        p50_ms=_ms(re.search(r"50%\s+([\d.]+\w+)", out).group(1)),  # type: ignore[union-attr]
        p99_ms=_ms(re.search(r"99%\s+([\d.]+\w+)", out).group(1)),  # type: ignore[union-attr]
        non_2xx=int(m.group(1)) if (m := re.search(r"Non-2xx or 3xx responses:\s+(\d+)", out)) else 0,
    )


def _ms(text: str) -> float:
    value, unit = re.fullmatch(r"([\d.]+)(\w+)", text).groups()  # type: ignore[union-attr]
    return float(value) * {"us": 0.001, "ms": 1.0, "s": 1000.0, "m": 60000.0}[unit]


async def generate(
    url: str, method: str, keys: list[str], body: str, connections: int, seconds: float
) -> Load:
    """Keep-alive HTTP/1.1 over raw sockets, one coroutine per connection (no client library:
    its parsing would cost more than the servers' own)."""
    host, port, path = re.fullmatch(r"http://([^:/]+):(\d+)(/.*)", url).groups()  # type: ignore[union-attr]
    samples: list[float] = []
    bad = 0
    deadline = time.perf_counter() + seconds

    async def connection(n: int) -> None:
        nonlocal bad
        reader, writer = await asyncio.open_connection(host, int(port))
        key = keys[n % len(keys)] if keys else ""
        head = f"{method} {path} HTTP/1.1\r\nHost: {host}\r\nContent-Type: application/json\r\n"
        if key:
            head += f"Authorization: Bearer {key}\r\n"
        raw = (head + f"Content-Length: {len(body.encode())}\r\n\r\n").encode() + body.encode()
        while time.perf_counter() < deadline:
            started = time.perf_counter()
            writer.write(raw)
            status_line = await reader.readline()
            length = 0
            while (line := await reader.readline()) not in (b"\r\n", b""):
                if line.lower().startswith(b"content-length:"):
                    length = int(line.split(b":")[1])
            await reader.readexactly(length)
            samples.append((time.perf_counter() - started) * 1000)
            if not status_line.split(b" ")[1].startswith(b"2"):
                bad += 1
        writer.close()

    begin = time.perf_counter()
    await asyncio.gather(*(connection(n) for n in range(connections)))
    elapsed = time.perf_counter() - begin
    ordered = sorted(samples)
    return Load(
        rps=len(samples) / elapsed,
        p50_ms=ordered[len(ordered) // 2],
        p99_ms=ordered[min(len(ordered) - 1, int(len(ordered) * 0.99))],
        non_2xx=bad,
    )


def python_load(
    url: str, *, method: str, keys: list[str], body: str, connections: int, seconds: float
) -> Load:
    """The Python generator, in its own process so it does not share the measured processes'."""
    spec = json.dumps(
        {
            "url": url,
            "method": method,
            "keys": keys,
            "body": body,
            "connections": connections,
            "seconds": seconds,
        }
    )
    out = subprocess.run(
        [sys.executable, "-m", "tools.http_load", spec],
        capture_output=True,
        text=True,
        check=True,
        cwd=ROOT,
    ).stdout
    return Load(**json.loads(out))


def load(
    url: str, *, method: str = "GET", keys: list[str], body: str = "", connections: int, seconds: float
) -> Load:
    generate = wrk if shutil.which("wrk") else python_load
    return generate(url, method=method, keys=keys, body=body, connections=connections, seconds=seconds)


if __name__ == "__main__":
    print(json.dumps(asyncio.run(generate(**json.loads(sys.argv[1]))).__dict__))
