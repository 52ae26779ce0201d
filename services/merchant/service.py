"""The merchant service's composition root: schema, and what `build` makes for a runtime. One
dispatcher (webhook and notification senders) and one event feed are made here and handed to
the servicer, the invoice-events projection, the after-commit hook and the per-shard loops;
the slot mover runs here too."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from libs.common.composition import Built, ServiceSpec
from libs.common.messaging import Envelope
from libs.common.service import Runtime
from libs.common.slotmover import SlotMover
from libs.common.supervise import Loop
from services.merchant.application import MerchantApp
from services.merchant.feed.application import Feed
from services.merchant.grpc_api import register
from services.merchant.webhooks.application import WebhookApp
from services.merchant.webhooks.delivery import Dispatcher
from services.merchant.webhooks.projections import InvoiceEvents


def slot_mover(runtime: Runtime) -> Loop:
    """The platform's slot mover (libs/common/slotmover.py) runs in the merchant service: every
    instance runs the loop and a lock on the control database lets one of them move at a time."""

    async def run() -> None:
        await SlotMover(runtime.config, runtime.js).run()

    return Loop("slot-mover", run)


@dataclass(frozen=True, kw_only=True)
class MerchantBuilt(Built):
    dispatcher: Dispatcher
    feed: Feed


def build(runtime: Runtime) -> MerchantBuilt:
    dispatcher, feed = Dispatcher(runtime), Feed(runtime)
    merchants, webhooks = MerchantApp(runtime), WebhookApp(runtime, dispatcher)

    async def committed(event: Envelope) -> None:
        """After each consumed invoice event: wake the senders and the feed's waiting readers."""
        await dispatcher.after_commit(event)
        await feed.after_commit(event)

    def shard_loops(shard: int) -> Sequence[Loop]:
        return [*dispatcher.shard_loops(shard), *feed.shard_loops(shard)]

    return MerchantBuilt(
        register=lambda server: register(server, merchants, webhooks, feed),
        projections=[InvoiceEvents(feed)],
        after_commit=committed,
        background=[slot_mover(runtime)] if runtime.config.slot_mover else [],
        shard_loops=shard_loops,
        close=[dispatcher.close],
        dispatcher=dispatcher,
        feed=feed,
    )


SPEC = ServiceSpec(
    name="merchant",
    service_dir=Path(__file__).parent,
    build=build,
    # Keys, merchants and webhooks are read from the primary: a revoke or an edit counts at once.
    replica_reads=False,
)
