"""Dashboard pages for webhook endpoints (their deliveries, redelivery) and API keys (create,
revoke). Every change is a POSTed form (CSRF-checked in `Dash.form`) that the API carries out;
a form carries an idempotency key, so submitting it twice does the thing once."""

from __future__ import annotations

from urllib.parse import urlencode

from starlette.responses import RedirectResponse, Response
from starlette.routing import Route

from libs.common import apikeys
from services.gateway.pages.dashboard import NO_STORE, Dash, dashboard_page, path_id
from services.gateway.schemas.webhooks import DELIVERY_STATUSES

# What a redirect after a change may announce; the query names one, never free text.
NOTICES = {
    "redelivered": "Redelivery scheduled: the webhook is sent again now, with the same event id.",
    "revoked": "API key revoked: it stopped working at once.",
}


def _notice(dash: Dash) -> str | None:
    return NOTICES.get(dash.request.query_params.get("done", ""))


@dashboard_page
async def webhooks(dash: Dash) -> Response:
    listed = await dash.get("/v1/webhook-endpoints", {"cursor": dash.request.query_params.get("cursor")})
    if not listed.ok:
        return dash.failed(listed, "webhook endpoints")
    next_cursor = listed.body["next_cursor"]
    return dash.page(
        "dash_webhooks.html",
        {
            "endpoints": listed.body["data"],
            "next_page": f"/dashboard/webhooks?{urlencode({'cursor': next_cursor})}" if next_cursor else None,
        },
    )


@dashboard_page
async def webhook(dash: Dash) -> Response:
    endpoint_id = path_id(dash, "webhook endpoint")
    if endpoint_id is None:
        return dash.not_found("webhook endpoint")
    endpoint = await dash.get(f"/v1/webhook-endpoints/{endpoint_id}")
    if not endpoint.ok:
        return dash.failed(endpoint, "the webhook endpoint")
    query = dash.request.query_params
    status = query.get("status", "")
    deliveries = await dash.get(
        f"/v1/webhook-endpoints/{endpoint_id}/deliveries", {"status": status, "cursor": query.get("cursor")}
    )
    problems = deliveries.field_errors() if deliveries.status == 422 else {}
    if not deliveries.ok and not problems:
        return dash.failed(deliveries, "the endpoint's deliveries")
    body = deliveries.body if deliveries.ok else {"data": [], "next_cursor": None}
    next_cursor = body["next_cursor"]
    params = {k: v for k, v in {"status": status, "cursor": next_cursor}.items() if v}
    return dash.page(
        "dash_webhook.html",
        {
            "endpoint": endpoint.body,
            "deliveries": body["data"],
            "status": status,
            "statuses": DELIVERY_STATUSES,
            "problems": problems,
            "notice": _notice(dash),
            "next_page": f"/dashboard/webhooks/{endpoint_id}?{urlencode(params)}" if next_cursor else None,
        },
        status=422 if problems else 200,
    )


@dashboard_page
async def redeliver(dash: Dash) -> Response:
    form = await dash.form()
    delivery_id = path_id(dash, "webhook delivery")
    if delivery_id is None:
        return dash.not_found("webhook delivery")
    result = await dash.api(
        "POST",
        f"/v1/webhook-deliveries/{delivery_id}/redeliver",
        idempotency_key=form.get("idempotency_key") or None,
    )
    if not result.ok:
        return dash.failed(result, "a redelivery")
    endpoint_id = result.body["endpoint_id"]
    return RedirectResponse(
        f"/dashboard/webhooks/{endpoint_id}?done=redelivered", status_code=303, headers=NO_STORE
    )


async def _keys_page(
    dash: Dash,
    *,
    created: dict[str, object] | None = None,
    problems: dict[str, str] | None = None,
    status: int = 200,
) -> Response:
    listed = await dash.get("/v1/api-keys")
    if not listed.ok:
        return dash.failed(listed, "API keys")
    return dash.page(
        "dash_api_keys.html",
        {
            "keys": listed.body["data"],
            "this_key": str(dash.signed.session.api_key_id),
            "key_types": tuple(apikeys.KEY_TYPES),
            "grantable": [p for p in apikeys.PERMISSIONS if p in dash.signed.key.permissions],
            "notice": _notice(dash),
            "created": created,
            "problems": problems or {},
        },
        status=status,
    )


@dashboard_page
async def api_keys(dash: Dash) -> Response:
    return await _keys_page(dash)


@dashboard_page
async def create_api_key(dash: Dash) -> Response:
    form = await dash.form()
    body: dict[str, object] = {"name": form.get("name", ""), "key_type": form.get("key_type", "secret")}
    chosen = [p for p in apikeys.PERMISSIONS if form.get(f"permission:{p}") == "on"]
    if chosen:
        body["permissions"] = chosen
    result = await dash.api(
        "POST",
        f"/v1/merchants/{dash.signed.session.merchant_id}/api-keys",
        body=body,
        idempotency_key=form.get("idempotency_key") or None,
    )
    if result.status == 422:
        return await _keys_page(dash, problems=result.field_errors(), status=422)
    if not result.ok:
        return dash.failed(result, "a new API key")
    # Shown on this response only: the platform keeps just its hash (a repeated form shows none).
    return await _keys_page(dash, created=result.body)


@dashboard_page
async def revoke_api_key(dash: Dash) -> Response:
    await dash.form()
    key_id = path_id(dash, "API key")
    if key_id is None:
        return dash.not_found("API key")
    result = await dash.api("DELETE", f"/v1/api-keys/{key_id}")
    if not result.ok:
        return dash.failed(result, "the API key")
    # Revoking the key this session signed in with ends the session: the next page asks again.
    return RedirectResponse("/dashboard/api-keys?done=revoked", status_code=303, headers=NO_STORE)


routes = [
    Route("/dashboard/webhooks", webhooks, methods=["GET"]),
    Route("/dashboard/webhooks/{id}", webhook, methods=["GET"]),
    Route("/dashboard/webhook-deliveries/{id}/redeliver", redeliver, methods=["POST"]),
    Route("/dashboard/api-keys", api_keys, methods=["GET"]),
    Route("/dashboard/api-keys", create_api_key, methods=["POST"]),
    Route("/dashboard/api-keys/{id}/revoke", revoke_api_key, methods=["POST"]),
]
