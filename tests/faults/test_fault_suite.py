"""The fault suite's short form (`make faults` runs the long one): the real stack under a small
load, each of its five processes SIGKILLed once and PostgreSQL, NATS and Redis restarted once,
and then nothing lost, nothing counted twice, no webhook missing, no HTTP 500."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tools.faults.inject import PROCESSES, SERVERS
from tools.faults.run import Options, run


@pytest.mark.timeout(420)
def test_a_short_fault_run_loses_nothing_counts_nothing_twice_and_never_answers_500(tmp_path: Path) -> None:
    out = tmp_path / "faults.json"
    report = run(
        Options(
            merchants=4,
            invoices=40,
            exact_payments=6,
            partial_payments=3,
            kill_rounds=1,
            server_restarts=1,
            out=out,
            data_dir=tmp_path / "run",
        )
    )
    assert report.ok, report.line() + _loop_trouble(tmp_path / "run" / "logs")
    assert report.lost == 0 and report.ledger.double_counted == 0 and report.http_500 == 0, report.line()
    # Every check looked at something, and every fault happened.
    # 40, and one per merchant after the faults (whose events a loop left dead would strand).
    assert report.workload["invoices"] == 44 and report.workload["payments"] == 12
    assert report.events.stored > 44 and report.events.on_stream == report.events.stored
    assert report.ledger.fully_paid == 9 and report.ledger.webhooks_expected > 44
    assert report.read_models_compared > 0 and report.ready_at_end
    assert dict(report.faults.kills) == dict.fromkeys(PROCESSES, 1)
    assert dict(report.faults.restarts) == dict.fromkeys(SERVERS, 1)
    written = json.loads(out.read_text())
    assert written["ok"] is True and written["line"] == report.line()


def _loop_trouble(logs: Path, last: int = 30) -> str:
    """The services' own words on loops that failed or left them not serving, to read a failure by."""
    lines = [
        f"{path.stem}: {line}"
        for path in sorted(logs.glob("*.log"))
        for line in path.read_text(errors="replace").splitlines()
        if " failed (" in line or "not serving" in line
    ]
    return "\n" + "\n".join(lines[-last:]) if lines else ""
