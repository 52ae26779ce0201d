from __future__ import annotations

import hashlib
import json

import pytest

from services.gateway.errors import ApiError
from services.gateway.idempotency import request_hash, validate_key


def test_the_same_body_with_keys_in_another_order_hashes_the_same() -> None:
    one = json.loads('{"title": "a", "items": [{"name": "x", "quantity": "1"}]}')
    two = json.loads('{"items": [{"quantity": "1", "name": "x"}], "title": "a"}')
    assert request_hash("POST", "/v1/invoices", one) == request_hash("POST", "/v1/invoices", two)


def test_another_body_or_path_hashes_differently() -> None:
    base = request_hash("POST", "/v1/invoices", {"title": "a"})
    assert request_hash("POST", "/v1/invoices", {"title": "b"}) != base
    assert request_hash("POST", "/v1/merchants", {"title": "a"}) != base


def test_the_hash_is_sha256_of_method_path_and_canonical_json() -> None:
    expected = hashlib.sha256(b'POST /v1/invoices\n{"a":1,"b":[2,3]}').hexdigest()
    assert request_hash("post", "/v1/invoices", {"b": [2, 3], "a": 1}) == expected


def test_an_absent_key_is_fine_and_a_printable_key_passes_through() -> None:
    assert validate_key(None) is None
    assert validate_key("order-42") == "order-42"


@pytest.mark.parametrize("raw", ["", "x" * 256, "tab\there", "ключ"])
def test_a_key_that_cannot_travel_as_grpc_metadata_is_a_422(raw: str) -> None:
    with pytest.raises(ApiError) as error:
        validate_key(raw)
    assert error.value.status == 422
    assert error.value.details[0].field == "Idempotency-Key"
