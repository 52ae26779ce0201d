"""Tiered placement: the slot a new merchant is minted in, by its plan and its email."""

from __future__ import annotations

import pytest

from libs.common.placement import PlacementError, merchant_slot, parse_placement
from libs.common.shardmap import ShardMap, slot_for_email

POLICY = {"enterprise": "enterprise", "pro": "pro"}
# Shards 0 and 1 shared; shard 2, slots 0-511, enterprise.
MAP = ShardMap.even(2).reassign(0, 512, 2)
TIERS = {0: "shared", 1: "shared", 2: "enterprise"}


def email_in(slots: range, plan: str = "") -> str:
    return next(e for n in range(100_000) if slot_for_email(e := f"{plan}{n}@shop.test") in slots)


def test_without_a_policy_every_merchant_lives_in_its_emails_slot() -> None:
    email = email_in(range(600, 4096))
    assert merchant_slot(
        ShardMap.even(2), {0: "shared", 1: "shared"}, {}, "enterprise", email
    ) == slot_for_email(email)


def test_a_merchant_of_a_tier_lands_on_a_shard_of_that_tier() -> None:
    email = email_in(range(512, 4096))
    slot = merchant_slot(MAP, TIERS, POLICY, "enterprise", email)
    assert MAP.shard_for_slot(slot) == 2
    assert merchant_slot(MAP, TIERS, POLICY, "enterprise", email) == slot  # chosen by the email


def test_free_merchants_fill_the_shared_shards_even_when_their_email_is_elsewhere() -> None:
    email = email_in(range(0, 512))
    assert MAP.shard_for_slot(merchant_slot(MAP, TIERS, POLICY, "free", email)) in (0, 1)
    shared = email_in(range(512, 4096))
    assert merchant_slot(MAP, TIERS, POLICY, "free", shared) == slot_for_email(shared)


def test_a_tier_without_shards_falls_back_to_the_shared_ones() -> None:
    email = email_in(range(0, 512), "pro")
    assert MAP.shard_for_slot(merchant_slot(MAP, TIERS, POLICY, "pro", email)) in (0, 1)


def test_a_placement_policy_names_plans_and_tiers() -> None:
    assert parse_placement('{"enterprise": "enterprise"}') == {"enterprise": "enterprise"}
    assert parse_placement("") == {}
    for bad, message in (
        ("[]", "JSON object"),
        ('{"gold": "pro"}', "not a plan"),
        ('{"pro": "fast"}', "not a tier"),
    ):
        with pytest.raises(PlacementError, match=message):
            parse_placement(bad)
