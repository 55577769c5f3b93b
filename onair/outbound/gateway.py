"""How an ffmpeg of this node reaches an outbound URL: only through a checked address.

`Outbound.prepare` turns a PULL source or restream target into what to hand ffmpeg:

* ``rtmp`` and ``srt``: the host is resolved and checked once, and ffmpeg gets the URL with the
  checked address in place of the name (RTMP keeps the original ``tcUrl``, which ingest servers
  route by, through ``-rtmp_tcurl``);
* ``rtmps``: ffmpeg speaks plain RTMP to a one-shot relay on 127.0.0.1 that speaks TLS to the checked
  address with the original host as server name (onair.outbound.tls_relay), ``tcUrl`` unchanged;
* ``http`` and ``https``: the URL is kept as it is, and ffmpeg runs with ``http_proxy`` set to the
  node's egress proxy (onair.outbound.proxy), which checks every connection, redirects and HLS
  sub-requests included; TLS stays end to end with the original server name (SNI). The host is also
  resolved and checked here, so that a refused source is logged before ffmpeg runs.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field

from onair.outbound.policy import IPAddress, Target, check_target, resolve_target
from onair.outbound.proxy import EgressProxy
from onair.outbound.tls_relay import TlsRelay

__all__ = ["Outbound", "Outgoing", "rtmp_tcurl"]

_PROXY_ENV = ("http_proxy", "HTTP_PROXY", "https_proxy", "HTTPS_PROXY", "no_proxy", "NO_PROXY", "all_proxy",
              "ALL_PROXY")
# what an ffmpeg pulling from a source may open: the source's protocol and what it is built on, nothing
# else (an HLS playlist naming file: or tcp: URLs gets nowhere)
_INPUT_PROTOCOLS = {
    "rtmp": "rtmp,tcp",
    "srt": "srt",
    "http": "http,https,tls,tcp,httpproxy,crypto",
    "https": "http,https,tls,tcp,httpproxy,crypto",
}


@dataclass(frozen=True)
class Outgoing:
    """What ffmpeg gets for one outbound URL."""

    url: str
    options: list[str] = field(default_factory=list)  # protocol options, placed right before the URL
    env: dict[str, str] | None = None  # the whole environment of the ffmpeg process (None: inherit)
    label: str = ""

    def input_args(self) -> list[str]:
        """``-protocol_whitelist`` and the protocol options of an input (placed before ``-i``)."""
        scheme = self.url.split(":", 1)[0]
        return ["-protocol_whitelist", _INPUT_PROTOCOLS[scheme], *self.options]


class Outbound:
    """The outbound policy of a node (``ONAIR_ALLOW_PRIVATE_TARGETS``) and its egress proxy."""

    def __init__(self, *, allow_private: bool) -> None:
        self.allow_private = allow_private
        self.proxy = EgressProxy(self._resolve)
        self._relays: set[TlsRelay] = set()

    async def _resolve(self, host: str, port: int) -> IPAddress:
        return await resolve_target(host, port, allow_private=self.allow_private)

    def check(self, uri: str, schemes: tuple[str, ...]) -> Target:
        """The checks that need no DNS (what the API refuses with 422)."""
        return check_target(uri, schemes, allow_private=self.allow_private)

    async def prepare(self, uri: str, schemes: tuple[str, ...]) -> Outgoing:
        """Resolve, check and pin an outbound URL; raises TargetRefused."""
        target = self.check(uri, schemes)
        ip = await resolve_target(target.host, target.port, allow_private=self.allow_private,
                                  udp=target.scheme == "srt")
        if target.scheme == "srt":
            return Outgoing(target.with_host(str(ip)), label=target.label)
        if target.scheme == "rtmp":
            return Outgoing(target.with_host(str(ip)), ["-rtmp_tcurl", rtmp_tcurl(target)], label=target.label)
        if target.scheme == "rtmps":
            relay = TlsRelay(ip, target.port, target.host)
            self._relays = {r for r in self._relays if not r.done.is_set()}
            self._relays.add(relay)
            port = await relay.start()
            url = f"rtmp://127.0.0.1:{port}{target.rest}"
            return Outgoing(url, ["-rtmp_tcurl", rtmp_tcurl(target)], label=target.label)
        await self.proxy.start()
        env = {k: v for k, v in os.environ.items() if k not in _PROXY_ENV}
        env["http_proxy"] = self.proxy.url
        return Outgoing(uri, env=env, label=target.label)

    async def close(self) -> None:
        await self.proxy.close()
        for relay in list(self._relays):
            await relay.close()
        self._relays.clear()


def rtmp_tcurl(target: Target) -> str:
    """The tcUrl ffmpeg sends for the URL as written, ``rtmp://host:port/app``, `app` by ffmpeg's own rule
    (rtmpproto.c: the path's first component, or its first two when a third follows)."""
    path = target.rest  # with the query, as ffmpeg sees it
    qmark = path.find("?")
    if qmark >= 0 and "slist=" in path[qmark:]:
        app = path[1:qmark]
    elif path.startswith("/ondemand/"):
        app = "ondemand"
    else:
        after = path[1:]
        slash = after.find("/")
        if slash < 0:
            app = after
        else:
            rest = after[slash + 1:]
            second, colon = rest.find("/"), rest.find(":")
            app = after[:slash] if second < 0 or 0 <= colon < second else after[:slash + 1 + second]
    host = f"[{target.host}]" if ":" in target.host else target.host
    return f"{target.scheme}://{host}:{target.port}/{app}"
