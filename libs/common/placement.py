"""Tiered placement: which slot a new merchant is minted in, so that it lands on a shard of its
plan's tier (CHECKOUT_PLACEMENT: plan → shard tier; free merchants fill the shared shards).

Placement composes with the slot map instead of replacing it: a merchant id still carries its
slot and routes by it (libs/common/ids.py), and placement only chooses that slot among the slots
the map gives to shards of the wanted tier. So a slot move carries its merchants along and every
router keeps working.

Why an email claim: merchant ids used to be minted in the slot of the contact email, which made
the per-shard unique index on contact_email platform-wide (two sign-ups with one email met on one
shard). A merchant placed by tier may live elsewhere, so the uniqueness moves to a claim row on
the email slot's shard (the merchant service's `email_claims`): the first sign-up claims the
email for its merchant id, and every later one is told that id. A claim whose merchant was never
created (a crash between the two) is completed by the next sign-up with that email, under the
claimed id, so no email is ever locked out. Where the email slot's shard already has the wanted
tier (always, when every shard is shared: the default), the merchant is minted in the email's
slot as before, and claim and merchant are written in one transaction.

Not done here: a plan is set at sign-up (no call changes it yet), and a merchant whose plan
changed would stay where it is (moving one merchant would move its whole slot, with the other
merchants in it); the balance planner keeps each tier's shards even among themselves.
"""

from __future__ import annotations

import json
from collections.abc import Mapping

from libs.common.shardmap import ShardMap, fnv1a_32, slot_for_email

PLANS = ("free", "pro", "enterprise")
SHARED_TIER = "shared"
# The seed's hardware profiles (enterprise, pro, free, overflow), and the shared default.
TIERS = (SHARED_TIER, "enterprise", "pro", "free", "overflow")


class PlacementError(ValueError):
    pass


def parse_placement(raw: str, name: str = "CHECKOUT_PLACEMENT") -> dict[str, str]:
    """`{"enterprise": "enterprise", "pro": "pro"}`: the shard tier of each plan; a plan not named
    goes to the shared shards."""
    if not raw:
        return {}
    try:
        policy = json.loads(raw)
    except json.JSONDecodeError as error:
        raise PlacementError(f"{name} must be a JSON object of plan to tier: {error}") from None
    if not isinstance(policy, dict):
        raise PlacementError(f"{name} must be a JSON object of plan to tier")
    for plan, tier in policy.items():
        if plan not in PLANS:
            raise PlacementError(f"{name}: {plan!r} is not a plan ({', '.join(PLANS)})")
        if tier not in TIERS:
            raise PlacementError(f"{name}: {plan} -> {tier!r} is not a tier ({', '.join(TIERS)})")
    return dict(policy)


def merchant_slot(
    shard_map: ShardMap, tiers: Mapping[int, str], policy: Mapping[str, str], plan: str, email: str
) -> int:
    """The slot a new merchant of `plan` with `email` is minted in.

    The email's own slot when its shard has the plan's tier; otherwise a slot of the tier's
    shards, chosen by the email's hash (spread evenly over them). A tier without shards falls
    back to the shared ones, and those failing too, to the email's slot.
    """
    email_slot = slot_for_email(email)
    wanted = policy.get(plan or "free", SHARED_TIER)
    for tier in dict.fromkeys((wanted, SHARED_TIER)):
        if tiers.get(shard_map.shard_for_slot(email_slot), SHARED_TIER) == tier:
            return email_slot
        slots = [s for r in shard_map.ranges if tiers.get(r.shard) == tier for s in range(r.start, r.end)]
        if slots:
            return slots[fnv1a_32(email.strip().lower().encode()) % len(slots)]
    return email_slot
