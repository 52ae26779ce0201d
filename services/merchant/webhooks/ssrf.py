"""Server-side request forgery guard for merchant-supplied webhook URLs.

A webhook URL makes our network send requests wherever a merchant points it, so the target is
checked twice: ``validate_url`` for shape when the endpoint is saved, and ``resolve_and_check``
at delivery time against every address the host resolves to. The delivery worker must then
connect to exactly the addresses returned (sending the original Host header / SNI), never
resolve the name again: a second lookup could answer differently (DNS rebinding) and bypass
the check. Redirects are attacker-controlled URLs too, hence ``check_redirect``.
"""

from __future__ import annotations

import asyncio
import ipaddress
import re
import socket
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from urllib.parse import SplitResult, urljoin, urlsplit

from libs.common.limits import WEBHOOK_URL_MAX_CHARS

Address = ipaddress.IPv4Address | ipaddress.IPv6Address
Resolver = Callable[[str, int], Awaitable[list[str]]]

_SCHEMES = {"http": 80, "https": 443}
# Cloud metadata services answer by name inside the cloud; refuse the names outright so no
# resolver configuration can make them look public.
_METADATA_HOSTS = frozenset({"metadata", "metadata.google.internal"})
# Spelled out rather than relying on ``is_private``, whose meaning has changed across Python
# releases and which also covers ranges that are never acceptable (refused further down).
_PRIVATE = tuple(
    ipaddress.ip_network(net)
    for net in (
        "10.0.0.0/8",
        "172.16.0.0/12",
        "192.168.0.0/16",
        "100.64.0.0/10",  # carrier-grade NAT: provider-internal, not the internet
        "fc00::/7",  # unique local
        "fec0::/10",  # deprecated site-local, still routed internally by some networks
    )
)
_NAT64 = ipaddress.ip_network("64:ff9b::/96")
# urlsplit silently drops tabs/newlines and treats "\" as data while browsers and some HTTP
# clients treat it as "/": refusing them avoids two parsers disagreeing about the host.
_FORBIDDEN_CHARS = re.compile(r"[\x00-\x20\x7f\\]")
_HOSTNAME = re.compile(r"[a-z0-9_-]+(\.[a-z0-9_-]+)*\.?")
_NUMERIC_LABEL = re.compile(r"0x[0-9a-f]*|[0-9]+")


class UnsafeUrl(ValueError):
    """The URL must not be requested; ``reason`` says why (names the offending address)."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


@dataclass(frozen=True)
class UrlPolicy:
    """What a delivery may reach. The defaults are for merchant URLs on the public internet.

    ``allowed_ips`` (IPs or CIDRs) only narrows: when set, every resolved address must be inside
    one of them *and* still pass the category checks, so a merchant cannot allow-list its way
    into our private network.
    """

    allow_loopback: bool = False
    allow_private: bool = False
    allowed_ips: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        self.allowed_networks()  # fail at construction on a malformed entry, not mid-delivery

    def allowed_networks(self) -> tuple[ipaddress.IPv4Network | ipaddress.IPv6Network, ...]:
        return tuple(ipaddress.ip_network(entry.strip(), strict=False) for entry in self.allowed_ips)


def _split(url: str) -> SplitResult:
    if len(url) > WEBHOOK_URL_MAX_CHARS:
        raise UnsafeUrl(f"URL longer than {WEBHOOK_URL_MAX_CHARS} characters")
    if _FORBIDDEN_CHARS.search(url):
        raise UnsafeUrl("URL contains whitespace, control characters or a backslash")
    try:
        parts = urlsplit(url)
        port = parts.port  # raises ValueError on non-numeric or > 65535
    except ValueError as exc:
        raise UnsafeUrl(f"unparseable URL: {exc}") from None
    if parts.scheme not in _SCHEMES:
        raise UnsafeUrl(f"scheme must be http or https, not {parts.scheme!r}")
    if "@" in parts.netloc:
        raise UnsafeUrl("credentials (user:pass@) in URL")
    if not parts.hostname:
        raise UnsafeUrl("URL has no host")
    if port is not None and not 1 <= port <= 65535:
        raise UnsafeUrl(f"port {port} out of range")
    if "%" in parts.hostname:
        raise UnsafeUrl("IPv6 zone identifiers are not allowed")
    if not parts.hostname.isascii():
        raise UnsafeUrl("non-ASCII host; use its punycode (xn--) form")
    if ":" in parts.hostname:  # only a bracketed IPv6 literal can contain a colon
        try:
            ipaddress.IPv6Address(parts.hostname)
        except ValueError:
            raise UnsafeUrl(f"invalid IPv6 host {parts.hostname!r}") from None
    elif not _HOSTNAME.fullmatch(parts.hostname):
        raise UnsafeUrl(f"invalid host {parts.hostname!r}")
    _literal_ip(parts.hostname)  # refuses numeric hosts that are no valid IPv4 address
    return parts


def validate_url(url: str) -> str:
    """Check the URL's shape (no network); return it unchanged or raise ``UnsafeUrl``."""
    _split(url)
    return url


def _parse_ipv4_number(label: str) -> int:
    # inet_aton rules: 0x... is hex, a leading 0 is octal, otherwise decimal.
    if label.startswith("0x"):
        return int(label[2:], 16)
    if len(label) > 1 and label.startswith("0"):
        return int(label[1:], 8)
    return int(label)


def _literal_ip(host: str) -> Address | None:
    """The address a literal-IP host means, including inet_aton's shorthand forms.

    ``http://2130706433/``, ``http://0x7f.1/`` and ``http://0177.0.0.1/`` all connect to
    127.0.0.1 in common clients, so they are judged as that address. As in the WHATWG URL
    standard, a host whose last label is numeric is an IPv4 address or is invalid -- never a
    name to look up.
    """
    try:
        return ipaddress.ip_address(host)
    except ValueError:
        pass
    labels = host.removesuffix(".").split(".")
    if not _NUMERIC_LABEL.fullmatch(labels[-1]):
        return None
    try:
        if len(labels) > 4 or not all(_NUMERIC_LABEL.fullmatch(label) for label in labels):
            raise ValueError
        numbers = [_parse_ipv4_number(label) for label in labels]
        *leading, last = numbers
        if any(n > 255 for n in leading) or last >= 256 ** (5 - len(numbers)):
            raise ValueError
        value = last
        for index, n in enumerate(leading):
            value += n << (8 * (3 - index))
        return ipaddress.IPv4Address(value)
    except ValueError:
        raise UnsafeUrl(f"host {host!r} is neither a valid IP address nor a hostname") from None


def _refusal(ip: Address, policy: UrlPolicy) -> str | None:
    """Why ``ip`` must not be contacted, or None if it may be."""
    if isinstance(ip, ipaddress.IPv6Address):
        # IPv6 forms that embed an IPv4 destination are judged by that destination.
        embedded = ip.ipv4_mapped or ip.sixtofour
        if embedded is None and ip in _NAT64:
            embedded = ipaddress.IPv4Address(int(ip) & 0xFFFFFFFF)
        if embedded is not None:
            inner = _refusal(embedded, policy)
            return None if inner is None else f"an IPv6 form of {embedded}, which is {inner}"
    if ip.is_unspecified:
        return "unspecified"
    if ip.is_loopback:
        return None if policy.allow_loopback else "loopback"
    if ip.is_link_local:
        return "link-local (cloud metadata lives here)"  # never allowed, whatever the policy
    if ip.is_multicast:
        return "multicast"
    if any(ip in net for net in _PRIVATE):
        return None if policy.allow_private else "private"
    if ip.is_reserved or not ip.is_global:
        return "reserved / not globally routable"
    return None


def _check(ip: Address, policy: UrlPolicy) -> None:
    reason = _refusal(ip, policy)
    if reason is not None:
        raise UnsafeUrl(f"address {ip} is {reason}")
    networks = policy.allowed_networks()
    if networks and not any(ip.version == net.version and ip in net for net in networks):
        raise UnsafeUrl(f"address {ip} is not in the endpoint's allowed IPs")


async def _default_resolver(host: str, port: int) -> list[str]:
    infos = await asyncio.get_running_loop().getaddrinfo(host, port, type=socket.SOCK_STREAM)
    return [str(info[4][0]) for info in infos]


async def resolve_and_check(url: str, policy: UrlPolicy, resolver: Resolver | None = None) -> list[str]:
    """Resolve the URL's host and return its addresses if *all* of them are safe to contact.

    One bad address refuses the lot: a client may pick any of them. Connect to exactly the
    returned addresses (see the module docstring on DNS rebinding). Resolver errors
    (``OSError``/``socket.gaierror``) propagate: they are transient, not a verdict on the URL.
    Bound the call with ``asyncio.timeout`` if the resolver may hang.
    """
    parts = _split(url)
    host = parts.hostname
    assert host is not None  # _split guarantees it
    literal = _literal_ip(host)
    if literal is not None:
        try:
            _check(literal, policy)
        except UnsafeUrl as exc:
            if str(literal) != host:  # say what the obfuscated spelling stood for
                raise UnsafeUrl(f"{exc.reason} (host written as {host!r})") from None
            raise
        return [str(literal)]
    if host.removesuffix(".") in _METADATA_HOSTS:
        raise UnsafeUrl(f"host {host!r} is a cloud metadata service")
    port = parts.port or _SCHEMES[parts.scheme]
    answers = await (resolver or _default_resolver)(host, port)
    addresses: list[Address] = []
    for answer in answers:
        try:
            ip = ipaddress.ip_address(answer)
        except ValueError:
            raise UnsafeUrl(f"resolver returned a non-address {answer!r} for {host!r}") from None
        _check(ip, policy)
        if ip not in addresses:
            addresses.append(ip)
    if not addresses:
        raise UnsafeUrl(f"host {host!r} resolved to no addresses")
    return [str(ip) for ip in addresses]


async def check_redirect(
    location: str, policy: UrlPolicy, resolver: Resolver | None = None, *, base_url: str | None = None
) -> list[str]:
    """``resolve_and_check`` for a redirect target; a relative ``Location`` needs ``base_url``."""
    target = urljoin(base_url, location) if base_url is not None else location
    return await resolve_and_check(target, policy, resolver)
