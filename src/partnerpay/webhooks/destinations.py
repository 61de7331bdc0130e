"""Where webhooks may be sent. In production, never to this network (SSRF).

A webhook URL is parsed by httpx, the parser the sender uses, so a URL accepted at
registration is one the sender can send to. In production every address its host resolves
to must be globally reachable, at registration and at every attempt; and the attempt
connects to an address from the very lookup that was checked (:class:`CheckedBackend`),
so a DNS server that answers a public address to the check and a private one to the
connection (DNS rebinding) gets nowhere. TLS still names and verifies the URL's host.
"""

from __future__ import annotations

import ipaddress
import re
import socket
from collections.abc import Callable, Iterable
from typing import Any

import httpcore
import httpx

from partnerpay.config import Environment

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
AddressPolicy = Callable[[IPAddress], bool]
"""Whether webhooks may be sent to an address."""

_V4 = ipaddress.IPv4Network
_V6 = ipaddress.IPv6Network

# IANA's IPv4 and IPv6 special-purpose address registries: every block that is not
# globally reachable, and a few that are but never hold a webhook receiver (192.0.0.0/24
# whole; the 6to4 relay anycast). Multicast is refused besides.
NOT_GLOBAL_V4 = tuple(
    _V4(block)
    for block in (
        "0.0.0.0/8",
        "10.0.0.0/8",
        "100.64.0.0/10",
        "127.0.0.0/8",
        "169.254.0.0/16",
        "172.16.0.0/12",
        "192.0.0.0/24",
        "192.0.2.0/24",
        "192.88.99.0/24",
        "192.168.0.0/16",
        "198.18.0.0/15",
        "198.51.100.0/24",
        "203.0.113.0/24",
        "224.0.0.0/4",
        "240.0.0.0/4",
    )
)
NOT_GLOBAL_V6 = tuple(
    _V6(block)
    for block in (
        "::/128",
        "::1/128",
        "64:ff9b:1::/48",  # local-use NAT64
        "100::/64",  # discard-only
        "100:0:0:1::/64",  # dummy prefix
        "2001::/23",  # IETF protocol assignments, Teredo (2001::/32) among them
        "2001:db8::/32",  # documentation
        "3fff::/20",  # documentation
        "5f00::/16",  # segment routing
        "fc00::/7",  # unique local
        "fe80::/10",  # link-local
        "fec0::/10",  # site-local (deprecated)
        "ff00::/8",  # multicast
    )
)
# IPv6 forms that carry an IPv4 address, which decides for them.
IPV4_COMPATIBLE = _V6("::/96")
NAT64 = _V6("64:ff9b::/96")
SIX_TO_FOUR = _V6("2002::/16")


HOST_NAME = re.compile(r"(?!-)[A-Za-z0-9_-]{1,63}(?<!-)(\.(?!-)[A-Za-z0-9_-]{1,63}(?<!-))*\.?")
"""A DNS name as httpx hands it on (IDNA-encoded): labels of letters, digits, - and _."""


class DestinationRefusedError(Exception):
    """The URL may not receive webhooks; the message says why."""


def embedded_ipv4(address: ipaddress.IPv6Address) -> ipaddress.IPv4Address | None:
    """The IPv4 address an IPv6 transition form carries (mapped, compatible, NAT64, 6to4)."""
    if address.ipv4_mapped is not None:
        return address.ipv4_mapped
    if address.sixtofour is not None:
        return address.sixtofour
    if address in IPV4_COMPATIBLE or address in NAT64:
        return ipaddress.IPv4Address(int(address) & 0xFFFFFFFF)
    return None


def is_globally_reachable(address: IPAddress) -> bool:
    """Whether ``address`` is an ordinary public unicast address, as production requires."""
    if isinstance(address, ipaddress.IPv6Address):
        embedded = embedded_ipv4(address)
        if embedded is not None:
            return is_globally_reachable(embedded)
        if any(address in block for block in NOT_GLOBAL_V6):
            return False
    elif any(address in block for block in NOT_GLOBAL_V4):
        return False
    return address.is_global


def allow_any(_address: IPAddress) -> bool:
    return True


def address_policy(env: Environment) -> AddressPolicy:
    return is_globally_reachable if env == Environment.PRODUCTION else allow_any


def parse_webhook_url(url: str) -> httpx.URL:
    """The URL as the sender reads it; refused unless it is absolute http(s) with a host."""
    try:
        parsed = httpx.URL(url)
    except (httpx.InvalidURL, ValueError) as error:
        raise DestinationRefusedError(f"is not a valid URL: {error}") from None
    if parsed.scheme not in ("http", "https") or not parsed.host:
        raise DestinationRefusedError("must be an absolute http or https URL")
    if parsed.port is not None and not 0 < parsed.port < 65536:
        raise DestinationRefusedError("has a port outside 1 to 65535")
    if not _is_host(parsed.raw_host.decode("ascii")):
        raise DestinationRefusedError("has a host that is neither a host name nor an address")
    return parsed


def _is_host(host: str) -> bool:
    try:
        ipaddress.ip_address(host)
    except ValueError:
        return HOST_NAME.fullmatch(host) is not None
    return True


def default_port(url: httpx.URL) -> int:
    return url.port or (443 if url.scheme == "https" else 80)


def checked_addresses(host: str, port: int, allowed: AddressPolicy) -> list[str]:
    """Resolve ``host`` once; every address it resolves to must be allowed."""
    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    except (OSError, UnicodeError) as error:
        raise DestinationRefusedError(f"host '{host}' cannot be resolved") from error
    addresses = list(dict.fromkeys(str(info[4][0]) for info in infos))
    if not all(allowed(ipaddress.ip_address(a.split("%", 1)[0])) for a in addresses):
        raise DestinationRefusedError(
            "resolves to a loopback, private, link-local or otherwise non-public address, "
            "which production refuses"
        )
    return addresses


def check_destination(url: str, env: Environment) -> None:
    """Refuse a URL the sender could not send to; in production also one whose host
    resolves to any address that is not globally reachable."""
    parsed = parse_webhook_url(url)
    if env == Environment.PRODUCTION:
        checked_addresses(parsed.host, default_port(parsed), is_globally_reachable)


class CheckedBackend(httpcore.SyncBackend):
    """httpcore's network backend, resolving each host once and connecting only to the
    addresses that lookup gave and ``allowed`` accepts."""

    def __init__(self, allowed: AddressPolicy) -> None:
        self._allowed = allowed

    def connect_tcp(
        self,
        host: str,
        port: int,
        timeout: float | None = None,
        local_address: str | None = None,
        socket_options: Iterable[Any] | None = None,
    ) -> httpcore.NetworkStream:
        addresses = checked_addresses(host, port, self._allowed)
        for address in addresses[:-1]:
            try:
                return super().connect_tcp(address, port, timeout, local_address, socket_options)
            except httpcore.ConnectError:
                continue
        return super().connect_tcp(addresses[-1], port, timeout, local_address, socket_options)
