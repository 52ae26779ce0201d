"""The command tree. Every command but `projections rebuild` is a call to the gateway's API with
the operator token (or, for `export`, a merchant's key), through the merchant client."""

from __future__ import annotations

import asyncio
import datetime as dt
import json
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Annotated, Any, TypeVar

import typer
from checkout_client import CheckoutError, Client
from checkout_client.calls import EXPORTS
from checkout_client.types import Shards, SlotMove
from rich.console import Console
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    TaskID,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)
from rich.table import Table

from checkout_admin import rebuild as rebuilding

app = typer.Typer(
    help="Operate a checkout platform: merchants, keys, shards, slot moves, dead letters, rebuilds, exports.",
    no_args_is_help=True,
)
merchants = typer.Typer(help="Merchants (operator token).", no_args_is_help=True)
keys = typer.Typer(help="API keys (operator token).", no_args_is_help=True)
dead_letters = typer.Typer(help="Events the projections parked (operator token).", no_args_is_help=True)
shards = typer.Typer(help="The shards: the map, their balance, and adding one (operator token).")
projections = typer.Typer(
    help="Read models, straight on the databases (CHECKOUT_* configuration).", no_args_is_help=True
)
app.add_typer(merchants, name="merchants")
app.add_typer(keys, name="keys")
app.add_typer(dead_letters, name="dead-letters")
slot_moves = typer.Typer(
    help="Moving slots between shards online (operator token): start, follow, pause, resume, abort.",
    no_args_is_help=True,
)
app.add_typer(shards, name="shards")
app.add_typer(slot_moves, name="slot-moves")
app.add_typer(projections, name="projections")

out = Console()
err = Console(stderr=True)

Gateway = Annotated[
    str, typer.Option("--gateway", envvar="CHECKOUT_GATEWAY_URL", help="The gateway's base URL.")
]
Token = Annotated[
    str,
    typer.Option("--token", envvar="CHECKOUT_ADMIN_TOKEN", help="The operator token.", show_default=False),
]
AsJson = Annotated[bool, typer.Option("--json", help="Print the API's JSON instead of a table.")]
DEFAULT_GATEWAY = "http://127.0.0.1:8080"
T = TypeVar("T")


def client(gateway: str, token: str) -> Client:
    return Client(gateway, token)


def fail(error: CheckoutError) -> typer.Exit:
    err.print(f"[red]{error}[/red]")
    for detail in error.details:
        err.print(f"  {detail['field']}: {detail['reason']}")
    return typer.Exit(1)


def show(rows: list[dict[str, Any]], columns: list[str], as_json: bool, title: str) -> None:
    if as_json:
        out.print_json(json.dumps(rows))
        return
    table = Table(*columns, title=title)
    for row in rows:
        table.add_row(*("" if row.get(c) is None else str(row.get(c)) for c in columns))
    out.print(table)


@shards.callback(invoke_without_command=True)
def shards_default(
    ctx: typer.Context, gateway: Gateway = DEFAULT_GATEWAY, token: Token = "", as_json: AsJson = False
) -> None:
    """The shard map, each shard's counts and health (as `shards list`)."""
    if ctx.invoked_subcommand is None:
        shards_list(gateway, token, as_json)


def _calling(gateway: str, token: str, work: Callable[[Client], T]) -> T:
    """`work` on a client of the gateway; an API error ends the command with its message."""
    try:
        with client(gateway, token) as api:
            return work(api)
    except CheckoutError as error:
        raise fail(error) from None


def _shards(gateway: str, token: str) -> Shards:
    return _calling(gateway, token, lambda api: api.shards())


@shards.command("list")
def shards_list(gateway: Gateway = DEFAULT_GATEWAY, token: Token = "", as_json: AsJson = False) -> None:
    """The shard map (its version), each shard's tier, slots, counts, rows, bytes and health."""
    answer = _shards(gateway, token)
    if as_json:
        out.print_json(json.dumps(answer))
        return
    columns = ["id", "tier", "slots", "merchants", "invoices", "rows", "bytes", "healthy"]
    show(
        [dict(s) for s in answer["shards"]],
        columns,
        False,
        f"shards (map version {answer['shard_map_version']})",
    )


@shards.command("add")
def shards_add(
    dsn: Annotated[
        str, typer.Option(help="The new shard's PostgreSQL DSN (its database is created if missing).")
    ],
    tier: Annotated[str, typer.Option(help="shared, enterprise, pro, free or overflow.")] = "shared",
    gateway: Gateway = DEFAULT_GATEWAY,
    token: Token = "",
) -> None:
    """Register a shard: migrated, then served by every service; it owns no slots until a move."""
    added = _calling(gateway, token, lambda api: api.register_shard(dsn, tier))
    out.print(f"shard {added['id']} ({added['tier']}) registered: {added['dsn']}; it owns no slots yet")


@shards.command("plan")
def shards_plan(gateway: Gateway = DEFAULT_GATEWAY, token: Token = "", as_json: AsJson = False) -> None:
    """The balance, and the slot moves that would bring every shard within 30 % of its tier's mean."""
    balance = _shards(gateway, token)["balance"]
    if as_json:
        out.print_json(json.dumps(balance))
        return
    state = "balanced" if balance["balanced"] else "unbalanced"
    partial = "" if balance["complete"] else " (not every shard answered: no moves proposed)"
    out.print(
        f"{state}: imbalance {balance['imbalance_ratio']:.0%} of the mean, tolerance "
        f"{balance['tolerance']:.0%}{partial}"
    )
    moves = [dict(m) for m in balance["proposed_moves"]]
    if moves:
        show(moves, ["slots", "from_shard", "to_shard", "rows"], False, "proposed slot moves")


# -- slot moves ------------------------------------------------------------------------------------
MOVE_COLUMNS = [
    "id",
    "slots",
    "from_shard",
    "to_shard",
    "phase",
    "paused",
    "rows_copied",
    "fence_ms",
    "error",
]
FINISHED = ("done", "aborted")


def _move_line(move: SlotMove) -> str:
    fence = "" if move["fence_ms"] is None else f", fence {move['fence_ms']:.0f} ms"
    rate = "" if move["rows_per_second"] is None else f", {move['rows_per_second']:.0f} rows/s"
    paused = " (paused)" if move["paused"] else ""
    error = f"; last error: {move['error']}" if move["error"] else ""
    return (
        f"slot move {move['id']}: slots {move['slots']} shard {move['from_shard']} -> {move['to_shard']}, "
        f"{move['phase']}{paused}, {move['rows_copied']} of {move['rows_total']} rows{rate}{fence}{error}"
    )


def _follow(api: Client, move: SlotMove, poll_seconds: float) -> SlotMove:
    """A progress bar over the move's rows until it is done, aborted or paused."""
    columns = (TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn())
    with Progress(*columns, console=err) as bar:
        task = bar.add_task(move["phase"], total=max(move["rows_total"], 1))
        while move["phase"] not in FINISHED and not move["paused"]:
            time.sleep(poll_seconds)
            move = api.slot_move(move["id"])
            total = max(move["rows_total"], 1)
            bar.update(
                task, description=move["phase"], total=total, completed=round(move["progress"] * total)
            )
    return move


@slot_moves.command("start")
def slot_moves_start(
    slots: Annotated[str, typer.Argument(help='The slots, inclusive: "0-511" (all on one shard now).')],
    to_shard: Annotated[int, typer.Option("--to", help="The shard that gets them.")],
    wait: Annotated[bool, typer.Option(help="Follow it with a progress bar until it is over.")] = True,
    gateway: Gateway = DEFAULT_GATEWAY,
    token: Token = "",
) -> None:
    """Move slots to another shard while merchants keep writing (the merchant service runs it)."""

    def start(api: Client) -> SlotMove:
        move = api.create_slot_move(slots, to_shard)
        out.print(_move_line(move))
        return _follow(api, move, 0.5) if wait else move

    move = _calling(gateway, token, start)
    if wait:
        out.print(_move_line(move))
    if move["phase"] == "aborted":
        raise typer.Exit(1)


@slot_moves.command("list")
def slot_moves_list(gateway: Gateway = DEFAULT_GATEWAY, token: Token = "", as_json: AsJson = False) -> None:
    """The latest slot moves, newest first."""
    moves = _calling(gateway, token, lambda api: api.slot_moves())
    show([dict(m) for m in moves], MOVE_COLUMNS, as_json, "slot moves")


def _slot_move_command(action: str | None, doc: str) -> None:
    def command(
        move_id: Annotated[str, typer.Argument(help="The move's id.")],
        follow: Annotated[bool, typer.Option(help="A progress bar until it is over or paused.")] = False,
        gateway: Gateway = DEFAULT_GATEWAY,
        token: Token = "",
    ) -> None:
        def act(api: Client) -> SlotMove:
            move = api.slot_move(move_id, action)
            return _follow(api, move, 0.5) if follow else move

        out.print(_move_line(_calling(gateway, token, act)))

    command.__doc__ = doc
    slot_moves.command(action or "show")(command)


_slot_move_command(None, "A slot move's phase, rows copied and fence time.")
_slot_move_command("pause", "Pause a slot move after the batch in hand.")
_slot_move_command("resume", "Resume a paused slot move.")
_slot_move_command("abort", "Abort a slot move before its switch: the source stays authoritative.")


@merchants.command("list")
def merchants_list(
    gateway: Gateway = DEFAULT_GATEWAY,
    token: Token = "",
    as_json: AsJson = False,
    limit: Annotated[int, typer.Option(help="At most this many, newest first.")] = 50,
) -> None:
    """Merchants, newest first."""
    try:
        with client(gateway, token) as api:
            rows = [dict(m) for m, _ in zip(api.iter_merchants(), range(limit), strict=False)]
    except CheckoutError as error:
        raise fail(error) from None
    show(rows, ["id", "business_name", "contact_email", "plan_type", "status", "shard"], as_json, "merchants")


@merchants.command("create")
def merchants_create(
    business_name: Annotated[str, typer.Option("--name")],
    contact_email: Annotated[str, typer.Option("--email")],
    plan: Annotated[str | None, typer.Option(help="free, pro or enterprise.")] = None,
    ethereum_xpub: Annotated[
        str | None, typer.Option(help="wallets.ethereum: the BIP44 account xpub.")
    ] = None,
    gateway: Gateway = DEFAULT_GATEWAY,
    token: Token = "",
) -> None:
    """Sign a merchant up; prints it as JSON."""
    wallets = {"ethereum": ethereum_xpub} if ethereum_xpub else None
    try:
        with client(gateway, token) as api:
            made = api.create_merchant(
                business_name=business_name, contact_email=contact_email, plan_type=plan, wallets=wallets
            )
    except CheckoutError as error:
        raise fail(error) from None
    out.print_json(json.dumps(made))


@merchants.command("show")
def merchants_show(merchant_id: str, gateway: Gateway = DEFAULT_GATEWAY, token: Token = "") -> None:
    """One merchant, as JSON."""
    try:
        with client(gateway, token) as api:
            out.print_json(json.dumps(api.get_merchant(merchant_id)))
    except CheckoutError as error:
        raise fail(error) from None


@keys.command("create")
def keys_create(
    merchant_id: str,
    name: Annotated[str, typer.Option()],
    permission: Annotated[list[str] | None, typer.Option(help="Repeat for each; default: every one.")] = None,
    gateway: Gateway = DEFAULT_GATEWAY,
    token: Token = "",
) -> None:
    """Issue a merchant an API key. The key is printed once (on stdout alone, for a pipe)."""
    try:
        with client(gateway, token) as api:
            issued = api.create_api_key(merchant_id, name=name, permissions=permission or None)
    except CheckoutError as error:
        raise fail(error) from None
    err.print(f"key {issued['id']} ({issued['key_type']}): {', '.join(issued['permissions'])}")
    print(issued["key"])


@dead_letters.command("list")
def dead_letters_list(
    service: Annotated[str | None, typer.Option()] = None,
    shard: Annotated[int | None, typer.Option()] = None,
    projection: Annotated[str | None, typer.Option()] = None,
    gateway: Gateway = DEFAULT_GATEWAY,
    token: Token = "",
    as_json: AsJson = False,
) -> None:
    """Every parked event (all pages), newest first."""
    try:
        with client(gateway, token) as api:
            rows = list(api.iter_dead_letters(service=service, shard=shard, projection=projection))
    except CheckoutError as error:
        raise fail(error) from None
    columns = ["id", "service", "shard", "projection", "event_type", "attempts", "error"]
    show(rows, columns, as_json, "dead letters")


@dead_letters.command("retry")
def dead_letters_retry(letter_id: str, gateway: Gateway = DEFAULT_GATEWAY, token: Token = "") -> None:
    """Apply a parked event again; exits 1 if it failed again (and stays parked)."""
    try:
        with client(gateway, token) as api:
            retried = api.retry_dead_letter(letter_id)
    except CheckoutError as error:
        raise fail(error) from None
    if not retried["applied"]:
        err.print(f"[red]failed again[/red] ({retried['dead_letter']['error']}); still parked")
        raise typer.Exit(1)
    out.print(f"applied {retried['dead_letter']['event_type']} {retried['dead_letter']['event_id']}")


@projections.command("rebuild")
def projections_rebuild(
    service: Annotated[str, typer.Argument(help="customer or analytics (the services that consume events).")],
    projection: Annotated[str, typer.Argument(help="Its projection, e.g. customers or payment-history.")],
    shard: Annotated[list[int] | None, typer.Option(help="Repeat for each; default: every shard.")] = None,
) -> None:
    """Drop a read model and apply its events again, shard by shard, with a progress bar and ETA."""
    from libs.common.config import Config, ConfigError
    from libs.common.shardstore import registered_shards

    try:
        config = Config.from_env()
        plans = rebuilding.rebuildable(config, service)
    except (ConfigError, rebuilding.RebuildError) as error:
        err.print(f"[red]{error}[/red]")
        raise typer.Exit(2) from None
    if projection not in plans:
        err.print(
            f"[red]{service} has no rebuildable projection {projection!r}[/red]; it has: {', '.join(plans)}"
        )
        raise typer.Exit(2)
    columns = (TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn())
    numbers = shard if shard is not None else sorted(asyncio.run(registered_shards(config)))
    with Progress(*columns, TextColumn("ETA"), TimeRemainingColumn(), console=err) as bar:
        for number in numbers:
            task = bar.add_task(f"{service}.{projection} shard {number}", total=None)

            def total(count: int, task: TaskID = task) -> None:
                bar.update(task, total=count)

            def done(count: int, task: TaskID = task) -> None:
                bar.advance(task, count)

            try:
                report = asyncio.run(rebuilding.run(config, plans[projection], number, total, done))
            except rebuilding.RebuildError as error:
                err.print(f"[red]{error}[/red]")
                raise typer.Exit(2) from None
            out.print(f"shard {number}: {report.applied} applied, {len(report.skipped)} skipped")
            for skipped in report.skipped:
                out.print(f"  skipped {skipped.event_type} {skipped.event_id}: {skipped.reason}")


@app.command()
def export(
    kind: Annotated[str, typer.Argument(help=" or ".join(EXPORTS))],
    start: Annotated[dt.datetime | None, typer.Option("--from", formats=["%Y-%m-%d"])] = None,
    end: Annotated[dt.datetime | None, typer.Option("--to", formats=["%Y-%m-%d"])] = None,
    output: Annotated[Path | None, typer.Option("--output", "-o", help="Default: stdout.")] = None,
    gateway: Gateway = DEFAULT_GATEWAY,
    key: Annotated[
        str, typer.Option("--key", envvar="CHECKOUT_API_KEY", help="The merchant's API key.")
    ] = "",
) -> None:
    """A merchant's invoices or payments as CSV, streamed to a file or stdout."""
    if kind not in EXPORTS:
        err.print(f"[red]export is one of {', '.join(EXPORTS)}[/red]")
        raise typer.Exit(2)
    try:
        with client(gateway, key) as api:
            chunks: Iterator[bytes] = api.export(
                kind, start.date() if start else None, end.date() if end else None
            )
            if output is None:
                for chunk in chunks:
                    sys.stdout.buffer.write(chunk)
                sys.stdout.buffer.flush()
            else:
                with output.open("wb") as file:
                    for chunk in chunks:
                        file.write(chunk)
    except CheckoutError as error:
        raise fail(error) from None
