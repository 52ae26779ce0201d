"""`make faults` (`python -m tools.faults`): the fault suite; see tools/faults/run.py."""

from __future__ import annotations

import argparse
import logging
import sys
from pathlib import Path

from tools.faults.run import Options, run


def main() -> int:
    d = Options()
    parser = argparse.ArgumentParser(prog="python -m tools.faults", description=__doc__)
    parser.add_argument("--merchants", type=int, default=d.merchants)
    parser.add_argument("--invoices", type=int, default=d.invoices)
    parser.add_argument("--exact-payments", type=int, default=d.exact_payments)
    parser.add_argument(
        "--partial-payments", type=int, default=d.partial_payments, help="each paid in two parts"
    )
    parser.add_argument("--kill-rounds", type=int, default=d.kill_rounds, help="SIGKILLs of each process")
    parser.add_argument("--server-restarts", type=int, default=d.server_restarts, help="of each server")
    parser.add_argument("--seed", type=int, default=0, help="replay a run (0: a random seed)")
    parser.add_argument(
        "--settle-seconds", type=float, default=d.settle_seconds, help="wait at most this long"
    )
    parser.add_argument("--out", type=Path, default=d.out)
    parser.add_argument("--data-dir", type=Path, default=None, help="keep logs and data here")
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(asctime)s faults  %(levelname)-7s %(message)s")
    # One line per HTTP request (httpx's INFO) would bury the faults and the verdict.
    logging.getLogger("httpx").setLevel(logging.WARNING)
    report = run(
        Options(
            merchants=args.merchants,
            invoices=args.invoices,
            exact_payments=args.exact_payments,
            partial_payments=args.partial_payments,
            kill_rounds=args.kill_rounds,
            server_restarts=args.server_restarts,
            seed=args.seed,
            settle_seconds=args.settle_seconds,
            out=args.out,
            data_dir=args.data_dir,
        )
    )
    print(report.line(), flush=True)
    if args.out is not None:
        print(f"report: {args.out}", flush=True)
    return 0 if report.ok else 1


if __name__ == "__main__":
    sys.exit(main())
