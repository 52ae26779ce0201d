"""The gateway holds every key to what its type may use, on every request: a publishable key
issued before the allow list existed (and so holding more) is still refused (issue 9, item 4)."""

from __future__ import annotations

import uuid

import pytest

from services.gateway.auth import Caller, require_permission
from services.gateway.errors import ApiError


def key(key_type: str, *permissions: str) -> Caller:
    return Caller(
        actor="merchant:k",
        merchant_id=uuid.uuid4(),
        api_key_id=uuid.uuid4(),
        key_type=key_type,
        permissions=frozenset(permissions),
    )


def test_a_publishable_key_may_use_only_invoice_creation_whatever_it_holds() -> None:
    old = key("publishable", "invoices:write", "invoices:read", "invoices:cancel", "api_keys:write")
    require_permission(old, "invoices:write")
    for permission in ("invoices:read", "invoices:cancel", "api_keys:write"):
        with pytest.raises(ApiError) as refused:
            require_permission(old, permission)
        assert refused.value.code == "permission_denied"
        assert "publishable" in refused.value.message


def test_a_secret_key_uses_what_it_holds_and_nothing_more() -> None:
    writer = key("secret", "invoices:write")
    require_permission(writer, "invoices:write")
    with pytest.raises(ApiError) as refused:
        require_permission(writer, "invoices:cancel")
    assert refused.value.code == "permission_denied"
