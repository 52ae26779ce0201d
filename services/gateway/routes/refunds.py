"""/v1/invoices/{id}/refunds: a merchant refunds a paid invoice (merchant key);
/v1/refunds/{refund_id}/claim: the payer, holding the claim link's token, names the address to be
paid (public). Non-custodial: the merchant pays the claimed address from its own wallet, and the
watcher marks the refund completed when it sees the money arrive."""

from __future__ import annotations

import uuid
from typing import Any

from checkout.invoice.v1 import invoice_pb2

from libs.common.cache import invoice_key
from services.gateway.context import CallContext, request_id_of
from services.gateway.errors import ApiError
from services.gateway.operations import Args, Operation, Reply, Rule
from services.gateway.schemas.refunds import PayerRefund, Refund, RefundClaim, RefundClaimQuery, RefundCreate
from services.gateway.state import GatewayState, state_of

TAG = "Refunds"
CREATE_RULES = (
    Rule(
        r"amount|crypto_amount",
        r"must be at most .*|nothing is left to refund",
        "amount, crypto_amount: at most what was received less what is already refunded (in the "
        "invoice's currency at `rate`, or in its crypto currency).",
    ),
    Rule(
        r"crypto_amount",
        r"give amount or crypto_amount, not both",
        "amount, crypto_amount: one of them, or neither.",
    ),
    Rule(
        r"amount|crypto_amount",
        r"must have at most \d+ decimal places for \w+",
        "amount: the currency's minor unit (JPY: none); crypto_amount: the coin's decimals.",
    ),
)
CLAIM_RULES = (
    Rule(
        r"address",
        r".+ \(on \w+\)",
        "address: an address of the invoice's network (EVM: 0x + 40 hex, a mixed-case one must match "
        "its EIP-55 checksum; Bitcoin: bech32 or base58).",
    ),
)
EXAMPLE = {"amount": "10.00", "rate": "invoice", "reason": "one bag arrived damaged"}


async def _forget_invoice(args: Args[Any, Any]) -> None:
    """The invoice shows its refunds: this caller's next GET reads the change (the service drops
    the key too)."""
    state = state_of(args.request)
    invoice_id = args.ids["id"]
    state.views.changed(invoice_id)
    fence = args.consistency.returned.at(state.backends.shard_of(args.merchant_id))
    await state.cache.invalidate(invoice_key(str(invoice_id)), fence=fence)


async def create_refund(args: Args[RefundCreate, None]) -> Reply:
    body = args.body
    state = state_of(args.request)
    backends = state.backends
    refund, replayed = await backends.command(
        backends.invoices(backends.shard_of(args.merchant_id)).CreateRefund,
        invoice_pb2.CreateRefundRequest(
            merchant_id=str(args.merchant_id),
            invoice_id=str(args.ids["id"]),
            amount=body.amount or "",
            crypto_amount=body.crypto_amount or "",
            rate=body.rate,
            reason=body.reason or "",
        ),
        args.command_context(),
    )
    await _forget_invoice(args)
    return Reply(Refund.of(refund, state.public_url), replayed=replayed)


async def cancel_refund(args: Args[None, None]) -> Reply:
    state = state_of(args.request)
    backends = state.backends
    refund, replayed = await backends.command(
        backends.invoices(backends.shard_of(args.merchant_id)).CancelRefund,
        invoice_pb2.CancelRefundRequest(
            merchant_id=str(args.merchant_id),
            invoice_id=str(args.ids["id"]),
            refund_id=str(args.ids["refund_id"]),
        ),
        args.command_context(),
    )
    await _forget_invoice(args)
    return Reply(Refund.of(refund, state.public_url), replayed=replayed)


def _checked(refund_id: uuid.UUID, token: str) -> str:
    # The token names its refund (its first 32 hex digits): a path that says otherwise is another's.
    if token[:32] != refund_id.hex:
        raise ApiError("not_found", "refund not found")
    return token


async def refund_claim(
    state: GatewayState, refund_id: uuid.UUID, token: str, request_id: str
) -> invoice_pb2.Refund:
    """The payer's view of a refund by its claim token: the API below and the page (pages/refund.py)."""
    backends = state.backends
    return await backends.call(
        backends.invoices(backends.shard_of(refund_id)).GetRefundClaim,
        invoice_pb2.GetRefundClaimRequest(claim_token=_checked(refund_id, token)),
        CallContext(request_id, "anonymous"),
    )


async def claim(
    state: GatewayState, refund_id: uuid.UUID, token: str, address: str, request_id: str
) -> invoice_pb2.Refund:
    backends = state.backends
    return await backends.call(
        backends.invoices(backends.shard_of(refund_id)).ClaimRefund,
        invoice_pb2.ClaimRefundRequest(claim_token=_checked(refund_id, token), address=address),
        CallContext(request_id, "anonymous"),
    )


async def get_refund_claim(args: Args[None, RefundClaimQuery]) -> PayerRefund:
    state, request_id = state_of(args.request), request_id_of(args.request)
    return PayerRefund.of(await refund_claim(state, args.ids["refund_id"], args.query.token, request_id))


async def claim_refund(args: Args[RefundClaim, None]) -> PayerRefund:
    state, request_id = state_of(args.request), request_id_of(args.request)
    body = args.body
    return PayerRefund.of(await claim(state, args.ids["refund_id"], body.token, body.address, request_id))


operations = [
    Operation(
        "POST", "/v1/invoices/{id}/refunds", create_refund, "Refund an invoice, in full or in part", TAG,
        "merchant", response=Refund, status=201, permission="refunds:write", body=RefundCreate,
        errors=(404, 409), rules=CREATE_RULES, idempotent=True, example=EXAMPLE,
        description="Non-custodial: records what the merchant owes back and answers with a `claim_url` "
        "for the payer, who names the address to be paid; the merchant then sends `crypto_amount` "
        "(`amount_units` base units) to it from its own wallet, and the watcher marks the refund "
        "`completed` (`refund.created` → `refund.claimed` → `refund.completed`, as webhooks). "
        "A paid, overpaid or paid-late invoice only: 409 `failed_precondition` otherwise.",
    ),
    Operation(
        "POST", "/v1/invoices/{id}/refunds/{refund_id}/cancel", cancel_refund, "Cancel a refund before it is paid",
        TAG, "merchant", response=Refund, permission="refunds:write", errors=(404, 409), idempotent=True,
        description="409 `failed_precondition` once the watcher has seen it paid. Its amount can be "
        "refunded again.",
    ),
    Operation(
        "GET", "/v1/refunds/{refund_id}/claim", get_refund_claim, "The payer's view of a refund", TAG,
        "public", response=PayerRefund, query=RefundClaimQuery, errors=(404,),
        description="No credentials: the claim link's token. Shows nothing else of the merchant's.",
    ),
    Operation(
        "POST", "/v1/refunds/{refund_id}/claim", claim_refund, "Name the address a refund is paid to", TAG,
        "public", response=PayerRefund, body=RefundClaim, errors=(404, 409), rules=CLAIM_RULES,
        example={"token": "0" * 80, "address": "0xd8dA6BF26964aF9D7eEd9e03E53415D37aA96045"},
        description="Once: a second claim is 409 `conflict`. The address must be one of the invoice's "
        "network (422 naming `address`).",
    ),
]  # fmt: skip
