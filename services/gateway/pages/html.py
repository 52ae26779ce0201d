"""HTML responses: the Jinja2 templates, the security headers every page carries, the static
assets, and the QR code.

Pages load nothing from anywhere but this gateway (the Content-Security-Policy says so, and the
browser enforces it), carry no inline script, and are never framed by another site.
"""

from __future__ import annotations

import hashlib
import mimetypes
from dataclasses import dataclass
from pathlib import Path

import segno
from jinja2 import Environment, FileSystemLoader, StrictUndefined, select_autoescape
from markupsafe import Markup
from starlette.requests import Request
from starlette.responses import HTMLResponse, Response
from starlette.routing import Route

from services.gateway.pages.payer import plain

HERE = Path(__file__).resolve().parent

SECURITY_HEADERS = {
    "Content-Security-Policy": (
        "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
        "connect-src 'self'; form-action 'self'; base-uri 'none'; frame-ancestors 'none'"
    ),
    "X-Content-Type-Options": "nosniff",
    # Not no-referrer: with it a browser sends `Origin: null` on form posts, which the dashboard
    # must refuse; same-origin tells no other site which page linked to it.
    "Referrer-Policy": "same-origin",
    "X-Frame-Options": "DENY",
}


@dataclass(frozen=True)
class Asset:
    body: bytes
    media_type: str
    version: str  # in the URL, so a new release is fetched at once despite the long cache


def _load_assets() -> dict[str, Asset]:
    assets = {}
    for path in sorted((HERE / "static").iterdir()):
        body = path.read_bytes()
        media_type = mimetypes.guess_type(path.name)[0] or "application/octet-stream"
        assets[path.name] = Asset(body, media_type, hashlib.sha256(body).hexdigest()[:12])
    return assets


ASSETS = _load_assets()


def asset_url(name: str) -> str:
    return f"/assets/{name}?v={ASSETS[name].version}"


def qr_svg(data: str) -> Markup:
    """The QR code of `data` as inline SVG (scales with CSS; no image request, no network)."""
    code = segno.make(data, error="m")
    svg = code.svg_inline(scale=1, border=4, omitsize=True, svgclass="qr", dark="#000", light="#fff")
    return Markup(svg)  # segno's own markup: the data is only in path coordinates


ENVIRONMENT = Environment(
    loader=FileSystemLoader(HERE / "templates"),
    autoescape=select_autoescape(["html"]),
    undefined=StrictUndefined,  # a misspelt name fails the render, not silently prints nothing
    trim_blocks=True,
    lstrip_blocks=True,
)
ENVIRONMENT.globals["asset_url"] = asset_url


def when(value: object) -> str:
    """An API timestamp (RFC 3339, UTC) as a person reads it: `2026-01-05 10:04 UTC`."""
    if not isinstance(value, str) or len(value) < 16:
        return "—"
    return f"{value[:10]} {value[11:16]} UTC"


def short(value: object, keep: int = 8) -> str:
    """A long id or hash cut in the middle; the full value stays in a title attribute."""
    text = str(value or "")
    return text if len(text) <= 2 * keep + 1 else f"{text[:keep]}…{text[-keep:]}"


ENVIRONMENT.filters["when"] = when
ENVIRONMENT.filters["plain"] = plain
ENVIRONMENT.filters["short"] = short


def page(
    template: str,
    context: dict[str, object],
    *,
    status: int = 200,
    headers: dict[str, str] | None = None,
) -> HTMLResponse:
    body = ENVIRONMENT.get_template(template).render(**context)
    return HTMLResponse(body, status_code=status, headers={**SECURITY_HEADERS, **(headers or {})})


async def asset(request: Request) -> Response:
    found = ASSETS.get(request.path_params["name"])
    if found is None:
        return Response("not found", status_code=404, media_type="text/plain")
    return Response(
        found.body,
        media_type=found.media_type,
        headers={"Cache-Control": "public, max-age=31536000, immutable", "X-Content-Type-Options": "nosniff"},
    )


routes = [Route("/assets/{name}", asset, methods=["GET"])]
