"""The SSRF guard for webhook URLs: nothing private, loopback or metadata gets a request."""

from __future__ import annotations

import re

import pytest

from services.merchant.webhooks.ssrf import (
    UnsafeUrl,
    UrlPolicy,
    check_redirect,
    resolve_and_check,
    validate_url,
)

PUBLIC = UrlPolicy()
DNS: dict[str, list[str]] = {
    "hooks.example.com": ["93.184.216.34", "2606:2800:220:1::"],
    "internal.example.com": ["10.1.2.3"],
    "split.example.com": ["93.184.216.34", "192.168.1.10"],
    "rebind.example.com": ["93.184.216.34", "::ffff:169.254.169.254"],
    "localhost": ["127.0.0.1", "::1"],
    "empty.example.com": [],
}


class FakeResolver:
    """Stands in for DNS so the tests need no network; records what was asked."""

    def __init__(self) -> None:
        self.calls: list[tuple[str, int]] = []

    async def __call__(self, host: str, port: int) -> list[str]:
        self.calls.append((host, port))
        return DNS[host]


async def refused(url: str, policy: UrlPolicy = PUBLIC) -> str:
    with pytest.raises(UnsafeUrl) as caught:
        await resolve_and_check(url, policy, FakeResolver())
    assert isinstance(caught.value, ValueError)
    return caught.value.reason


@pytest.mark.parametrize(
    ("url", "address", "why"),
    [
        ("http://127.0.0.1/hook", "127.0.0.1", "loopback"),
        ("http://127.8.9.10:8080/", "127.8.9.10", "loopback"),
        ("https://[::1]/", "::1", "loopback"),
        ("http://10.0.0.1/", "10.0.0.1", "private"),
        ("http://172.16.5.4/", "172.16.5.4", "private"),
        ("http://192.168.0.1/", "192.168.0.1", "private"),
        ("http://100.64.0.1/", "100.64.0.1", "private"),
        ("http://[fd00::1]/", "fd00::1", "private"),
        ("http://169.254.169.254/latest/meta-data/", "169.254.169.254", "link-local"),
        ("http://[fe80::1]/", "fe80::1", "link-local"),
        ("http://0.0.0.0/", "0.0.0.0", "unspecified"),
        ("http://[::]/", "::", "unspecified"),
        ("http://224.0.0.1/", "224.0.0.1", "multicast"),
        ("http://[ff02::1]/", "ff02::1", "multicast"),
        ("http://240.0.0.1/", "240.0.0.1", "reserved"),
        ("http://192.0.2.1/", "192.0.2.1", "not globally routable"),
        ("http://[::ffff:127.0.0.1]/", "127.0.0.1", "loopback"),
        ("http://[::ffff:a9fe:a9fe]/", "169.254.169.254", "link-local"),
        ("http://[2002:7f00:1::]/", "127.0.0.1", "loopback"),
        ("http://[64:ff9b::a00:1]/", "10.0.0.1", "private"),
        ("http://2130706433/", "127.0.0.1", "loopback"),
        ("http://0x7f.1/", "127.0.0.1", "loopback"),
        ("http://0x7f000001/", "127.0.0.1", "loopback"),
        ("http://0177.0.0.1/", "127.0.0.1", "loopback"),
        ("http://127.1/", "127.0.0.1", "loopback"),
        ("http://0xa9.0xfe.0xa9.0xfe/", "169.254.169.254", "link-local"),
        ("http://2852039166/", "169.254.169.254", "link-local"),
        ("http://internal.example.com/", "10.1.2.3", "private"),
        ("http://localhost:8000/", "127.0.0.1", "loopback"),
    ],
)
async def test_unsafe_addresses_are_refused_naming_the_address(url: str, address: str, why: str) -> None:
    reason = await refused(url)
    assert f"{address} " in reason or f"{address}," in reason
    assert why in reason


async def test_a_refused_numeric_spelling_names_both_the_address_and_how_it_was_written() -> None:
    assert await refused("http://0x7f.1/") == "address 127.0.0.1 is loopback (host written as '0x7f.1')"
    assert "written as" not in await refused("http://127.0.0.1/")


@pytest.mark.parametrize(
    "url", ["http://metadata.google.internal/computeMetadata/v1/", "http://METADATA/", "http://metadata./"]
)
async def test_cloud_metadata_hostnames_are_refused_by_name_without_resolving(url: str) -> None:
    resolver = FakeResolver()
    with pytest.raises(UnsafeUrl, match="metadata"):
        await resolve_and_check(url, PUBLIC, resolver)
    assert resolver.calls == []


async def test_public_addresses_are_accepted_and_returned_for_the_worker_to_connect_to() -> None:
    resolver = FakeResolver()
    assert await resolve_and_check("https://hooks.example.com/in", PUBLIC, resolver) == [
        "93.184.216.34",
        "2606:2800:220:1::",
    ]
    assert resolver.calls == [("hooks.example.com", 443)]
    assert await resolve_and_check("http://93.184.216.34:8080/", PUBLIC) == ["93.184.216.34"]
    assert await resolve_and_check("https://[2606:2800:220:1::]/", PUBLIC) == ["2606:2800:220:1::"]
    # A numeric spelling of a public address is judged as, and returned as, that address.
    assert await resolve_and_check("http://1572395042/", PUBLIC) == ["93.184.216.34"]


async def test_the_port_from_the_url_is_passed_to_the_resolver() -> None:
    resolver = FakeResolver()
    await resolve_and_check("http://hooks.example.com:8443/", PUBLIC, resolver)
    await resolve_and_check("http://hooks.example.com/", PUBLIC, resolver)
    assert resolver.calls == [("hooks.example.com", 8443), ("hooks.example.com", 80)]


async def test_allow_loopback_lets_loopback_through_but_still_refuses_metadata() -> None:
    policy = UrlPolicy(allow_loopback=True)
    assert await resolve_and_check("http://127.0.0.1:9000/", policy) == ["127.0.0.1"]
    assert await resolve_and_check("http://localhost/", policy, FakeResolver()) == ["127.0.0.1", "::1"]
    assert "169.254.169.254" in await refused("http://169.254.169.254/", policy)
    assert "private" in await refused("http://10.0.0.1/", policy)


async def test_allow_private_lets_private_networks_through_but_not_link_local() -> None:
    policy = UrlPolicy(allow_private=True)
    assert await resolve_and_check("http://internal.example.com/", policy, FakeResolver()) == ["10.1.2.3"]
    assert "link-local" in await refused("http://[fe80::1]/", policy)
    assert "loopback" in await refused("http://127.0.0.1/", policy)


async def test_allowed_ips_refuse_a_public_address_outside_the_list() -> None:
    policy = UrlPolicy(allowed_ips=("93.184.216.0/24", "2606:2800:220:1::"))
    assert await resolve_and_check("https://hooks.example.com/", policy, FakeResolver()) == [
        "93.184.216.34",
        "2606:2800:220:1::",
    ]
    reason = await refused("https://8.8.8.8/", policy)
    assert "8.8.8.8" in reason and "allowed IPs" in reason


async def test_allowed_ips_cannot_open_up_a_private_address() -> None:
    assert "private" in await refused("http://10.0.0.1/", UrlPolicy(allowed_ips=("10.0.0.0/8",)))


def test_a_malformed_allowed_ips_entry_fails_when_the_policy_is_built() -> None:
    with pytest.raises(ValueError):
        UrlPolicy(allowed_ips=("not-an-ip",))


@pytest.mark.parametrize(
    ("host", "address"),
    [("split.example.com", "192.168.1.10"), ("rebind.example.com", "169.254.169.254")],
)
async def test_a_hostname_with_one_unsafe_address_among_public_ones_is_refused(
    host: str, address: str
) -> None:
    assert address in await refused(f"https://{host}/")


async def test_a_hostname_resolving_to_nothing_is_refused() -> None:
    assert "no addresses" in await refused("https://empty.example.com/")


async def test_resolver_garbage_is_refused() -> None:
    async def liar(host: str, port: int) -> list[str]:
        return ["not-an-ip"]

    with pytest.raises(UnsafeUrl, match="non-address"):
        await resolve_and_check("https://hooks.example.com/", PUBLIC, liar)


@pytest.mark.parametrize(
    ("url", "reason"),
    [
        ("https://user:pass@hooks.example.com/", "credentials"),
        ("https://user@hooks.example.com/", "credentials"),
        ("https://hooks.example.com@127.0.0.1/", "credentials"),
        ("ftp://hooks.example.com/", "scheme"),
        ("file:///etc/passwd", "scheme"),
        ("gopher://127.0.0.1:6379/_INFO", "scheme"),
        ("javascript:alert(1)", "scheme"),
        ("//hooks.example.com/", "scheme"),
        ("https:///path", "no host"),
        ("https://hooks.example.com:0/", "port"),
        ("https://hooks.example.com:65536/", "unparseable"),
        ("https://hooks.example.com:http/", "unparseable"),
        ("https://hooks.example.com/" + "a" * 2048, "longer than 2048"),
        ("https://hooks.exa\tmple.com/", "whitespace"),
        ("https://hooks.example.com\\@127.0.0.1/", "backslash"),
        ("https://hooks.ex ample.com/", "whitespace"),
        ("https://bücher.example/", "punycode"),
        ("https://[fe80::1%25eth0]/", "zone"),
        ("https://hooks!.example.com/", "invalid host"),
        ("http://1.2.3.4.5/", "neither"),
        ("http://256.1.1.1/", "neither"),
        ("http://08.0.0.1/", "neither"),
    ],
)
async def test_malformed_or_disallowed_urls_are_refused(url: str, reason: str) -> None:
    with pytest.raises(UnsafeUrl, match=reason):
        validate_url(url)
    resolver = FakeResolver()
    with pytest.raises(UnsafeUrl, match=reason):
        await resolve_and_check(url, PUBLIC, resolver)
    assert resolver.calls == []


def test_validate_url_returns_well_formed_urls_unchanged() -> None:
    for url in [
        "https://hooks.example.com/in?x=1",
        "http://93.184.216.34:8080/",
        "https://[2606:2800:220:1::]/",
    ]:
        assert validate_url(url) == url


async def test_redirect_targets_get_the_same_check() -> None:
    resolver = FakeResolver()
    assert await check_redirect("https://hooks.example.com/new", PUBLIC, resolver) == [
        "93.184.216.34",
        "2606:2800:220:1::",
    ]
    with pytest.raises(UnsafeUrl, match=re.escape("169.254.169.254")):
        await check_redirect("http://169.254.169.254/latest/meta-data/", PUBLIC, resolver)
    with pytest.raises(UnsafeUrl, match="metadata"):
        await check_redirect("http://metadata.google.internal/", PUBLIC, resolver)
    with pytest.raises(UnsafeUrl, match="scheme"):
        await check_redirect("file:///etc/passwd", PUBLIC, resolver)


async def test_a_relative_redirect_is_resolved_against_the_original_url() -> None:
    resolver = FakeResolver()
    got = await check_redirect("/moved", PUBLIC, resolver, base_url="https://hooks.example.com/in")
    assert got == ["93.184.216.34", "2606:2800:220:1::"]
    with pytest.raises(UnsafeUrl, match="private"):
        await check_redirect(
            "//internal.example.com/x", PUBLIC, resolver, base_url="https://hooks.example.com/"
        )
    with pytest.raises(UnsafeUrl, match="scheme"):
        await check_redirect("/moved", PUBLIC, resolver)
