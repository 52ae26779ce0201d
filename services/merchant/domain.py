"""Merchant and ApiKey aggregates: their guards and the events they emit.

Stdlib plus the generated event messages (the events are defined once, in protos/) and the
watch-only key checks in libs/common/addresses.py.
"""

from __future__ import annotations

import datetime as dt
import re
import uuid
from decimal import Decimal, InvalidOperation
from typing import Any

from checkout.merchant.v1 import events_pb2 as ev

from libs.common import addresses, apikeys
from libs.common.aggregate import Aggregate
from libs.common.errors import FailedPrecondition, FieldViolation, InvalidArgument, PermissionDenied
from libs.common.limits import (
    API_KEY_NAME_MAX_CHARS,
    BUSINESS_NAME_MAX_CHARS,
    EMAIL_MAX_CHARS,
    RATE_SPREAD_PERCENT_MAX,
    SETTINGS_MAX_BYTES,
    UNDERPAID_PERCENT_MAX,
)
from libs.common.placement import PLANS
from libs.common.protoconv import plain, struct, timestamp

NETWORKS = {"ethereum": addresses.validate_ethereum_xpub, "bitcoin": addresses.validate_bitcoin_xpub}
EMAIL_RE = re.compile(r"^[^@\s]+@[^@\s]+\.[^@\s]+$")


def _check_name(value: str, field: str, limit: int, problems: list[FieldViolation]) -> None:
    if not value.strip():
        problems.append(FieldViolation(field, "must not be blank"))
    elif len(value) > limit:
        problems.append(FieldViolation(field, f"must be at most {limit} characters"))


def _check_settings(settings: dict[str, Any], problems: list[FieldViolation]) -> None:
    if len(repr(settings)) > SETTINGS_MAX_BYTES:
        problems.append(FieldViolation("settings", f"must be at most {SETTINGS_MAX_BYTES} bytes"))
    if "rate_spread_percent" in settings:
        raw_spread = settings["rate_spread_percent"]
        try:
            spread = Decimal(raw_spread) if isinstance(raw_spread, str) else None
        except InvalidOperation:
            spread = None
        if spread is None or not spread.is_finite() or not 0 <= spread <= RATE_SPREAD_PERCENT_MAX:
            problems.append(
                FieldViolation(
                    "settings.rate_spread_percent",
                    f"must be a decimal string between 0 and {RATE_SPREAD_PERCENT_MAX}",
                )
            )
    tolerance = settings.get("payment_tolerance", {})
    if not isinstance(tolerance, dict):
        problems.append(FieldViolation("settings.payment_tolerance", "must be an object"))
        return
    if "underpaid_percent" in tolerance:
        raw = tolerance["underpaid_percent"]
        try:
            value = Decimal(raw) if isinstance(raw, str) else None
        except InvalidOperation:
            value = None
        if value is None or not value.is_finite() or not 0 <= value <= UNDERPAID_PERCENT_MAX:
            problems.append(
                FieldViolation(
                    "settings.payment_tolerance.underpaid_percent",
                    f"must be a decimal string between 0 and {UNDERPAID_PERCENT_MAX}",
                )
            )


def _check_wallets(wallets: dict[str, str], problems: list[FieldViolation]) -> None:
    for network, key in sorted(wallets.items()):
        validate = NETWORKS.get(network)
        if validate is None:
            problems.append(
                FieldViolation(f"wallets.{network}", f"unknown network; use one of {sorted(NETWORKS)}")
            )
            continue
        try:
            validate(key)
        except ValueError as error:
            problems.append(FieldViolation(f"wallets.{network}", str(error)))


def _raise(problems: list[FieldViolation]) -> None:
    if problems:
        raise InvalidArgument("; ".join(f"{p.field}: {p.reason}" for p in problems), problems)


def normalized_email(raw: str) -> str | None:
    """A contact email as it is stored and claimed (trimmed, lower case); None: not an email."""
    email = raw.strip().lower()
    if not EMAIL_RE.match(email) or len(email) > EMAIL_MAX_CHARS:
        return None
    return email


class Merchant(Aggregate):
    aggregate_type = "Merchant"

    def __init__(self, aggregate_id: uuid.UUID) -> None:
        super().__init__(aggregate_id)
        self.business_name = ""
        self.contact_email = ""
        self.plan_type = "free"
        self.status = "active"
        self.settings: dict[str, Any] = {}
        self.wallets: dict[str, str] = {}

    @classmethod
    def create(
        cls,
        merchant_id: uuid.UUID,
        *,
        business_name: str,
        contact_email: str,
        plan_type: str,
        settings: dict[str, Any],
        wallets: dict[str, str],
        now: dt.datetime,
    ) -> Merchant:
        problems: list[FieldViolation] = []
        _check_name(business_name, "business_name", BUSINESS_NAME_MAX_CHARS, problems)
        email = normalized_email(contact_email)
        if email is None:
            problems.append(FieldViolation("contact_email", "must be an email address"))
        plan = plan_type or "free"
        if plan not in PLANS:
            problems.append(FieldViolation("plan_type", f"must be one of {', '.join(PLANS)}"))
        _check_settings(settings, problems)
        _check_wallets(wallets, problems)
        _raise(problems)
        merchant = cls(merchant_id)
        merchant._emit(
            ev.MerchantCreated(
                merchant_id=str(merchant_id),
                business_name=business_name.strip(),
                contact_email=email or "",
                plan_type=plan,
                settings=struct(settings),
                wallets=wallets,
                created_at=timestamp(now),
            )
        )
        return merchant

    def update(
        self,
        *,
        business_name: str | None,
        settings: dict[str, Any] | None,
        wallets: dict[str, str] | None,
        now: dt.datetime,
    ) -> None:
        if self.status != "active":
            raise FailedPrecondition(f"merchant is {self.status}")
        problems: list[FieldViolation] = []
        if business_name is not None:
            _check_name(business_name, "business_name", BUSINESS_NAME_MAX_CHARS, problems)
        if settings is not None:
            _check_settings(settings, problems)
        if wallets is not None:
            _check_wallets(wallets, problems)
        _raise(problems)
        event = ev.MerchantUpdated(merchant_id=str(self.id), updated_at=timestamp(now))
        if business_name is not None and business_name.strip() != self.business_name:
            event.business_name = business_name.strip()
        if settings is not None and settings != self.settings:
            event.settings.CopyFrom(struct(settings))
            event.settings_changed = True
        if wallets is not None and wallets != self.wallets:
            event.wallets.update(wallets)
            event.wallets_changed = True
        if event.HasField("business_name") or event.settings_changed or event.wallets_changed:
            self._emit(event)

    def _apply(self, event: Any) -> None:
        if isinstance(event, ev.MerchantCreated):
            self.business_name = event.business_name
            self.contact_email = event.contact_email
            self.plan_type = event.plan_type
            self.settings = plain(event.settings)
            self.wallets = dict(event.wallets)
        elif isinstance(event, ev.MerchantUpdated):
            if event.HasField("business_name"):
                self.business_name = event.business_name
            if event.settings_changed:
                self.settings = plain(event.settings)
            if event.wallets_changed:
                self.wallets = dict(event.wallets)


class ApiKey(Aggregate):
    aggregate_type = "ApiKey"

    def __init__(self, aggregate_id: uuid.UUID) -> None:
        super().__init__(aggregate_id)
        self.merchant_id = ""
        self.status = "active"

    @classmethod
    def issue(
        cls,
        key_id: uuid.UUID,
        *,
        merchant_id: uuid.UUID,
        name: str,
        key_type: str,
        permissions: list[str] | None,
        held: frozenset[str] | None,
        expires_at: dt.datetime | None,
        now: dt.datetime,
    ) -> tuple[ApiKey, str]:
        """Returns the aggregate and the plaintext key, which is never stored.

        `permissions` None asks for the key type's default; a list (empty included) for exactly
        that. `held` is what the grantor holds (None: the operator, who holds everything): a key
        only ever grants a subset of it, so a limited key cannot mint a stronger one.
        """
        problems: list[FieldViolation] = []
        _check_name(name, "name", API_KEY_NAME_MAX_CHARS, problems)
        kind = key_type or "secret"
        if kind not in apikeys.KEY_TYPES:
            problems.append(FieldViolation("key_type", "must be secret or publishable"))
        requested = sorted(set(permissions)) if permissions is not None else None
        unknown = sorted(set(requested or ()) - set(apikeys.PERMISSIONS))
        if unknown:
            problems.append(FieldViolation("permissions", f"unknown permissions: {', '.join(unknown)}"))
        elif kind in apikeys.ALLOWED_PERMISSIONS:
            allowed = apikeys.ALLOWED_PERMISSIONS[kind]
            if requested is not None and not set(requested) <= allowed:
                problems.append(
                    FieldViolation("permissions", f"a {kind} key may hold only {', '.join(sorted(allowed))}")
                )
        if expires_at is not None and expires_at <= now:
            problems.append(FieldViolation("expires_at", "must be in the future"))
        _raise(problems)
        if requested is None:
            granted = [p for p in apikeys.DEFAULT_PERMISSIONS[kind] if held is None or p in held]
        else:
            beyond = sorted(set(requested) - held) if held is not None else []
            if beyond:
                raise PermissionDenied(
                    f"the granting API key cannot grant what it lacks: {', '.join(beyond)}"
                )
            granted = requested
        plaintext = apikeys.mint(key_id, kind)
        key = cls(key_id)
        key._emit(
            ev.ApiKeyCreated(
                api_key_id=str(key_id),
                merchant_id=str(merchant_id),
                name=name.strip(),
                key_type=kind,
                permissions=granted,
                key_hash=apikeys.hash_key(plaintext),
                prefix=apikeys.prefix_of(plaintext),
                expires_at=timestamp(expires_at),
                created_at=timestamp(now),
                permissions_revision=apikeys.PERMISSIONS_REVISION,
            )
        )
        return key, plaintext

    def revoke(self, now: dt.datetime) -> None:
        if self.status == "revoked":
            return  # revoking twice is harmless and appends nothing
        self._emit(
            ev.ApiKeyRevoked(api_key_id=str(self.id), merchant_id=self.merchant_id, revoked_at=timestamp(now))
        )

    def _apply(self, event: Any) -> None:
        if isinstance(event, ev.ApiKeyCreated):
            self.merchant_id = event.merchant_id
        elif isinstance(event, ev.ApiKeyRevoked):
            self.status = "revoked"
