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


def check_host(host: str, allowed: Iterable[str] = (), *, resolve=socket.getaddrinfo) -> bool:
    """Raise HostRefused unless ``host`` may be contacted; True when an operator rule allowed it
    (by name or network), False when every address it resolves to is public. Blocks on DNS."""
    host = host.strip("[]").lower()
    rules = [a.strip().lower() for a in allowed if a.strip()]
    if host in rules:
        return True
    try:
        addresses = {ipaddress.ip_address(host)}
    except ValueError:
        if not host:  # udp://@:PORT listens on every local address
            addresses = {ipaddress.ip_address("0.0.0.0")}
        else:
            try:
                addresses = {ipaddress.ip_address(info[4][0].split("%")[0]) for info in resolve(host, None)}
            except (OSError, UnicodeError) as exc:
                raise HostRefused(f"cannot resolve host {host!r}: {exc}", code="bad_request") from None
    networks = []
    for rule in rules:
        try:
            networks.append(ipaddress.ip_network(rule, strict=False))
        except ValueError:
            continue  # a host name: matched above
    trusted = bool(addresses)
    for address in addresses:
        if any(address in net for net in networks):
            continue
        trusted = False
        if internal(address):
            raise HostRefused(
                f"host {host!r} is an internal address ({address}); the server's operator can allow it "
                "with --allow-source-host",
                code="forbidden_source",
            )
    return trusted


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
