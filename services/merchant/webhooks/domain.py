"""WebhookEndpoint and NotificationTemplate aggregates: their guards and the events they emit.

No I/O: the URL's shape is checked here; whether its host resolves to an address we may contact
is the application's job (it needs DNS), and the delivery worker checks again before each send.
"""

from __future__ import annotations

import datetime as dt
import ipaddress
import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from checkout.merchant.v1 import events_pb2 as ev

from libs.common import events, ids
from libs.common.aggregate import Aggregate
from libs.common.errors import FieldViolation, InvalidArgument, NotFound
from libs.common.limits import (
    TEMPLATE_BODY_MAX_CHARS,
    TEMPLATE_SUBJECT_MAX_CHARS,
    WEBHOOK_ALLOWED_IPS_MAX,
    WEBHOOK_MAX_RETRIES_MAX,
    WEBHOOK_TIMEOUT_SECONDS_MAX,
)
from libs.common.protoconv import timestamp
from services.merchant.webhooks import signing, ssrf, templates

# Every invoice event type in the catalogue, plus "*" for all of them (including types added later).
ALL_EVENTS = "*"
BACKOFFS = ("exponential", "linear")
RECIPIENTS = ("customer", "merchant")
DEFAULT_MAX_RETRIES = 8
DEFAULT_TIMEOUT_SECONDS = 10
# After a rotation the old secret keeps signing (as a second v1) for this long.
ROTATION_OVERLAP = dt.timedelta(hours=24)


def subscribable_events() -> list[str]:
    return list(events.WEBHOOK_EVENT_TYPES)


def _raise(problems: list[FieldViolation]) -> None:
    if problems:
        raise InvalidArgument("; ".join(f"{p.field}: {p.reason}" for p in problems), problems)


def _check_url(url: str, problems: list[FieldViolation]) -> None:
    try:
        ssrf.validate_url(url)
    except ssrf.UnsafeUrl as error:
        problems.append(FieldViolation("url", error.reason))


def _check_events(names: Sequence[str], problems: list[FieldViolation]) -> None:
    if not names:
        problems.append(FieldViolation("events", "must name at least one event type"))
        return
    known = set(subscribable_events())
    for i, name in enumerate(names):
        if name != ALL_EVENTS and name not in known:
            problems.append(
                FieldViolation(
                    f"events[{i}]",
                    f"unknown event type; use {ALL_EVENTS} or one of {', '.join(sorted(known))}",
                )
            )


def _check_allowed_ips(entries: Sequence[str], problems: list[FieldViolation]) -> None:
    if len(entries) > WEBHOOK_ALLOWED_IPS_MAX:
        problems.append(FieldViolation("allowed_ips", f"must have at most {WEBHOOK_ALLOWED_IPS_MAX} entries"))
    for i, entry in enumerate(entries):
        try:
            ipaddress.ip_network(entry.strip(), strict=False)
        except ValueError:
            problems.append(FieldViolation(f"allowed_ips[{i}]", "must be an IP address or CIDR block"))


def _check_settings(
    max_retries: int | None, backoff: str | None, timeout: int | None, problems: list[FieldViolation]
) -> None:
    if max_retries is not None and not 0 <= max_retries <= WEBHOOK_MAX_RETRIES_MAX:
        problems.append(FieldViolation("max_retries", f"must be between 0 and {WEBHOOK_MAX_RETRIES_MAX}"))
    if backoff is not None and backoff not in BACKOFFS:
        problems.append(FieldViolation("retry_backoff", f"must be one of {', '.join(BACKOFFS)}"))
    if timeout is not None and not 1 <= timeout <= WEBHOOK_TIMEOUT_SECONDS_MAX:
        problems.append(
            FieldViolation("timeout_seconds", f"must be between 1 and {WEBHOOK_TIMEOUT_SECONDS_MAX}")
        )


def _unique(values: Sequence[str]) -> list[str]:
    return list(dict.fromkeys(v.strip() for v in values))


@dataclass(frozen=True)
class NewSecret:
    """A signing secret just made: shown to the merchant once, kept only encrypted under `ref`
    (the application seals it); the event names `ref` alone."""

    ref: uuid.UUID
    value: str

    @classmethod
    def fresh(cls, merchant_id: uuid.UUID) -> NewSecret:
        return cls(ids.new_id(ids.slot_of(merchant_id)), signing.new_secret())


class WebhookEndpoint(Aggregate):
    aggregate_type = "WebhookEndpoint"

    def __init__(self, aggregate_id: uuid.UUID) -> None:
        super().__init__(aggregate_id)
        self.merchant_id = ""
        self.url = ""
        self.events: list[str] = []
        self.status = "active"
        self.max_retries = DEFAULT_MAX_RETRIES
        self.retry_backoff = "exponential"
        self.timeout_seconds = DEFAULT_TIMEOUT_SECONDS
        self.allowed_ips: list[str] = []
        self.deleted = False

    @classmethod
    def create(
        cls,
        endpoint_id: uuid.UUID,
        *,
        merchant_id: uuid.UUID,
        url: str,
        events: Sequence[str],
        max_retries: int | None,
        retry_backoff: str | None,
        timeout_seconds: int | None,
        allowed_ips: Sequence[str],
        now: dt.datetime,
    ) -> tuple[WebhookEndpoint, NewSecret]:
        """Returns the aggregate and its new signing secret (shown to the merchant once)."""
        problems: list[FieldViolation] = []
        _check_url(url, problems)
        _check_events(events, problems)
        _check_settings(max_retries, retry_backoff, timeout_seconds, problems)
        _check_allowed_ips(allowed_ips, problems)
        _raise(problems)
        secret = NewSecret.fresh(merchant_id)
        endpoint = cls(endpoint_id)
        endpoint._emit(
            ev.WebhookEndpointCreated(
                endpoint_id=str(endpoint_id),
                merchant_id=str(merchant_id),
                url=url,
                events=_unique(events),
                secret_ref=str(secret.ref),
                max_retries=DEFAULT_MAX_RETRIES if max_retries is None else max_retries,
                retry_backoff=retry_backoff or "exponential",
                timeout_seconds=timeout_seconds or DEFAULT_TIMEOUT_SECONDS,
                allowed_ips=_unique(allowed_ips),
                created_at=timestamp(now),
            )
        )
        return endpoint, secret

    def _live(self) -> None:
        if self.deleted:
            raise NotFound("webhook endpoint not found")

    def update(
        self,
        *,
        url: str | None,
        events: Sequence[str] | None,
        max_retries: int | None,
        retry_backoff: str | None,
        timeout_seconds: int | None,
        allowed_ips: Sequence[str] | None,
        status: str | None,
        now: dt.datetime,
    ) -> None:
        self._live()
        problems: list[FieldViolation] = []
        if url is not None:
            _check_url(url, problems)
        if events is not None:
            _check_events(events, problems)
        _check_settings(max_retries, retry_backoff, timeout_seconds, problems)
        if allowed_ips is not None:
            _check_allowed_ips(allowed_ips, problems)
        if status is not None and status not in ("active", "disabled"):
            problems.append(FieldViolation("status", "must be active or disabled"))
        _raise(problems)
        event = ev.WebhookEndpointUpdated(
            endpoint_id=str(self.id), merchant_id=self.merchant_id, updated_at=timestamp(now)
        )
        changed = False
        if url is not None and url != self.url:
            event.url, changed = url, True
        if events is not None and _unique(events) != self.events:
            event.events[:] = _unique(events)
            event.events_changed = changed = True
        if max_retries is not None and max_retries != self.max_retries:
            event.max_retries, changed = max_retries, True
        if retry_backoff is not None and retry_backoff != self.retry_backoff:
            event.retry_backoff, changed = retry_backoff, True
        if timeout_seconds is not None and timeout_seconds != self.timeout_seconds:
            event.timeout_seconds, changed = timeout_seconds, True
        if allowed_ips is not None and _unique(allowed_ips) != self.allowed_ips:
            event.allowed_ips[:] = _unique(allowed_ips)
            event.allowed_ips_changed = changed = True
        if status is not None and status != self.status:
            event.status, changed = status, True
        if changed:
            self._emit(event)

    def rotate_secret(self, now: dt.datetime) -> NewSecret:
        self._live()
        secret = NewSecret.fresh(uuid.UUID(self.merchant_id))
        self._emit(
            ev.WebhookSecretRotated(
                endpoint_id=str(self.id),
                merchant_id=self.merchant_id,
                secret_ref=str(secret.ref),
                previous_expires_at=timestamp(now + ROTATION_OVERLAP),
                rotated_at=timestamp(now),
            )
        )
        return secret

    def delete(self, now: dt.datetime) -> None:
        self._live()
        self._emit(
            ev.WebhookEndpointDeleted(
                endpoint_id=str(self.id), merchant_id=self.merchant_id, deleted_at=timestamp(now)
            )
        )

    def _apply(self, event: Any) -> None:
        if isinstance(event, ev.WebhookEndpointCreated):
            self.merchant_id = event.merchant_id
            self.url = event.url
            self.events = list(event.events)
            self.max_retries = event.max_retries
            self.retry_backoff = event.retry_backoff
            self.timeout_seconds = event.timeout_seconds
            self.allowed_ips = list(event.allowed_ips)
        elif isinstance(event, ev.WebhookEndpointUpdated):
            if event.HasField("url"):
                self.url = event.url
            if event.events_changed:
                self.events = list(event.events)
            if event.HasField("max_retries"):
                self.max_retries = event.max_retries
            if event.HasField("retry_backoff"):
                self.retry_backoff = event.retry_backoff
            if event.HasField("timeout_seconds"):
                self.timeout_seconds = event.timeout_seconds
            if event.allowed_ips_changed:
                self.allowed_ips = list(event.allowed_ips)
            if event.HasField("status"):
                self.status = event.status
        elif isinstance(event, ev.WebhookEndpointDeleted):
            self.deleted = True


def _check_event_type(event_type: str, problems: list[FieldViolation]) -> None:
    if event_type not in subscribable_events():
        problems.append(FieldViolation("event_type", f"must be one of {', '.join(subscribable_events())}"))


def _check_template(field: str, text: str, limit: int, problems: list[FieldViolation]) -> None:
    if not text.strip():
        problems.append(FieldViolation(field, "must not be blank"))
    elif len(text) > limit:
        problems.append(FieldViolation(field, f"must be at most {limit} characters"))
    else:
        problems.extend(FieldViolation(field, reason) for reason in templates.problems(text))


class NotificationTemplate(Aggregate):
    aggregate_type = "NotificationTemplate"

    def __init__(self, aggregate_id: uuid.UUID) -> None:
        super().__init__(aggregate_id)
        self.merchant_id = ""
        self.event_type = ""
        self.subject = ""
        self.body_template = ""
        self.recipient = "customer"
        self.is_active = True
        self.deleted = False

    @classmethod
    def create(
        cls,
        template_id: uuid.UUID,
        *,
        merchant_id: uuid.UUID,
        event_type: str,
        subject: str,
        body_template: str,
        recipient: str,
        is_active: bool,
        now: dt.datetime,
    ) -> NotificationTemplate:
        problems: list[FieldViolation] = []
        _check_event_type(event_type, problems)
        _check_template("subject", subject, TEMPLATE_SUBJECT_MAX_CHARS, problems)
        _check_template("body_template", body_template, TEMPLATE_BODY_MAX_CHARS, problems)
        who = recipient or "customer"
        if who not in RECIPIENTS:
            problems.append(FieldViolation("recipient", f"must be one of {', '.join(RECIPIENTS)}"))
        _raise(problems)
        template = cls(template_id)
        template._emit(
            ev.NotificationTemplateCreated(
                template_id=str(template_id),
                merchant_id=str(merchant_id),
                event_type=event_type,
                subject=subject,
                body_template=body_template,
                recipient=who,
                is_active=is_active,
                created_at=timestamp(now),
            )
        )
        return template

    def _live(self) -> None:
        if self.deleted:
            raise NotFound("notification template not found")

    def update(
        self,
        *,
        event_type: str | None,
        subject: str | None,
        body_template: str | None,
        recipient: str | None,
        is_active: bool | None,
        now: dt.datetime,
    ) -> None:
        self._live()
        problems: list[FieldViolation] = []
        if event_type is not None:
            _check_event_type(event_type, problems)
        if subject is not None:
            _check_template("subject", subject, TEMPLATE_SUBJECT_MAX_CHARS, problems)
        if body_template is not None:
            _check_template("body_template", body_template, TEMPLATE_BODY_MAX_CHARS, problems)
        if recipient is not None and recipient not in RECIPIENTS:
            problems.append(FieldViolation("recipient", f"must be one of {', '.join(RECIPIENTS)}"))
        _raise(problems)
        event = ev.NotificationTemplateUpdated(
            template_id=str(self.id), merchant_id=self.merchant_id, updated_at=timestamp(now)
        )
        changed = False
        if event_type is not None and event_type != self.event_type:
            event.event_type, changed = event_type, True
        if subject is not None and subject != self.subject:
            event.subject, changed = subject, True
        if body_template is not None and body_template != self.body_template:
            event.body_template, changed = body_template, True
        if recipient is not None and recipient != self.recipient:
            event.recipient, changed = recipient, True
        if is_active is not None and is_active != self.is_active:
            event.is_active, changed = is_active, True
        if changed:
            self._emit(event)

    def delete(self, now: dt.datetime) -> None:
        self._live()
        self._emit(
            ev.NotificationTemplateDeleted(
                template_id=str(self.id), merchant_id=self.merchant_id, deleted_at=timestamp(now)
            )
        )

    def _apply(self, event: Any) -> None:
        if isinstance(event, ev.NotificationTemplateCreated):
            self.merchant_id = event.merchant_id
            self.event_type = event.event_type
            self.subject = event.subject
            self.body_template = event.body_template
            self.recipient = event.recipient
            self.is_active = event.is_active
        elif isinstance(event, ev.NotificationTemplateUpdated):
            for name in ("event_type", "subject", "body_template", "recipient", "is_active"):
                if event.HasField(name):
                    setattr(self, name, getattr(event, name))
        elif isinstance(event, ev.NotificationTemplateDeleted):
            self.deleted = True
