"""Which hosts a client may make the server contact: URL sources, and webhooks.

A client is remote and untrusted. A host that resolves to an address inside (loopback, private,
link-local such as the cloud metadata service, unspecified, multicast, reserved, carrier-grade NAT)
is refused unless the operator allowed it (``--allow-source-host``, a host name or a network):
otherwise any client could make the server fetch from, or post to, its own network. One rule for
both uses, so a webhook is no way around what a URL source may not do.
"""

from __future__ import annotations

import ipaddress
import socket
from collections.abc import Iterable

from scenekv.errors import UserError

Address = ipaddress.IPv4Address | ipaddress.IPv6Address


class HostRefused(UserError):
    """A host the server will not contact (``forbidden_source``) or cannot resolve (``bad_request``)."""


def check_host(host: str, allowed: Iterable[str] = (), *, resolve=socket.getaddrinfo) -> None:
    """Raise HostRefused unless ``host`` may be contacted: named by an operator rule, or every
    address it resolves to is public or inside a rule's network. Blocks on DNS."""
    if _named(host, allowed):
        return
    allowed_addresses(host, allowed, resolve=resolve)


def allowed_addresses(host: str, allowed: Iterable[str] = (), *, resolve=socket.getaddrinfo) -> list[Address]:
    """The addresses ``host`` resolves to, each checked (HostRefused if one is not allowed): what a
    client should connect to, so that the name is not resolved again in between (DNS rebinding)."""
    host = host.strip("[]").lower()
    rules = [a.strip().lower() for a in allowed if a.strip()]
    try:
        addresses = [ipaddress.ip_address(host)]
    except ValueError:
        if not host:  # udp://@:PORT listens on every local address
            addresses = [ipaddress.ip_address("0.0.0.0")]
        else:
            try:
                found = [ipaddress.ip_address(info[4][0].split("%")[0]) for info in resolve(host, None)]
            except (OSError, UnicodeError, ValueError) as exc:
                raise HostRefused(f"cannot resolve host {host!r}: {exc}", code="bad_request") from None
            addresses = list(dict.fromkeys(found))
    if host in rules:
        return addresses
    networks = []
    for rule in rules:
        try:
            networks.append(ipaddress.ip_network(rule, strict=False))
        except ValueError:
            continue  # a host name: matched above
    for address in addresses:
        if internal(address) and not any(address in net for net in networks):
            raise HostRefused(
                f"host {host!r} is an internal address ({address}); the server's operator can allow it "
                "with --allow-source-host",
                code="forbidden_source",
            )
    return addresses


def _named(host: str, allowed: Iterable[str]) -> bool:
    return host.strip("[]").lower() in {a.strip().lower() for a in allowed if a.strip()}


def internal(address: Address) -> bool:
    """Whether ``address`` is inside someone's network rather than on the public internet."""
    if isinstance(address, ipaddress.IPv6Address):
        embedded = address.ipv4_mapped or address.sixtofour or (address.teredo or (None, None))[1]
        if embedded is not None and internal(embedded):
            return True
        if address.is_site_local:
            return True
    return (
        address.is_loopback
        or address.is_private
        or address.is_link_local
        or address.is_unspecified
        or address.is_multicast
        or address.is_reserved
        or (isinstance(address, ipaddress.IPv4Address) and address in _SHARED)
    )


_SHARED = ipaddress.ip_network("100.64.0.0/10")  # carrier-grade NAT: inside someone's network
