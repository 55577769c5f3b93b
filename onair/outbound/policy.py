"""Where the node may connect on its own: the outbound-target policy of PULL sources and restream targets.

The API calls `check_target` when a URL is stored: what is known without DNS (scheme, host, port,
SRT mode, a literal address). Before each connection `resolve_target` resolves the host once and
checks every address; the caller then connects to the checked address itself (onair.outbound.gateway),
so a DNS answer that changes afterwards (rebinding) cannot reach anything else.

Refused unless ``ONAIR_ALLOW_PRIVATE_TARGETS``: loopback, private (RFC 1918, ULA), link-local,
shared (CGNAT), multicast, unspecified, reserved and cloud-metadata addresses, also when embedded in
an IPv6 address (IPv4-mapped, NAT64, 6to4).
"""

from __future__ import annotations

import asyncio
import ipaddress
import re
import socket
from dataclasses import dataclass
from urllib.parse import unquote

__all__ = ["PULL_SCHEMES", "RESTREAM_SCHEMES", "IPAddress", "Target", "TargetRefused", "address_refusal",
           "check_target", "parse_target", "resolve_target"]

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address

PULL_SCHEMES = ("rtmp", "rtmps", "srt", "http", "https")
RESTREAM_SCHEMES = ("rtmp", "rtmps", "srt")
DEFAULT_PORTS = {"rtmp": 1935, "rtmps": 443, "http": 80, "https": 443}  # SRT has none: the port is required

_SCHEME = re.compile(r"^([A-Za-z][A-Za-z0-9+.-]*)://")
_HOST_NAME = re.compile(r"^[a-z0-9_]([a-z0-9_-]*[a-z0-9_])?(\.[a-z0-9_]([a-z0-9_-]*[a-z0-9_])?)*\.?$")
_LEGACY_IPV4 = re.compile(r"^(0x[0-9a-f]*|[0-9]+)(\.(0x[0-9a-f]*|[0-9]+)){0,3}$")  # 127.1, 0x7f000001, 2130706433


class TargetRefused(ValueError):
    """An outbound URL the node must not connect to; str() says why (API error text, log reason)."""


def _nets(*cidrs: str) -> list[ipaddress.IPv4Network | ipaddress.IPv6Network]:
    return [ipaddress.ip_network(c) for c in cidrs]


# (reason, networks), first match wins: the metadata addresses lie inside link-local and ULA ranges
_REFUSED: list[tuple[str, list[ipaddress.IPv4Network | ipaddress.IPv6Network]]] = [
    ("a cloud metadata address", _nets("169.254.169.254/32", "fd00:ec2::254/128")),
    ("an unspecified address", _nets("0.0.0.0/8", "::/128")),
    ("a loopback address", _nets("127.0.0.0/8", "::1/128")),
    ("a private address", _nets("10.0.0.0/8", "172.16.0.0/12", "192.168.0.0/16", "fc00::/7", "64:ff9b:1::/48")),
    ("a shared (CGNAT) address", _nets("100.64.0.0/10")),
    ("a link-local address", _nets("169.254.0.0/16", "fe80::/10", "fec0::/10")),
    ("a multicast address", _nets("224.0.0.0/4", "ff00::/8")),
    ("a reserved address", _nets("240.0.0.0/4", "192.0.0.0/24", "198.18.0.0/15", "100::/64", "::/96")),
]
_NAT64 = ipaddress.ip_network("64:ff9b::/96")


def address_refusal(ip: IPAddress) -> str | None:
    """Why the node must not connect to `ip` (None: a public address)."""
    if isinstance(ip, ipaddress.IPv6Address):
        embedded = ip.ipv4_mapped or ip.sixtofour
        if embedded is None and ip in _NAT64:
            embedded = ipaddress.IPv4Address(int(ip) & 0xFFFFFFFF)
        if embedded is not None:
            return address_refusal(embedded)
        ip = ipaddress.IPv6Address(ip.compressed.split("%", 1)[0])  # a zone index changes nothing
    for reason, nets in _REFUSED:
        if any(ip in net for net in nets):
            return reason
    return None


@dataclass(frozen=True)
class Target:
    """An outbound URL taken apart: `host` without brackets (lowercase), `rest` = path and query as given."""

    scheme: str
    host: str
    port: int
    explicit_port: bool
    rest: str
    ip: IPAddress | None  # the host is an address literal

    @property
    def label(self) -> str:
        """For logs: scheme, host and port only (paths and queries hold stream keys)."""
        return f"{self.scheme}://{self.netloc(self.host)}"

    def netloc(self, host: str) -> str:
        h = f"[{host}]" if ":" in host else host
        return f"{h}:{self.port}" if self.explicit_port or self.scheme not in DEFAULT_PORTS else h

    def with_host(self, host: str) -> str:
        """The same URL with another host (the checked address), the port made explicit."""
        h = f"[{host}]" if ":" in host else host
        return f"{self.scheme}://{h}:{self.port}{self.rest}"


def parse_target(uri: str, schemes: tuple[str, ...]) -> Target:
    """Take an outbound URL apart, strictly: what is refused here is refused before any DNS."""
    if not uri.isascii() or any(c <= " " or c in "\\\x7f" for c in uri):
        raise TargetRefused("invalid uri: spaces, control characters, backslashes and non-ASCII are not allowed")
    m = _SCHEME.match(uri)
    if m is None or m[1].lower() not in schemes:
        raise TargetRefused(f"invalid uri, supported protocols are {', '.join(schemes)}")
    scheme = m[1].lower()
    rest = uri[m.end():]
    # the host part ends where ffmpeg's av_url_split ends it; what follows (an SRT streamid may hold a
    # `#`) is passed on as written
    cut = min((i for i in (rest.find("/"), rest.find("?"), rest.find("#")) if i >= 0), default=len(rest))
    authority, rest = rest[:cut], rest[cut:]
    if "@" in authority:
        raise TargetRefused("invalid uri: credentials in the host part (user@host) are not allowed")
    host, port_text = _split_host_port(authority)
    if scheme == "srt":
        _check_srt_mode(rest)
    if not port_text and scheme not in DEFAULT_PORTS:
        raise TargetRefused(f"invalid uri: {scheme} needs a port")
    port = int(port_text) if port_text else DEFAULT_PORTS[scheme]
    if not 0 < port < 65536:
        raise TargetRefused("invalid uri: the port must be 1 to 65535")
    return Target(scheme, host, port, bool(port_text), rest, _literal(host))


def _split_host_port(authority: str) -> tuple[str, str]:
    if authority.startswith("["):
        host, sep, after = authority[1:].partition("]")
        if not sep or (after and not after.startswith(":")):
            raise TargetRefused("invalid uri: malformed IPv6 address")
        try:
            ipaddress.IPv6Address(host)
        except ValueError:
            raise TargetRefused("invalid uri: malformed IPv6 address") from None
        port_text = after[1:] if after else ""
    else:
        host, _, port_text = authority.partition(":")
        host = host.lower()
        if not host:
            raise TargetRefused("invalid uri: a host is required")
        if not _HOST_NAME.match(host) or len(host) > 253:
            raise TargetRefused("invalid uri: malformed host name")
    if authority.endswith(":") or (port_text and not port_text.isdigit()):
        raise TargetRefused("invalid uri: malformed port")
    return host, port_text


def _literal(host: str) -> IPAddress | None:
    try:
        return ipaddress.ip_address(host)
    except ValueError:
        pass
    if _LEGACY_IPV4.match(host):  # forms the C resolver takes for an address, e.g. 127.1 or 0x7f.0.0.1
        try:
            return ipaddress.IPv4Address(socket.inet_aton(host))
        except OSError:
            return None
    return None


def _check_srt_mode(rest: str) -> None:
    """SRT connects as caller by default; listener and rendezvous would open a port on this node instead."""
    _, _, query = rest.partition("?")
    for param in query.split("&"):
        key, _, value = param.partition("=")
        if unquote(key).strip().lower() == "mode" and unquote(value) != "caller":
            raise TargetRefused("SRT targets must use mode=caller")


def check_target(uri: str, schemes: tuple[str, ...], *, allow_private: bool) -> Target:
    """The checks that need no DNS: a URL stored through the API passes these (or the API answers 422)."""
    target = parse_target(uri, schemes)
    if target.ip is not None and not allow_private and (why := address_refusal(target.ip)) is not None:
        raise TargetRefused(f"must not point to {why} (ONAIR_ALLOW_PRIVATE_TARGETS is off)")
    return target


async def resolve_target(host: str, port: int, *, allow_private: bool, udp: bool = False) -> IPAddress:
    """Resolve `host` once, check every address it has, and return the one to connect to."""
    literal = _literal(host)
    if literal is not None:
        addresses = [literal]
    else:
        try:
            infos = await asyncio.get_running_loop().getaddrinfo(
                host, port, type=socket.SOCK_DGRAM if udp else socket.SOCK_STREAM)
        except OSError as exc:
            raise TargetRefused(f"{host} does not resolve: {exc.strerror or exc}") from None
        addresses = list(dict.fromkeys(ipaddress.ip_address(str(info[4][0]).split("%", 1)[0]) for info in infos))
        if not addresses:
            raise TargetRefused(f"{host} does not resolve")
    if not allow_private:
        for ip in addresses:
            if (why := address_refusal(ip)) is not None:
                # every address is checked: a name with one private address among public ones is refused
                raise TargetRefused(f"{host} resolves to {why} ({ip})")
    return addresses[0]
