"""The merchant service's wiring: schema, servicers, and the invoice events it consumes to
deliver webhooks and notifications and to keep the event feed (plus the loops that send them
and that prune the feed), and the slot mover."""

from pathlib import Path

from libs.common.consumer import AfterCommit
from libs.common.messaging import Envelope
from libs.common.service import Runtime, ServiceSpec
from libs.common.slotmover import SlotMover
from libs.common.supervise import Loop
from services.merchant.feed.application import feed_of
from services.merchant.grpc_api import register
from services.merchant.webhooks.delivery import dispatcher_of
from services.merchant.webhooks.projections import InvoiceEvents


def slot_mover(runtime: Runtime) -> Loop:
    """The platform's slot mover (libs/common/slotmover.py) runs in the merchant service: every
    instance runs the loop and a lock on the control database lets one of them move at a time."""

    async def run() -> None:
        await SlotMover(runtime.config, runtime.js).run()

    return Loop("slot-mover", run)


def after_commit(runtime: Runtime) -> AfterCommit:
    """After each consumed invoice event: wake the senders and the feed's waiting readers."""
    dispatcher, feed = dispatcher_of(runtime), feed_of(runtime)

    async def committed(event: Envelope) -> None:
        await dispatcher.after_commit(event)
        await feed.after_commit(event)

    return committed


SPEC = ServiceSpec(
    name="merchant",
    service_dir=Path(__file__).parent,
    register=register,
    projections=lambda runtime: [InvoiceEvents(feed_of(runtime))],
    after_commit=after_commit,
    background=lambda runtime: [
        *dispatcher_of(runtime).loops(),
        *([slot_mover(runtime)] if runtime.config.slot_mover else []),
    ],
    shard_background=lambda runtime, shard: [
        *dispatcher_of(runtime).shard_loops(shard),
        *feed_of(runtime).shard_loops(shard),
    ],
    # Keys, merchants and webhooks are read from the primary: a revoke or an edit counts at once.
    replica_reads=False,
)
