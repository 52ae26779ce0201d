"""The delivery worker: sends queued webhooks and notification emails, records every attempt,
and schedules retries in the database.

One sender loop per served shard and kind. A loop claims due rows with `FOR UPDATE SKIP LOCKED`
and a lease (their due time moves past the attempt's timeout), sends outside any transaction,
then records the attempt and the next due time in one transaction. The schedule is therefore
in the database: a restarted worker carries on where the old one stopped, and a row whose
worker died mid-attempt becomes due again when its lease runs out. Loops wake at once when the
consumer commits new rows or a redelivery is requested (an in-process event), otherwise at the
next due time, polling as a fallback.

Webhooks: POST with `Checkout-Signature` and `Checkout-Event-Id`; success is a 2xx within the
endpoint's timeout. Network errors, timeouts, 408, 429 and 5xx are retried on the endpoint's
backoff (never sooner than a `Retry-After`); other 4xx are not. Redirects are not followed: a
3xx fails without retry, because its target is another URL the merchant never registered and
that the SSRF check never saw. The host is resolved and checked before every attempt, and the
request goes to exactly the checked address (Host header and TLS SNI keep the name).
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import email.utils
import functools
import logging
import smtplib
import ssl
import time
import uuid
from collections.abc import Callable, Coroutine
from dataclasses import dataclass, replace
from email.message import EmailMessage
from typing import Any
from urllib.parse import unquote, urlsplit, urlunsplit

import asyncpg
import httpx
from opentelemetry import trace

from libs.common import metrics
from libs.common.config import Config
from libs.common.eventstore import utcnow
from libs.common.messaging import Envelope
from libs.common.service import Runtime
from libs.common.supervise import Loop
from services.merchant.webhooks import repository, signing, ssrf
from services.merchant.webhooks.vault import SecretVault

log = logging.getLogger("checkout.merchant.delivery")
tracer = trace.get_tracer("checkout.merchant.delivery")

BATCH = 20
MAX_RESPONSE_BODY = 2048  # characters of a response kept in the attempt log
NOTIFICATION_MAX_ATTEMPTS = 5
DNS_TIMEOUT_SECONDS = 5.0
USER_AGENT = "Checkout-Webhooks/1.0"


@dataclass(frozen=True)
class Outcome:
    succeeded: bool
    retryable: bool = False
    response_code: int | None = None
    response_body: str | None = None
    error: str | None = None
    retry_after: float | None = None


# A delivery's status after an attempt -> the attempt's outcome label.
_OUTCOMES = {"succeeded": "succeeded", "pending": "retrying", "failed": "failed"}


def retry_delay(backoff: str, attempt: int, base: float, cap: float) -> float:
    """Seconds before the attempt after failed attempt number `attempt` (1-based)."""
    delay = base * attempt if backoff == "linear" else base * 2 ** (attempt - 1)
    return float(min(delay, cap))


def parse_retry_after(raw: str | None, now: dt.datetime) -> float | None:
    """`Retry-After` as seconds from now: delta-seconds or an HTTP date; None if unusable."""
    if not raw:
        return None
    raw = raw.strip()
    if raw.isascii() and raw.isdigit():
        return float(raw)
    try:
        when = email.utils.parsedate_to_datetime(raw)
    except (TypeError, ValueError):
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=dt.UTC)
    return max(0.0, (when - now).total_seconds())


def classify(response_code: int, body: str, retry_after: float | None, location: str | None) -> Outcome:
    if 200 <= response_code < 300:
        return Outcome(True, response_code=response_code, response_body=body)
    if 300 <= response_code < 400:
        return Outcome(
            False,
            retryable=False,
            response_code=response_code,
            response_body=body,
            error=f"HTTP {response_code}: redirects are not followed (Location: {location or '-'})",
        )
    retryable = response_code in (408, 429) or response_code >= 500
    return Outcome(
        False,
        retryable=retryable,
        response_code=response_code,
        response_body=body,
        error=f"HTTP {response_code}",
        retry_after=retry_after if retryable else None,
    )


class Mailer:
    """SMTP from `CHECKOUT_SMTP_URL`: `smtp://[user:pass@]host[:port]` (STARTTLS when the server
    offers it) or `smtps://` (TLS from the start). Blocking smtplib, run in a thread."""

    def __init__(self, url: str, sender: str, timeout: float = 15.0) -> None:
        self.url = url
        self.sender = sender
        self.timeout = timeout
        parts = urlsplit(url) if url else None
        if parts is not None and (parts.scheme not in ("smtp", "smtps") or not parts.hostname):
            raise ValueError(f"CHECKOUT_SMTP_URL must be smtp://host[:port] or smtps://..., got {url!r}")
        self.parts = parts

    @property
    def configured(self) -> bool:
        return self.parts is not None

    def send(self, message_id: str, recipient: str, subject: str, body: str) -> None:
        assert self.parts is not None
        message = EmailMessage()
        message["From"] = self.sender
        message["To"] = recipient
        message["Subject"] = subject
        message["Message-ID"] = message_id
        message["Date"] = email.utils.formatdate(usegmt=True)
        message.set_content(body)
        host = self.parts.hostname or ""
        secure = self.parts.scheme == "smtps"
        port = self.parts.port or (465 if secure else 25)
        client: smtplib.SMTP = (
            smtplib.SMTP_SSL(host, port, timeout=self.timeout, context=ssl.create_default_context())
            if secure
            else smtplib.SMTP(host, port, timeout=self.timeout)
        )
        with client:
            if not secure:
                client.ehlo()
                if client.has_extn("starttls"):
                    client.starttls(context=ssl.create_default_context())
                    client.ehlo()
            if self.parts.username:
                client.login(unquote(self.parts.username), unquote(self.parts.password or ""))
            client.send_message(message)


class Dispatcher:
    def __init__(self, runtime: Runtime) -> None:
        self.rt = runtime
        config: Config = runtime.config
        self.config = config
        self.policy = ssrf.UrlPolicy(
            allow_loopback=config.webhook_allow_loopback, allow_private=config.webhook_allow_private
        )
        # DNS for the SSRF check; tests swap in their own answers.
        self.resolver: ssrf.Resolver | None = None
        self.mailer = Mailer(config.smtp_url, config.smtp_from)
        # Built here, at start-up, so a missing or malformed key stops the service at once.
        self.vault = SecretVault(config.webhook_secret_keys)
        # One per shard whose senders run (a shard added while the service runs gets its own).
        self._webhook_wake: dict[int, asyncio.Event] = {}
        self._mail_wake: dict[int, asyncio.Event] = {}
        # trust_env=False: a proxy from the environment would connect on our behalf to whatever
        # the name resolves to *there*, bypassing the address check.
        self.client = httpx.AsyncClient(trust_env=False, follow_redirects=False, http2=False)

    # -- waking ---------------------------------------------------------------------------------
    def wake(self, shard: int | None = None) -> None:
        for wakers in (self._webhook_wake, self._mail_wake):
            for number, event in wakers.items():
                if shard is None or number == shard:
                    event.set()

    async def after_commit(self, event: Envelope) -> None:
        self.wake(event.shard if event.shard in self._webhook_wake else None)

    def policy_for(self, allowed_ips: list[str]) -> ssrf.UrlPolicy:
        return replace(self.policy, allowed_ips=tuple(allowed_ips))

    async def check_url(self, url: str, allowed_ips: list[str]) -> list[str]:
        """The addresses the URL may be sent to; UnsafeUrl, or OSError/TimeoutError on DNS trouble."""
        async with asyncio.timeout(DNS_TIMEOUT_SECONDS):
            return await ssrf.resolve_and_check(url, self.policy_for(allowed_ips), self.resolver)

    # -- the loops ------------------------------------------------------------------------------
    def shard_loops(self, shard: int) -> list[Loop]:
        """The shard's two sender loops: webhooks and notifications."""
        wakes = (
            self._webhook_wake.setdefault(shard, asyncio.Event()),
            self._mail_wake.setdefault(shard, asyncio.Event()),
        )
        return [
            Loop(f"{what}-sender-s{shard}", functools.partial(self._loop, shard, wake, one_round, what))
            for what, wake, one_round in zip(
                ("webhooks", "notifications"), wakes, (self._webhook_round, self._mail_round), strict=True
            )
        ]

    async def close(self) -> None:
        """Closes the HTTP client (a close hook of the service: after the senders have stopped)."""
        await self.client.aclose()

    async def _loop(
        self,
        shard: int,
        wake: asyncio.Event,
        one_round: Callable[[asyncpg.Pool], Coroutine[Any, Any, float | None]],
        what: str,
    ) -> None:
        pool = self.rt.pools[shard]
        poll = self.config.webhook_poll_seconds
        log.info("%s sender for shard %d started", what, shard)
        while True:
            wake.clear()
            try:
                wait = await one_round(pool)
            except (asyncpg.PostgresError, asyncpg.InterfaceError, OSError) as error:
                log.warning("%s sender (shard %d) failed a round, will retry: %s", what, shard, error)
                wait = poll
            if wait is not None and wait <= 0:
                continue
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(poll if wait is None else min(wait, poll)):
                    await wake.wait()

    # -- webhooks -------------------------------------------------------------------------------
    async def _webhook_round(self, pool: asyncpg.Pool) -> float | None:
        """Sends what is due; returns seconds until the next due delivery (0: more are due now)."""
        lease = uuid.uuid4()
        claimed = await repository.claim_due_deliveries(pool, lease, BATCH)
        if claimed:
            await asyncio.gather(*(self._deliver(pool, lease, row) for row in claimed))
            return 0.0
        return await repository.seconds_to_next_delivery(pool)

    async def _deliver(self, pool: asyncpg.Pool, lease: uuid.UUID, row: asyncpg.Record) -> None:
        # A span per attempt (the sender's idle polls record none): its request and SQL under it.
        with tracer.start_as_current_span(
            "webhook delivery",
            attributes={
                "checkout.webhook.delivery.id": str(row["id"]),
                "checkout.webhook.attempt": row["attempts"] + 1,
            },
        ):
            await self._attempt(pool, lease, row)

    async def _attempt(self, pool: asyncpg.Pool, lease: uuid.UUID, row: asyncpg.Record) -> None:
        attempt = row["attempts"] + 1
        attempted_at = utcnow()
        started = time.monotonic()
        try:
            outcome = await self.send(row, attempted_at, pool)
        except Exception as error:  # a bug must cost one attempt, not the sender loop
            log.exception("webhook delivery %s failed unexpectedly", row["id"])
            outcome = Outcome(False, retryable=True, error=f"internal error: {type(error).__name__}")
        duration_ms = int((time.monotonic() - started) * 1000)
        if outcome.succeeded:
            status, next_at = "succeeded", None
        elif outcome.retryable and attempt <= row["max_retries"]:
            cap = self.config.webhook_retry_max_seconds
            delay = retry_delay(row["retry_backoff"], attempt, self.config.webhook_retry_base_seconds, cap)
            if outcome.retry_after is not None:
                delay = max(delay, min(outcome.retry_after, cap))
            status, next_at = "pending", utcnow() + dt.timedelta(seconds=delay)
        else:
            status, next_at = "failed", None
        metrics.WEBHOOK_ATTEMPTS.labels(_OUTCOMES[status]).inc()
        recorded = await repository.record_attempt(
            pool,
            delivery_id=row["id"],
            endpoint_id=row["endpoint_id"],
            lease=lease,
            attempt=attempt,
            succeeded=outcome.succeeded,
            response_code=outcome.response_code,
            response_body=outcome.response_body,
            error=outcome.error,
            duration_ms=duration_ms,
            attempted_at=attempted_at,
            status=status,
            next_attempt_at=next_at,
        )
        if not recorded:
            log.info(
                "webhook delivery %s changed while attempt %d ran; its result is dropped", row["id"], attempt
            )

    async def _secrets(self, pool: asyncpg.Pool, row: asyncpg.Record, now: dt.datetime) -> list[str]:
        """The secrets that sign this delivery: the endpoint's, and during a rotation's overlap
        the previous one too. Opened here, and only here."""
        refs = [row["secret_ref"]]
        expires = row["previous_secret_expires_at"]
        if row["previous_secret_ref"] and expires is not None and expires > now:
            refs.append(row["previous_secret_ref"])
        async with pool.acquire() as conn:
            found = await self.vault.reveal(conn, refs)
        return [found[ref] for ref in refs if ref in found]

    async def send(self, row: asyncpg.Record, now: dt.datetime, pool: asyncpg.Pool) -> Outcome:
        """One attempt at one delivery."""
        url: str = row["url"]
        secrets = await self._secrets(pool, row, now)
        if not secrets:
            # Retried: a key put back into CHECKOUT_WEBHOOK_SECRET_KEYS makes it sendable again.
            return Outcome(False, retryable=True, error="the endpoint's signing secret cannot be read")
        try:
            addresses = await self.check_url(url, list(row["allowed_ips"]))
        except ssrf.UnsafeUrl as error:
            return Outcome(False, retryable=False, error=f"refused: {error.reason}")
        except (OSError, TimeoutError) as error:
            return Outcome(False, retryable=True, error=f"DNS lookup failed: {error or type(error).__name__}")
        body = row["body"].encode()
        headers = {
            "Content-Type": "application/json",
            "User-Agent": USER_AGENT,
            "Checkout-Event-Id": str(row["event_id"]),
            "Checkout-Event-Type": row["event_type"],
            "Checkout-Signature": signing.sign_all(secrets, body, int(time.time())),
        }
        parts = urlsplit(url)
        timeout = float(row["timeout_seconds"])
        last_error = "no address to connect to"
        for address in addresses:
            target, extensions = _pinned(parts, address)
            try:
                async with asyncio.timeout(timeout):
                    async with self.client.stream(
                        "POST",
                        target,
                        content=body,
                        headers={**headers, "Host": parts.netloc},
                        extensions=extensions,
                        timeout=timeout,
                    ) as response:
                        text = await _read_some(response)
                        retry_after = parse_retry_after(response.headers.get("retry-after"), utcnow())
                        return classify(
                            response.status_code, text, retry_after, response.headers.get("location")
                        )
            except httpx.ConnectError as error:
                last_error = f"connection to {address} failed: {error or type(error).__name__}"
                continue  # the next checked address, if any
            except (TimeoutError, httpx.TimeoutException):
                return Outcome(False, retryable=True, error=f"timed out after {timeout:g}s")
            except httpx.HTTPError as error:
                return Outcome(False, retryable=True, error=f"{type(error).__name__}: {error}"[:500])
        return Outcome(False, retryable=True, error=last_error[:500])

    # -- notifications --------------------------------------------------------------------------
    async def _mail_round(self, pool: asyncpg.Pool) -> float | None:
        lease = uuid.uuid4()
        claimed = await repository.claim_due_notifications(pool, lease, BATCH)
        if claimed:
            await asyncio.gather(*(self._mail(pool, lease, row) for row in claimed))
            return 0.0
        return await repository.seconds_to_next_notification(pool)

    async def _mail(self, pool: asyncpg.Pool, lease: uuid.UUID, row: asyncpg.Record) -> None:
        attempt = row["attempts"] + 1
        retryable = True
        error: str | None = None
        if not self.mailer.configured:
            error, retryable = "no SMTP server configured (CHECKOUT_SMTP_URL)", False
        else:
            try:
                await asyncio.to_thread(
                    self.mailer.send,
                    f"<{row['id']}@checkout.local>",
                    row["recipient"],
                    row["subject"],
                    row["body"],
                )
            except smtplib.SMTPResponseException as failure:
                # 4xx is "try again later"; 5xx is a permanent refusal (bad mailbox, policy).
                error, retryable = (
                    f"SMTP {failure.smtp_code}: {failure.smtp_error!r}"[:500],
                    failure.smtp_code < 500,
                )
            except smtplib.SMTPRecipientsRefused as failure:
                error, retryable = f"recipient refused: {failure.recipients}"[:500], False
            except (smtplib.SMTPException, OSError) as failure:
                error = f"{type(failure).__name__}: {failure}"[:500]
        now = utcnow()
        if error is None:
            status, next_at, delivered = "sent", None, now
        elif retryable and attempt < NOTIFICATION_MAX_ATTEMPTS:
            delay = retry_delay(
                "exponential",
                attempt,
                self.config.webhook_retry_base_seconds,
                self.config.webhook_retry_max_seconds,
            )
            status, next_at, delivered = "pending", now + dt.timedelta(seconds=delay), None
        else:
            status, next_at, delivered = "failed", None, None
        await repository.record_notification(
            pool,
            notification_id=row["id"],
            lease=lease,
            attempts=attempt,
            status=status,
            error=error,
            next_attempt_at=next_at,
            delivered_at=delivered,
        )


def _pinned(parts: Any, address: str) -> tuple[str, dict[str, Any]]:
    """The URL aimed at one checked address, and the TLS name to present and verify."""
    host = f"[{address}]" if ":" in address else address
    netloc = f"{host}:{parts.port}" if parts.port else host
    target = urlunsplit((parts.scheme, netloc, parts.path or "/", parts.query, ""))
    extensions: dict[str, Any] = {}
    if parts.scheme == "https" and parts.hostname != address:
        extensions["sni_hostname"] = parts.hostname
    return target, extensions


async def _read_some(response: httpx.Response) -> str:
    """The start of the response body: enough to show the merchant what came back."""
    chunks: list[bytes] = []
    size = 0
    async for chunk in response.aiter_bytes():
        chunks.append(chunk)
        size += len(chunk)
        if size >= MAX_RESPONSE_BODY * 4:
            break
    return b"".join(chunks).decode("utf-8", errors="replace")[:MAX_RESPONSE_BODY]
