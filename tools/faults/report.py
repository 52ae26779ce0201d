"""The fault suite's verdict: one line of figures and the JSON report."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any

from tools.faults import checks, ledger, load, rebuilds
from tools.faults.inject import Faults


@dataclass
class Report:
    options: dict[str, Any]
    workload: dict[str, Any]
    faults: Faults
    statuses: load.Statuses
    events: checks.EventAudit
    ledger: ledger.LedgerAudit
    read_models_compared: int
    mismatches: list[rebuilds.Mismatch]
    # What /readyz said was down after the faults or after every check (each "service shard N:
    # status"): nothing, unless a loop was left dead past its grace.
    down_at_end: list[str]
    elapsed: float

    @property
    def lost(self) -> int:
        return self.events.missing + self.ledger.lost

    @property
    def http_500(self) -> int:
        return self.statuses.counts.get(500, 0)

    @property
    def ready_at_end(self) -> bool:
        return not self.down_at_end

    @property
    def ok(self) -> bool:
        return (
            self.lost == 0
            and self.ledger.double_counted == 0
            and not self.ledger.webhooks_missing
            # A merchant that fulfils on `invoice.paid` must hear it for every confirmed invoice.
            and not self.ledger.paid_event_missing
            and self.http_500 == 0
            and not self.ledger.unconfirmed
            and not self.mismatches
            and self.ready_at_end
            # The suite's own check: every invoice it paid in full is seen as fully paid on chain.
            and self.ledger.fully_paid == self.workload["exact"] + self.workload["partial_then_topped_up"]
        )

    def line(self) -> str:
        other_5xx = {s: n for s, n in self.statuses.server_errors.items() if s != 500}
        return (
            f"faults: {self.workload['invoices']} invoices, {self.workload['merchants']} merchants on "
            f"{self.workload['shards']} shards, {self.workload['payments']} payments; {sum(self.faults.kills.values())} kills, "
            f"{sum(self.faults.restarts.values())} server restarts ({sum(self.faults.exits.values())} exits) "
            f"-> lost {self.lost}, "
            f"double-counted {self.ledger.double_counted}, webhooks missing {len(self.ledger.webhooks_missing)} "
            f"of {self.ledger.webhooks_expected} ({self.ledger.webhook_duplicates} duplicates), "
            f"HTTP 500 {self.http_500} (other 5xx {other_5xx or 0}, unreachable {self.statuses.unreachable}), "
            f"unconfirmed {len(self.ledger.unconfirmed)} of {self.ledger.fully_paid} paid, read models off "
            f"{len(self.mismatches)} of {self.read_models_compared}, invoice.paid missing "
            f"{len(self.ledger.paid_event_missing)}, ready at the end "
            f"{'yes' if self.ready_at_end else 'NO (' + '; '.join(self.down_at_end) + ')'}; "
            f"{self.elapsed:.0f}s"
        )

    def as_json(self) -> dict[str, Any]:
        return {
            "ok": self.ok,
            "line": self.line(),
            "options": self.options,
            "load": self.workload,
            "faults": {
                "kills": dict(self.faults.kills),
                "restarts": dict(self.faults.restarts),
                "exits": dict(self.faults.exits),
                "log": self.faults.log,
            },
            "results": {
                "lost": self.lost,
                "double_counted": self.ledger.double_counted,
                "webhooks_missing": len(self.ledger.webhooks_missing),
                "webhook_duplicates": self.ledger.webhook_duplicates,
                "http_statuses": {str(k): v for k, v in sorted(self.statuses.counts.items())},
                "http_500": self.http_500,
                "http_500_requests": self.statuses.internal[:20],
                "unreachable": self.statuses.unreachable,
                "unconfirmed": len(self.ledger.unconfirmed),
                "invoice_paid_missing": len(self.ledger.paid_event_missing),
                "ready_at_end": self.ready_at_end,
                "down_at_end": self.down_at_end,
            },
            "events": self.events.summary(),
            "ledger": self.ledger.summary(),
            "read_models": {
                "compared": self.read_models_compared,
                "mismatches": [dataclasses.asdict(m) for m in self.mismatches],
            },
            "elapsed_seconds": round(self.elapsed, 1),
        }
