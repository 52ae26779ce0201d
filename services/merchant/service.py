"""The merchant service's wiring: schema, servicers, and the invoice events it consumes to
deliver webhooks and notifications and to keep the event feed (plus the loops that send them
and that prune the feed)."""

from pathlib import Path

from libs.common.consumer import AfterCommit
from libs.common.messaging import Envelope
from libs.common.service import Runtime, ServiceSpec
from services.merchant.feed.application import feed_of
from services.merchant.grpc_api import register
from services.merchant.webhooks.delivery import dispatcher_of
from services.merchant.webhooks.projections import InvoiceEvents


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
    background=lambda runtime: dispatcher_of(runtime).loops(),
    shard_background=lambda runtime, shard: [
        *dispatcher_of(runtime).shard_loops(shard),
        *feed_of(runtime).shard_loops(shard),
    ],
    # Keys, merchants and webhooks are read from the primary: a revoke or an edit counts at once.
    replica_reads=False,
)
