"""Projection consumers: durable JetStream pull consumers that apply another service's events
to a local read model.

The read-model change and the `processed_events` row are written in one transaction and the
message is acked only after that commit. A crash before the ack means redelivery; the
`processed_events` row makes the second delivery a no-op, so an event is applied exactly once.

Each fetched batch is applied in one transaction, in stream order (which is each aggregate's
order): one connection, one commit and one `processed_events` statement for up to `batch`
events. If any event of the batch fails, the transaction is rolled back and the batch is applied
again one event per transaction, so only the failing event is held back (`_failed`), with the
later events of its aggregate, which must not overtake it.

An event whose apply keeps failing (not an outage: libs/common/deadletters.Parking decides) is
parked in `dead_letters` after `max_attempts` tries and acked, so the events after it flow on;
the operator retries it later (`retry_parked`). A rebuild skips parked and failing events and
reports them instead of aborting.
"""

from libs.common.consumer.live import ProjectionConsumer, RetryResult
from libs.common.consumer.projection import AfterCommit, BatchProjection, Projection, Writes
from libs.common.consumer.pull import LOST_REQUEST_GRACE_SECONDS, Pull
from libs.common.consumer.replay import RebuildReport, Skipped, rebuild

__all__ = [
    "LOST_REQUEST_GRACE_SECONDS",
    "AfterCommit",
    "BatchProjection",
    "Projection",
    "ProjectionConsumer",
    "Pull",
    "RebuildReport",
    "RetryResult",
    "Skipped",
    "Writes",
    "rebuild",
]
