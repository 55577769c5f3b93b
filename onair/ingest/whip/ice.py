"""Which local addresses WHIP sessions offer as ICE host candidates.

aioice gathers on every interface address except 127.0.0.1. A node bound to one address should offer only
that one, and a node on loopback (development, tests, a browser on the same machine) needs 127.0.0.1.
"""

from __future__ import annotations

import ipaddress

import aioice.ice

_original_get_host_addresses = aioice.ice.get_host_addresses


def loopback_wanted(bind: str, setting: bool | None) -> bool:
    """`setting` None means automatic: on when the node binds to a loopback address."""
    if setting is not None:
        return setting
    try:
        return ipaddress.ip_address(bind).is_loopback
    except ValueError:
        return bind == "localhost"


def configure_host_candidates(bind: str, loopback: bool) -> None:
    """Process-wide, as aioice reads a module-level function when gathering."""
    try:
        only = None if ipaddress.ip_address(bind).is_unspecified else bind
    except ValueError:
        only = None  # a host name: let aioice enumerate interfaces

    def host_addresses(use_ipv4: bool, use_ipv6: bool) -> list[str]:
        if only is not None:
            return [only]
        addresses = list(_original_get_host_addresses(use_ipv4, use_ipv6))
        if loopback and use_ipv4 and "127.0.0.1" not in addresses:
            addresses.append("127.0.0.1")
        return addresses

    aioice.ice.get_host_addresses = host_addresses
