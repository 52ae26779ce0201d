"""The command tree."""

from __future__ import annotations

import typer

app = typer.Typer(
    help="Operate a checkout platform: merchants, keys, shards, dead letters, rebuilds, exports.",
    no_args_is_help=True,
)


@app.callback()
def main() -> None:
    """The gateway's URL and the operator token come from the environment or the options."""
