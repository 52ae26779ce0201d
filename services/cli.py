"""`checkout-service <name> [serve|migrate]`: one console script for the four gRPC services, the
same as `python -m services.<name> [serve|migrate]`."""

from __future__ import annotations

import importlib
import sys

from libs.common.composition import ServiceSpec
from libs.common.config import SERVICES
from libs.common.process import main as run


def main(argv: list[str] | None = None) -> None:
    args = sys.argv[1:] if argv is None else argv
    if not args or args[0] not in SERVICES:
        print(f"usage: checkout-service {{{','.join(SERVICES)}}} [serve|migrate]", file=sys.stderr)
        raise SystemExit(2)
    spec = importlib.import_module(f"services.{args[0]}.service").SPEC
    assert isinstance(spec, ServiceSpec)
    run(spec, args[1:], prog=f"checkout-service {args[0]}")


if __name__ == "__main__":
    main()
