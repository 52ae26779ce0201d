"""Settings read from the environment that the links in answers are built from."""

from __future__ import annotations

from libs.common.config import Config


def test_the_public_address_is_where_a_browser_can_reach_the_listening_gateway() -> None:
    def public(**env: str) -> str:
        return Config.from_env(env).public_url()

    assert public(CHECKOUT_HTTP_LISTEN="127.0.0.1:8080") == "http://127.0.0.1:8080"
    # A wildcard is nowhere a browser can go; this machine is.
    assert public(CHECKOUT_HTTP_LISTEN="0.0.0.0:9000") == "http://localhost:9000"
    assert public(CHECKOUT_HTTP_LISTEN="[::1]:8080") == "http://[::1]:8080"
    # Behind a proxy, the address payers are given wins; `/pay/<id>` is appended to it.
    assert public(CHECKOUT_PUBLIC_BASE_URL="https://pay.example/", CHECKOUT_HTTP_LISTEN="0.0.0.0:80") == (
        "https://pay.example"
    )
