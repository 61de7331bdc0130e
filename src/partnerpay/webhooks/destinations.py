"""Where webhooks may be sent. In production, never to this network (SSRF)."""

import ipaddress
import socket
from urllib.parse import urlsplit

from partnerpay.config import Environment


class DestinationRefusedError(Exception):
    """The URL may not receive webhooks; the message says why."""


def _is_public(address: str) -> bool:
    ip = ipaddress.ip_address(address.split("%", 1)[0])
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        ip = ip.ipv4_mapped
    return ip.is_global and not ip.is_multicast


def check_destination(url: str, env: Environment) -> None:
    """Refuse non-http(s) URLs; in production also any host that resolves to a loopback,
    private, link-local or otherwise non-public address."""
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise DestinationRefusedError("must be an absolute http or https URL")
    if env != Environment.PRODUCTION:
        return
    try:
        port = parts.port or (443 if parts.scheme == "https" else 80)
        addresses = {info[4][0] for info in socket.getaddrinfo(parts.hostname, port)}
    except (OSError, ValueError) as error:
        raise DestinationRefusedError(f"host '{parts.hostname}' cannot be resolved") from error
    if not all(_is_public(str(address)) for address in addresses):
        raise DestinationRefusedError(
            "resolves to a loopback, private or link-local address, which production refuses"
        )
