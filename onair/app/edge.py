"""`onair edge-config`: an nginx configuration for a caching edge in front of onair nodes.

The nodes' playback responses say how long they may be cached (onair.delivery.routes): playlists and MPDs
for about a second (a blocking reload, keyed by `_HLS_msn`/`_HLS_part`/`_HLS_skip`, a little longer), parts,
segments and init sections for their whole useful life. nginx keeps to those headers; `proxy_cache_lock`
makes N identical concurrent requests one upstream request. Everything else (the API, WHIP, the pages)
passes through uncached.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from urllib.parse import urlsplit

__all__ = ["EdgeConfigError", "EdgeSettings", "parse_listen", "parse_node", "render_edge_config"]

# what may go into the file unquoted: no spaces, quotes, semicolons or braces (no directive injection)
_SAFE_HOST = re.compile(r"^(\[[0-9A-Fa-f:.]+\]|[A-Za-z0-9.-]{1,253})$")
_SAFE_PATH = re.compile(r"^[A-Za-z0-9._/-]{1,4096}$")


class EdgeConfigError(ValueError):
    pass


@dataclass(frozen=True)
class EdgeSettings:
    listen: str  # host:port
    nodes: tuple[str, ...]  # host:port of each node's HTTP port
    cache_dir: str = "cache"  # relative: under nginx's prefix (-p DIR)
    cache_size: str = "1g"


def parse_listen(value: str) -> str:
    host, sep, port = value.rpartition(":")
    if not sep or not _SAFE_HOST.match(host) or not port.isdigit() or not 0 < int(port) < 65536:
        raise EdgeConfigError(f"--listen must be HOST:PORT, got {value!r}")
    return f"{host}:{int(port)}"


def parse_node(value: str) -> str:
    """A node's base URL (http://host:port) → the upstream server address nginx connects to."""
    parts = urlsplit(value)
    try:
        port = parts.port or 80
    except ValueError:
        raise EdgeConfigError(f"--node has a bad port: {value!r}") from None
    if parts.scheme != "http" or not parts.hostname or parts.path not in ("", "/") or parts.query:
        raise EdgeConfigError(f"--node must be http://HOST:PORT (a node's HTTP port), got {value!r}")
    host = f"[{parts.hostname}]" if ":" in parts.hostname else parts.hostname
    if not _SAFE_HOST.match(host):
        raise EdgeConfigError(f"--node has a bad host: {value!r}")
    return f"{host}:{port}"


def _cache_dir(value: str) -> str:
    if not _SAFE_PATH.match(value):
        raise EdgeConfigError(f"--cache-dir may hold letters, digits and ._/- only, got {value!r}")
    return value


_PROXY_COMMON = """\
            proxy_pass http://onair_nodes;
            proxy_cache onair;
            proxy_cache_lock on;            # N identical concurrent requests: one goes upstream
            proxy_cache_lock_timeout 15s;   # a blocking reload may wait up to 3 target durations
            proxy_cache_lock_age 15s;
            proxy_cache_methods GET HEAD;
            # until nodes serve each other's streams, a node without the stream answers 404: try the next
            proxy_next_upstream error timeout http_502 http_503 http_504 http_404;
            add_header X-Cache-Status $upstream_cache_status always;"""


def render_edge_config(settings: EdgeSettings) -> str:
    if not settings.nodes:
        raise EdgeConfigError("at least one --node is required")
    listen = parse_listen(settings.listen)
    cache_dir = _cache_dir(settings.cache_dir)
    servers = "\n".join(f"        server {n} max_fails=1 fail_timeout=3s;" for n in settings.nodes)
    tries = len(settings.nodes)
    return f"""\
# nginx caching edge for onair, written by `onair edge-config`.
# Run unprivileged:  mkdir -p DIR && nginx -c "$PWD/THIS_FILE" -p DIR
# (pid, logs, temp files and the cache live under DIR; reload with `nginx -c ... -p DIR -s reload`)
worker_processes auto;
pid nginx.pid;
error_log error.log warn;
daemon off;

events {{
    worker_connections 4096;
}}

http {{
    access_log off;
    sendfile on;
    tcp_nodelay on;
    keepalive_timeout 30s;
    client_body_temp_path client_body_temp;
    proxy_temp_path proxy_temp;
    fastcgi_temp_path fastcgi_temp;
    uwsgi_temp_path uwsgi_temp;
    scgi_temp_path scgi_temp;
    client_max_body_size 16m;  # WHIP offers, API bodies

    proxy_cache_path {cache_dir} levels=1:2 keys_zone=onair:32m max_size={settings.cache_size} inactive=10m
                     use_temp_path=off;

    upstream onair_nodes {{
{servers}
        keepalive 64;  # kept-alive connections to the nodes
        keepalive_timeout 25s;  # below the nodes' own (30 s): nginx closes first, never a dead socket
    }}

    server {{
        listen {listen} reuseport backlog=4096;

        proxy_http_version 1.1;
        proxy_set_header Connection "";
        proxy_set_header Host $http_host;
        proxy_set_header X-Forwarded-For $proxy_add_x_forwarded_for;
        proxy_set_header X-Forwarded-Proto $scheme;
        proxy_connect_timeout 2s;
        proxy_read_timeout 30s;
        proxy_next_upstream_tries {tries};
        proxy_next_upstream_timeout 20s;
        proxy_buffering on;

        # LL-HLS playlists and the DASH MPD: lifetimes of about a second from the node's Cache-Control;
        # blocking reloads are their own cache entries (_HLS_msn/_HLS_part/_HLS_skip in the key)
        location ~ ^/(cmaf|mpegts)/.+\\.(m3u8|mpd)$ {{
{_PROXY_COMMON}
            proxy_cache_key "$uri|$arg__HLS_msn|$arg__HLS_part|$arg__HLS_skip|$arg_get_duration_sec";
            proxy_cache_valid 200 1s;  # only when a node sent no lifetime
        }}

        # parts, segments, init sections: named once, cached for their whole life
        location ~ ^/(cmaf|mpegts)/.+\\.(m4s|mp4|ts)$ {{
{_PROXY_COMMON}
            proxy_cache_key "$uri";
            proxy_cache_valid 200 30s;
        }}

        location ~ ^/videoplatform/streams/.+\\.jpg$ {{
{_PROXY_COMMON}
            proxy_cache_key "$uri";
            proxy_cache_valid 200 5s;
        }}

        # the API, WHIP, player pages, /healthz, /metrics: passed through, never cached
        location / {{
            proxy_pass http://onair_nodes;
            proxy_cache off;
            proxy_request_buffering off;
            proxy_next_upstream error timeout;  # non-idempotent requests are never retried (nginx default)
        }}
    }}
}}
"""
