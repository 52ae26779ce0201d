"""Webhook signatures: what merchants verify, including rotation and replay protection."""

from __future__ import annotations

import re
import textwrap
from collections.abc import Callable
from pathlib import Path
from typing import cast

import pytest

from services.merchant.webhooks import signing
from services.merchant.webhooks.signing import SignatureError, new_secret, sign, verify

NOW = 1_750_000_000
BODY = b'{"id":"evt_1","type":"invoice.paid"}'


def test_a_signature_verifies_against_the_same_secret_and_body() -> None:
    secret = new_secret()
    header = sign(secret, BODY, NOW)
    assert re.fullmatch(r"t=1750000000,v1=[0-9a-f]{64}", header)
    verify(secret, BODY, header, now=NOW)


def test_new_secrets_are_prefixed_and_unique() -> None:
    first, second = new_secret(), new_secret()
    assert first.startswith("whsec_") and len(first) == len("whsec_") + 43
    assert first != second


def test_a_tampered_body_is_rejected() -> None:
    header = sign("whsec_a", BODY, NOW)
    with pytest.raises(SignatureError, match="no matching v1"):
        verify("whsec_a", BODY.replace(b"paid", b"void"), header, now=NOW)


def test_a_signature_made_with_another_secret_is_rejected() -> None:
    header = sign("whsec_a", BODY, NOW)
    with pytest.raises(SignatureError, match="no matching v1"):
        verify("whsec_b", BODY, header, now=NOW)


@pytest.mark.parametrize("offset", [301, -301, 10**6])
def test_timestamps_outside_the_tolerance_in_either_direction_are_rejected(offset: int) -> None:
    header = sign("whsec_a", BODY, NOW - offset)
    with pytest.raises(SignatureError, match="outside tolerance"):
        verify("whsec_a", BODY, header, now=NOW)


def test_timestamps_at_the_edge_of_the_tolerance_are_accepted() -> None:
    verify("whsec_a", BODY, sign("whsec_a", BODY, NOW - 300), now=NOW)
    verify("whsec_a", BODY, sign("whsec_a", BODY, NOW + 300), now=NOW)
    verify("whsec_a", BODY, sign("whsec_a", BODY, NOW - 50), tolerance_seconds=60, now=NOW)


def test_the_timestamp_is_covered_by_the_mac_so_it_cannot_be_refreshed() -> None:
    old = sign("whsec_a", BODY, NOW - 3600)
    replayed = old.replace(f"t={NOW - 3600}", f"t={NOW}")
    with pytest.raises(SignatureError, match="no matching v1"):
        verify("whsec_a", BODY, replayed, now=NOW)


def test_during_rotation_either_secret_verifies_a_header_signed_with_both() -> None:
    old, new = "whsec_old", "whsec_new"
    header = sign(old, BODY, NOW) + "," + sign(new, BODY, NOW).split(",")[1]
    verify(old, BODY, header, now=NOW)
    verify(new, BODY, header, now=NOW)
    verify([new, old], BODY, sign(old, BODY, NOW), now=NOW)
    verify((old, new), BODY, sign(new, BODY, NOW), now=NOW)
    with pytest.raises(SignatureError):
        verify(["whsec_other", "whsec_third"], BODY, header, now=NOW)


def test_whitespace_and_item_order_are_tolerated() -> None:
    mac = sign("whsec_a", BODY, NOW).split("v1=")[1]
    verify("whsec_a", BODY, f" v1 = {mac} ,\tt={NOW} ", now=NOW)


def test_unknown_schemes_are_ignored_and_never_count_as_a_signature() -> None:
    mac = sign("whsec_a", BODY, NOW).split("v1=")[1]
    verify("whsec_a", BODY, f"t={NOW},v0=deadbeef,v1={mac},v2=x", now=NOW)
    with pytest.raises(SignatureError, match="missing v1"):
        verify("whsec_a", BODY, f"t={NOW},v0={mac}", now=NOW)


MAC = "a" * 64


@pytest.mark.parametrize(
    ("header", "reason"),
    [
        ("", "malformed"),
        ("garbage", "malformed"),
        (f"t={NOW}", "missing v1"),
        (f"v1={MAC}", "missing t"),
        (f"t={NOW},,v1={MAC}", "malformed"),
        (f"t={NOW},v1={MAC},", "malformed"),
        (f"t=,v1={MAC}", "malformed"),
        (f"t=abc,v1={MAC}", "malformed timestamp"),
        (f"t=-{NOW},v1={MAC}", "malformed timestamp"),
        (f"t=1_750_000_000,v1={MAC}", "malformed timestamp"),
        (f"t={NOW}.5,v1={MAC}", "malformed timestamp"),
        (f"t={NOW},t={NOW},v1={MAC}", "duplicate t"),
        (f"t={NOW},v1=xyz", "malformed v1"),
        (f"t={NOW},v1={MAC.upper()}", "malformed v1"),
        (f"t={NOW},v1={MAC}0", "malformed v1"),
        (f"t={NOW};v1={MAC}", "malformed"),
        (f"t={NOW},v1={MAC} extra", "malformed"),
        (f"t={NOW},v 1={MAC}", "malformed"),
        (f"t={NOW},v1=" + "a" * 5000, "too long"),
    ],
)
def test_malformed_headers_are_rejected_with_a_reason(header: str, reason: str) -> None:
    with pytest.raises(SignatureError, match=reason) as caught:
        verify("whsec_a", BODY, header, now=NOW)
    assert isinstance(caught.value, ValueError)
    assert reason in caught.value.reason


def test_verifying_without_any_secret_is_a_configuration_error_not_a_bad_signature() -> None:
    header = sign("whsec_a", BODY, NOW)
    for secrets in ([], "", ["whsec_a", ""]):
        with pytest.raises(ValueError) as caught:
            verify(secrets, BODY, header, now=NOW)
        assert not isinstance(caught.value, SignatureError)


def test_the_merchant_example_in_the_module_docstring_agrees_with_sign(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    doc = signing.__doc__ or ""
    match = re.search(r"```python\n(.*?)```", doc, re.S)
    assert match, "the docstring lost its verification example"
    code = textwrap.dedent(match.group(1))
    assert 10 <= len(code.strip().splitlines()) <= 15
    namespace: dict[str, object] = {}
    exec(code, namespace)
    check = cast(Callable[[str, bytes, str], bool], namespace["verify_checkout_signature"])
    monkeypatch.setattr("time.time", lambda: float(NOW))
    secret = new_secret()
    assert check(secret, BODY, sign(secret, BODY, NOW))
    assert check(secret, BODY, f" v0=00, v1={sign(secret, BODY, NOW).split('v1=')[1]} , t={NOW}")
    assert not check(secret, BODY + b" ", sign(secret, BODY, NOW))
    assert not check("whsec_other", BODY, sign(secret, BODY, NOW))
    assert not check(secret, BODY, sign(secret, BODY, NOW - 301))
    assert not check(secret, BODY, "garbage")


def test_the_readme_shows_the_same_verification_example(repo_root: Path) -> None:
    readme = (repo_root / "README.md").read_text()
    section = readme.split("## Webhooks and notifications", 1)[1]
    shown = re.search(r"```python\n(.*?)```", section, re.S)
    documented = re.search(r"```python\n(.*?)```", signing.__doc__ or "", re.S)
    assert shown and documented
    assert textwrap.dedent(shown.group(1)) == textwrap.dedent(documented.group(1))


def test_during_a_rotation_both_secrets_sign_one_header() -> None:
    header = signing.sign_all(["whsec_new", "whsec_old"], BODY, NOW)
    assert header.count("v1=") == 2
    verify("whsec_new", BODY, header, now=NOW)
    verify("whsec_old", BODY, header, now=NOW)
    assert signing.sign_all(["whsec_new"], BODY, NOW) == sign("whsec_new", BODY, NOW)
