"""The merchant's dashboard: sign-in and sign-out, and what every dashboard page shares.

A page handler gets a `Dash`: the signed-in key, the API to call on its behalf (pages/api.py)
and the page renderer. Forms are POSTed with the session's CSRF token and checked here before a
handler sees them; every page is `no-store`, so a shared computer's back button shows nothing.
"""

from __future__ import annotations

import secrets
import uuid
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import parse_qs, quote, urlsplit

from starlette.requests import Request
from starlette.responses import RedirectResponse, Response

from libs.common import apikeys, limits
from services.gateway import operations
from services.gateway.auth import authenticate_token
from services.gateway.context import request_id_of
from services.gateway.errors import ApiError
from services.gateway.pages import api, html, session
from services.gateway.pages.api import ApiResult
from services.gateway.pages.state import PagesState, pages_of
from services.gateway.state import GatewayState, state_of

FORM_MAX_BYTES = 64 * 1024
NAV = (
    ("/dashboard", "Overview"),
    ("/dashboard/invoices", "Invoices"),
    ("/dashboard/customers", "Customers"),
    ("/dashboard/webhooks", "Webhooks"),
    ("/dashboard/api-keys", "API keys"),
)
NO_STORE = {"Cache-Control": "no-store"}
QUOTA_HEADERS = frozenset({"ratelimit-limit", "ratelimit-remaining", "ratelimit-reset", "retry-after"})


class FormRejected(Exception):
    """A POST without this session's CSRF token, from another origin, or not a form at all."""


async def read_form(request: Request) -> dict[str, str]:
    """An urlencoded form body (what an HTML form posts), one value per name."""
    if request.headers.get("content-type", "").split(";")[0].strip() != "application/x-www-form-urlencoded":
        raise FormRejected("expected an HTML form")
    body = b""
    async for chunk in request.stream():
        body += chunk
        if len(body) > FORM_MAX_BYTES:
            raise FormRejected("the form is too large")
    try:
        parsed = parse_qs(body.decode(), keep_blank_values=True, max_num_fields=100)
    except (UnicodeDecodeError, ValueError) as error:
        raise FormRejected("the form could not be read") from error
    return {name: values[-1] for name, values in parsed.items()}


@dataclass
class Dash:
    request: Request
    state: GatewayState
    pages: PagesState
    signed: session.SignedIn
    quota: dict[str, str] = field(default_factory=dict)

    async def api(self, method: str, path: str, **options: Any) -> ApiResult:
        result = await api.call(self.request, self.signed.key, method, path, **options)
        # The page says where the key stands against its rate limit, as the API's answer did.
        self.quota = {k: v for k, v in result.headers.items() if k.lower() in QUOTA_HEADERS}
        return result

    async def get(self, path: str, query: Mapping[str, str | None] | None = None) -> ApiResult:
        return await self.api("GET", path, query=query)

    async def form(self) -> dict[str, str]:
        """The POSTed form, once its CSRF token and origin check out."""
        if not session.same_origin(self.request, self.state.config.public_url()):
            raise FormRejected("the form was sent from another site")
        form = await read_form(self.request)
        if not session.csrf_matches(form.get("csrf_token"), self.signed.session.csrf_token):
            raise FormRejected("the form's security token is missing or out of date")
        return form

    def page(self, template: str, context: dict[str, object], *, status: int = 200) -> Response:
        return html.page(
            template,
            {
                "nav": NAV,
                "here": self.request.url.path,
                "csrf_token": self.signed.session.csrf_token,
                "merchant_id": str(self.signed.session.merchant_id),
                "permissions": sorted(self.signed.key.permissions),
                "session_expires_at": self.signed.session.expires_at,
                "new_idempotency_key": lambda: str(uuid.uuid4()),
                **context,
            },
            status=status,
            headers={**NO_STORE, **self.quota},
        )

    def not_found(self, what: str) -> Response:
        return self.page(
            "dash_error.html",
            {"title": f"No such {what}", "message": f"{what} not found", "code": "not_found"},
            status=404,
        )

    def failed(self, result: ApiResult, what: str) -> Response:
        """A page saying an API call failed, in the API's own words (403, 404, 503 ...)."""
        return self.page(
            "dash_error.html",
            {"title": f"Could not load {what}", "message": result.message, "code": result.error.get("code")},
            status=result.status if result.status >= 400 else 500,
        )


Handler = Callable[[Dash], Awaitable[Response]]


def path_id(dash: Dash, what: str) -> str | None:
    """The id in the page's path, or None when it cannot name a {what}."""
    value = operations.path_id(str(dash.request.path_params.get("id", "")))
    return str(value) if value is not None else None


def error_page(
    request: Request, title: str, message: str, status: int, headers: Mapping[str, str] | None = None
) -> Response:
    return html.page(
        "error.html",
        {"title": title, "message": message, "request_id": request_id_of(request)},
        status=status,
        headers={**NO_STORE, **(headers or {})},
    )


def _sign_in_redirect(request: Request) -> Response:
    target = request.url.path + (f"?{request.url.query}" if request.url.query else "")
    return RedirectResponse(
        f"/dashboard/login?next={quote(target, safe='')}", status_code=303, headers=NO_STORE
    )


def _forget_ended_session(request: Request, response: Response, pages: PagesState) -> Response:
    """A cookie that opened no session is dropped, so the browser stops sending it (each one
    counts as failed authentication from its address)."""
    if session.COOKIE in request.cookies:
        session.clear_cookie(response, session.COOKIE, secure=pages.secure_cookies)
    return response


def dashboard_page(handler: Handler) -> Callable[[Request], Awaitable[Response]]:
    async def endpoint(request: Request) -> Response:
        state, pages = state_of(request), pages_of(request)
        try:
            signed = await session.signed_in(request, state, pages.sessions)
        except ApiError as error:
            return error_page(
                request, "The dashboard is unavailable", error.message, error.status, error.headers
            )
        if signed is None:
            if request.method != "GET":
                refused = error_page(request, "Signed out", "Your session ended; sign in again.", 401)
                return _forget_ended_session(request, refused, pages)
            return _forget_ended_session(request, _sign_in_redirect(request), pages)
        try:
            return await handler(Dash(request, state, pages, signed))
        except FormRejected as rejected:
            return error_page(request, "Form refused", str(rejected), 403)

    endpoint.__name__ = handler.__name__
    return endpoint


def _safe_next(raw: str | None) -> str:
    """Only a path inside the dashboard: a sign-in link must not send anyone elsewhere."""
    if (
        raw
        and raw.startswith("/dashboard")
        and not urlsplit(raw).netloc
        and "\\" not in raw
        and ".." not in urlsplit(raw).path.split("/")
    ):
        return raw
    return "/dashboard"


def _sign_in_form(
    request: Request, *, error: str = "", status: int = 200, next_url: str = "/dashboard"
) -> Response:
    pages = pages_of(request)
    token = secrets.token_urlsafe(32)
    response = html.page(
        "login.html",
        {
            "csrf_token": token,
            "error": error,
            "next": next_url,
            "max_key_chars": limits.SIGN_IN_KEY_MAX_CHARS,
        },
        status=status,
        headers=NO_STORE,
    )
    session.set_cookie(
        response, session.SIGN_IN_COOKIE, token, session.SIGN_IN_SECONDS, secure=pages.secure_cookies
    )
    return response


async def sign_in_page(request: Request) -> Response:
    state, pages = state_of(request), pages_of(request)
    next_url = _safe_next(request.query_params.get("next"))
    try:
        if await session.signed_in(request, state, pages.sessions) is not None:
            return RedirectResponse(next_url, status_code=303, headers=NO_STORE)
    except ApiError as error:
        return error_page(request, "The dashboard is unavailable", error.message, error.status, error.headers)
    return _forget_ended_session(request, _sign_in_form(request, next_url=next_url), pages)


async def sign_in(request: Request) -> Response:
    state, pages = state_of(request), pages_of(request)
    try:
        if not session.same_origin(request, state.config.public_url()):
            raise FormRejected("the form was sent from another site")
        form = await read_form(request)
        if not session.csrf_matches(form.get("csrf_token"), request.cookies.get(session.SIGN_IN_COOKIE, "")):
            raise FormRejected("the sign-in form expired; load it again")
    except FormRejected as rejected:
        return error_page(request, "Form refused", str(rejected), 403)
    next_url = _safe_next(form.get("next"))
    key = form.get("api_key", "").strip()
    if not key or len(key) > limits.SIGN_IN_KEY_MAX_CHARS:
        return _sign_in_form(request, error="Enter your secret API key.", status=422, next_url=next_url)
    try:
        caller = await authenticate_token(request, key)
    except ApiError as error:
        if error.code != "unauthenticated":
            return error_page(request, "Cannot sign in right now", error.message, error.status, error.headers)
        return _sign_in_form(
            request, error="That API key is not valid, or it was revoked.", status=401, next_url=next_url
        )
    if caller.merchant_id is None or caller.api_key_id is None or caller.key_type != "secret":
        # The operator token and publishable keys do not open a merchant's dashboard.
        return _sign_in_form(
            request,
            error="Sign in with one of your merchant's secret API keys (ck_sk_…).",
            status=403,
            next_url=next_url,
        )
    try:
        token, _ = await pages.sessions.create(caller.merchant_id, caller.api_key_id, apikeys.hash_key(key))
    except ApiError as error:
        return error_page(request, "Cannot sign in right now", error.message, error.status, error.headers)
    response = RedirectResponse(next_url, status_code=303, headers=NO_STORE)
    session.set_cookie(
        response, session.COOKIE, token, pages.sessions.ttl_seconds, secure=pages.secure_cookies
    )
    session.clear_cookie(response, session.SIGN_IN_COOKIE, secure=pages.secure_cookies)
    return response


@dashboard_page
async def sign_out(dash: Dash) -> Response:
    await dash.form()
    await dash.pages.sessions.delete(dash.signed.token)
    response = RedirectResponse("/dashboard/login", status_code=303, headers=NO_STORE)
    session.clear_cookie(response, session.COOKIE, secure=dash.pages.secure_cookies)
    return response
