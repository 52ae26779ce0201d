"""The payer's refund claim page, `/refund/{refund_id}?token=…`: the link a merchant's refund
answers with (`claim_url`). It shows what is being refunded and, until it is claimed, a form for
the address to be paid; afterwards where the refund stands (claimed: waiting for the merchant to
send it; completed: the transaction). Public like the checkout page, limited per client IP, and
read and written through the same calls as `/v1/refunds/{refund_id}/claim` (routes/refunds.py).
The token travels in the query string and the form, never in the path (which the access log keeps).
"""

from __future__ import annotations

from checkout.invoice.v1 import invoice_pb2
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from services.gateway.auth import limit_by_ip
from services.gateway.context import request_id_of
from services.gateway.errors import ApiError
from services.gateway.operations import path_id
from services.gateway.pages import html
from services.gateway.pages.dashboard import FormRejected, read_form
from services.gateway.pages.pay import payer_error_page
from services.gateway.pages.payer import NETWORK_NAMES
from services.gateway.routes.refunds import claim, refund_claim
from services.gateway.schemas.refunds import PayerRefund
from services.gateway.state import state_of

# What the payer is told of each status, in plain words.
STATUS_WORDS = {
    "awaiting_claim": "Tell us where to send your refund.",
    "claimed": "Thank you. The merchant will send the refund to the address below.",
    "completed": "Your refund has been sent.",
    "cancelled": "The merchant withdrew this refund. Ask them if you expected it.",
}


def _page(
    refund: invoice_pb2.Refund, token: str, *, error: str = "", address: str = "", status: int = 200
) -> Response:
    view = PayerRefund.of(refund)
    return html.page(
        "refund.html",
        {
            "refund": view,
            "token": token,
            "network": NETWORK_NAMES.get(view.network, view.network),
            "words": STATUS_WORDS.get(view.status, ""),
            "error": error,
            "address": address,
        },
        status=status,
        headers={"Cache-Control": "no-store", "Referrer-Policy": "no-referrer"},
    )


async def refund_page(request: Request) -> Response:
    state, request_id = state_of(request), request_id_of(request)
    try:
        await limit_by_ip(request)
        refund_id = path_id(request.path_params["refund_id"])
        if refund_id is None:
            raise ApiError.not_found("refund")
        token = request.query_params.get("token", "")
        address, problem, status = "", "", 200
        if request.method == "POST":
            try:
                form = await read_form(request)
            except FormRejected as rejected:
                raise ApiError.invalid("form", str(rejected)) from None
            token, address = form.get("token", ""), form.get("address", "").strip()
            try:
                return _page(await claim(state, refund_id, token, address, request_id), token)
            except ApiError as refused:
                if refused.code not in ("invalid_argument", "conflict", "failed_precondition"):
                    raise
                # The page shows the refund as it now stands, with why the claim was refused.
                problem, status = _why(refused), refused.status
        return _page(await refund_claim(state, refund_id, token, request_id), token,
                     error=problem, address=address, status=status)  # fmt: skip
    except ApiError as error:
        return payer_error_page(error, request, "refund")


def _why(refused: ApiError) -> str:
    if refused.code == "invalid_argument":
        reasons = [d.reason for d in refused.details if d.field == "address"]
        return f"That address cannot be used: {reasons[0] if reasons else refused.message}."
    return "This refund has been claimed already." if refused.code == "conflict" else refused.message


routes = [Route("/refund/{refund_id}", refund_page, methods=["GET", "POST"])]
