"""What a merchant may ask of its webhooks and notifications, as plain values. A field left out
is None where that means something (keep the current value, take the default); the checks are
the aggregates' (domain.py) and the application's."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass


@dataclass(frozen=True)
class NewEndpoint:
    merchant_id: str
    url: str
    events: Sequence[str]
    max_retries: int | None
    retry_backoff: str | None
    timeout_seconds: int | None
    allowed_ips: Sequence[str]


@dataclass(frozen=True)
class EndpointChange:
    """An update: each field None is left as it is; events and allowed_ips replace the whole."""

    merchant_id: str
    endpoint_id: str
    url: str | None
    events: Sequence[str] | None
    max_retries: int | None
    retry_backoff: str | None
    timeout_seconds: int | None
    allowed_ips: Sequence[str] | None
    status: str | None


@dataclass(frozen=True)
class DeliveryQuery:
    """A page of an endpoint's deliveries, newest first; an empty filter is no filter."""

    merchant_id: str
    endpoint_id: str
    status: str
    event_type: str
    limit: int  # 0: the default page
    cursor: str


@dataclass(frozen=True)
class NewTemplate:
    merchant_id: str
    event_type: str
    subject: str
    body_template: str
    recipient: str
    is_active: bool | None  # None: active


@dataclass(frozen=True)
class TemplateChange:
    """An update: each field None is left as it is."""

    merchant_id: str
    template_id: str
    event_type: str | None
    subject: str | None
    body_template: str | None
    recipient: str | None
    is_active: bool | None


@dataclass(frozen=True)
class NotificationQuery:
    """A page of a merchant's notifications, newest first; an empty filter is no filter."""

    merchant_id: str
    template_id: str
    status: str
    limit: int  # 0: the default page
    cursor: str
