"""The outbound-target policy (onair.outbound): PULL sources and restream targets reach public addresses only.

Unit tests of the address rules and URL parsing, the egress proxy against a redirect, the API's 422 for
what is known without DNS, and a node that refuses a name resolving to loopback at run time while a
listening socket on that port sees no connection.
"""

from __future__ import annotations

import asyncio
import http.server
import ipaddress
import json
import os
import socket
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from onair.outbound import PULL_SCHEMES, RESTREAM_SCHEMES, TargetRefused, address_refusal, check_target
from onair.outbound.gateway import Outbound, rtmp_tcurl
from onair.outbound.policy import parse_target, resolve_target
from onair.outbound.proxy import EgressProxy
from tests.conftest import OnairServer, wait_until

REFUSED = {
    "127.0.0.1": "loopback", "127.255.255.254": "loopback", "::1": "loopback",
    "10.0.0.1": "private", "172.16.0.1": "private", "172.31.255.255": "private", "192.168.1.1": "private",
    "fc00::1": "private", "fd12:3456::1": "private",
    "169.254.0.1": "link-local", "fe80::1": "link-local", "fe80::1%eth0": "link-local",
    "100.64.0.1": "CGNAT", "100.127.255.255": "CGNAT",
    "224.0.0.1": "multicast", "239.255.255.250": "multicast", "ff02::1": "multicast",
    "0.0.0.0": "unspecified", "0.1.2.3": "unspecified", "::": "unspecified",
    "169.254.169.254": "metadata", "fd00:ec2::254": "metadata",
    "255.255.255.255": "reserved", "240.0.0.1": "reserved",
    # IPv4 inside IPv6: mapped, NAT64, 6to4
    "::ffff:127.0.0.1": "loopback", "::ffff:10.1.2.3": "private", "64:ff9b::a9fe:a9fe": "metadata",
    "2002:7f00:1::": "loopback", "2002:c0a8:101::1": "private",
}
ALLOWED = ["8.8.8.8", "1.1.1.1", "93.184.216.34", "172.15.255.255", "172.32.0.1", "100.63.255.255",
           "100.128.0.1", "169.253.255.255", "223.255.255.255", "2001:4860:4860::8888", "2606:4700::1111",
           "::ffff:8.8.8.8", "64:ff9b::808:808", "2002:808:808::1"]


@pytest.mark.parametrize("address", sorted(REFUSED))
def test_refused_addresses(address: str) -> None:
    why = address_refusal(ipaddress.ip_address(address))
    assert why is not None and REFUSED[address].lower() in why.lower(), (address, why)


@pytest.mark.parametrize("address", ALLOWED)
def test_public_addresses_allowed(address: str) -> None:
    assert address_refusal(ipaddress.ip_address(address)) is None


@pytest.mark.parametrize("uri", [
    "rtmp://127.0.0.1/live/key", "rtmp://127.1/live/key", "http://2130706433/x.m3u8", "http://0x7f000001/x",
    "http://0177.0.0.1/x", "https://[::1]:8443/x.m3u8", "srt://10.0.0.1:9000", "http://169.254.169.254/latest",
    "http://[fd00:ec2::254]/latest", "rtmps://192.168.0.10/app/key", "http://[::ffff:127.0.0.1]/x",
])
def test_literal_private_targets_refused_without_dns(uri: str) -> None:
    with pytest.raises(TargetRefused, match="must not point to"):
        check_target(uri, PULL_SCHEMES, allow_private=False)
    assert check_target(uri, PULL_SCHEMES, allow_private=True).ip is not None  # the setting lets them through


@pytest.mark.parametrize(("uri", "schemes", "why"), [
    ("HTTP://", PULL_SCHEMES, "host is required"),
    ("http:///etc/passwd", PULL_SCHEMES, "host is required"),
    ("file:///etc/passwd", PULL_SCHEMES, "supported protocols"),
    ("http://example.com/x", RESTREAM_SCHEMES, "supported protocols"),
    ("srt://x?mode=listener&streamid=mode=caller", RESTREAM_SCHEMES, "mode=caller"),
    ("srt://x:9000?mode=listener&streamid=mode=caller", PULL_SCHEMES, "mode=caller"),
    ("srt://x:9000?streamid=a&mode=rendezvous", RESTREAM_SCHEMES, "mode=caller"),
    ("srt://x:9000?streamid=a&MODE=listener", RESTREAM_SCHEMES, "mode=caller"),
    ("srt://x:9000?m%6Fde=listener", RESTREAM_SCHEMES, "mode=caller"),
    ("srt://x:9000?mode=caller&mode=listener", RESTREAM_SCHEMES, "mode=caller"),
    ("srt://x", RESTREAM_SCHEMES, "needs a port"),
    ("http://user:pass@example.com/x", PULL_SCHEMES, "credentials"),
    ("http://example.com@127.0.0.1/x", PULL_SCHEMES, "credentials"),
    ("http://example.com\\@127.0.0.1/", PULL_SCHEMES, "backslash"),
    ("rtmp://example.com:0/a/b", RESTREAM_SCHEMES, "port"),
    ("rtmp://example.com:99999/a/b", RESTREAM_SCHEMES, "port"),
    ("rtmp://example.com:/a/b", RESTREAM_SCHEMES, "port"),
    ("rtmp://exa mple.com/a", RESTREAM_SCHEMES, "spaces"),
    ("http://exämple.com/a", PULL_SCHEMES, "non-ASCII"),
    ("http://example.com%2f@x/a", PULL_SCHEMES, "credentials"),
    ("http://[::1/a", PULL_SCHEMES, "IPv6"),
])
def test_malformed_or_unsafe_urls_refused(uri: str, schemes: tuple[str, ...], why: str) -> None:
    with pytest.raises(TargetRefused, match=why):
        parse_target(uri, schemes)


def test_well_formed_targets_parsed() -> None:
    t = parse_target("HTTPS://Example.COM/live/x.m3u8?token=a#frag", PULL_SCHEMES)
    assert (t.scheme, t.host, t.port, t.explicit_port, t.ip) == ("https", "example.com", 443, False, None)
    assert t.label == "https://example.com"
    s = parse_target("srt://ingest.example.com:9000?streamid=1#token&mode=caller", RESTREAM_SCHEMES)
    assert s.port == 9000 and s.with_host("203.0.113.5") == "srt://203.0.113.5:9000?streamid=1#token&mode=caller"
    r = parse_target("rtmp://[2001:db8::1]/live/key", RESTREAM_SCHEMES)
    assert r.with_host("2001:db8::1") == "rtmp://[2001:db8::1]:1935/live/key"


@pytest.mark.parametrize(("uri", "tcurl"), [
    ("rtmp://a.rtmp.youtube.com/live2/abc-key", "rtmp://a.rtmp.youtube.com:1935/live2"),
    ("rtmp://Host:1940/app/inst/stream", "rtmp://host:1940/app/inst"),
    ("rtmp://host/app/mp4:dir/file", "rtmp://host:1935/app"),
    ("rtmp://host/app", "rtmp://host:1935/app"),
    ("rtmp://host/ondemand/file", "rtmp://host:1935/ondemand"),
    ("rtmp://host/in/1?token", "rtmp://host:1935/in"),
])
def test_rtmp_tcurl_is_what_ffmpeg_would_send(uri: str, tcurl: str) -> None:
    assert rtmp_tcurl(parse_target(uri, RESTREAM_SCHEMES)) == tcurl


def test_names_resolved_and_every_address_checked() -> None:
    async def run() -> None:
        with pytest.raises(TargetRefused, match="loopback"):
            await resolve_target("localhost", 80, allow_private=False)
        assert (await resolve_target("localhost", 80, allow_private=True)).is_loopback
        with pytest.raises(TargetRefused, match="does not resolve"):
            await resolve_target("no-such-host.invalid", 80, allow_private=False)
        # rtmp and srt are pinned to the checked address; http(s) and rtmps go through the egress proxy
        ob = Outbound(allow_private=True)
        try:
            rtmp = await ob.prepare("rtmp://localhost:1935/live/key", RESTREAM_SCHEMES)
            assert rtmp.url in ("rtmp://127.0.0.1:1935/live/key", "rtmp://[::1]:1935/live/key")
            assert rtmp.options == ["-rtmp_tcurl", "rtmp://localhost:1935/live"] and rtmp.env is None
            srt = await ob.prepare("srt://localhost:9000?streamid=x", RESTREAM_SCHEMES)
            assert srt.url.endswith(":9000?streamid=x") and "localhost" not in srt.url
            tls = await ob.prepare("rtmps://localhost:1936/live/key", RESTREAM_SCHEMES)  # via a TLS relay
            assert tls.url.startswith("rtmp://127.0.0.1:") and tls.url.endswith("/live/key")
            assert tls.options == ["-rtmp_tcurl", "rtmps://localhost:1936/live"]
            web = await ob.prepare("https://localhost/x.m3u8", PULL_SCHEMES)
            assert web.url == "https://localhost/x.m3u8" and web.env is not None
            assert web.env["http_proxy"].endswith(f"@127.0.0.1:{ob.proxy.port}/")
            assert "no_proxy" not in web.env and "NO_PROXY" not in web.env
            assert web.input_args()[:2] == ["-protocol_whitelist", "http,https,tls,tcp,httpproxy,crypto"]
        finally:
            await ob.close()

    asyncio.run(run())


# --------------------------------------------------------------------------- egress proxy, real ffmpeg


@pytest.fixture
def listener() -> Iterator[socket.socket]:
    """A TCP port on 127.0.0.2 that must never see a connection."""
    sock = socket.socket()
    sock.bind(("127.0.0.2", 0))
    sock.listen(8)
    sock.setblocking(False)
    yield sock
    sock.close()


def _connected(sock: socket.socket) -> bool:
    try:
        conn, _ = sock.accept()
    except BlockingIOError:
        return False
    conn.close()
    return True


class _Redirect(http.server.BaseHTTPRequestHandler):
    def do_GET(self) -> None:  # noqa: N802 - http.server's naming
        self.send_response(302)
        self.send_header("Location", self.server.location)  # type: ignore[attr-defined]
        self.send_header("Content-Length", "0")
        self.end_headers()

    def log_message(self, *args: Any) -> None:
        pass


def test_proxy_refuses_a_redirect_to_a_refused_address(listener: socket.socket) -> None:
    """ffmpeg follows redirects by itself; through the egress proxy each hop is checked."""
    origin = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Redirect)
    origin.location = f"http://127.0.0.2:{listener.getsockname()[1]}/x.m3u8"  # type: ignore[attr-defined]
    threading.Thread(target=origin.serve_forever, daemon=True).start()
    asked: list[str] = []

    async def only_127_0_0_1(host: str, port: int) -> Any:
        asked.append(host)
        if host != "127.0.0.1":
            raise TargetRefused(f"{host} is not allowed in this test")
        return ipaddress.ip_address(host)

    async def run() -> tuple[int, str]:
        proxy = EgressProxy(only_127_0_0_1)
        await proxy.start()
        try:
            env = {**os.environ, "http_proxy": proxy.url}
            proc = await asyncio.create_subprocess_exec(
                "ffmpeg", "-hide_banner", "-loglevel", "error", "-nostdin", "-i",
                f"http://127.0.0.1:{origin.server_address[1]}/redirect", "-f", "null", "-",
                env=env, stdout=asyncio.subprocess.DEVNULL, stderr=asyncio.subprocess.PIPE)
            _, err = await asyncio.wait_for(proc.communicate(), 60)
            return proc.returncode or 0, err.decode(errors="replace")
        finally:
            await proxy.close()

    try:
        rc, err = asyncio.run(run())
    finally:
        origin.shutdown()
    assert rc != 0 and "403" in err, err
    assert asked == ["127.0.0.1", "127.0.0.2"], asked
    assert not _connected(listener)


# --------------------------------------------------------------------------- the API and a running node


@pytest.fixture(scope="module")
def node(tmp_path_factory: pytest.TempPathFactory) -> Iterator[OnairServer]:
    srv = OnairServer(tmp_path_factory.mktemp("outbound") / "node", pull_stall_timeout=2).start()
    yield srv
    srv.stop()


BAD_PULL = ["HTTP://", "http:///etc/passwd", "srt://x?mode=listener&streamid=mode=caller",
            "srt://x:9000?mode=listener&streamid=mode=caller", "rtmp://127.0.0.1/live/x", "http://[::1]:8080/x.m3u8",
            "http://169.254.169.254/latest/meta-data", "srt://10.1.2.3:9000", "http://2130706433/x.m3u8",
            "rtmp://a.example/live/x http://127.0.0.1/x.m3u8"]
BAD_RESTREAM = ["srt://x?mode=listener&streamid=mode=caller", "srt://x:1?mode=listener&streamid=mode=caller",
                "HTTP://", "rtmp://127.0.0.1/live/x", "rtmp://[::ffff:7f00:1]/live/x", "srt://192.168.1.2:9000",
                "rtmps://100.64.0.1/app/key"]


@pytest.mark.parametrize("uri", BAD_PULL)
def test_api_refuses_pull_sources(node: OnairServer, uri: str) -> None:
    with node.client() as c:
        r = c.post("/streaming/streams", json={"name": "p", "pull": True, "uri": uri})
        assert r.status_code == 422 and list(r.json()["errors"]) == ["uri"], r.text
        sid = c.post("/streaming/streams", json={"name": "q"}).json()["id"]
        r = c.patch(f"/streaming/streams/{sid}", json={"stream": {"pull": True, "uri": uri}})
        assert r.status_code == 422 and list(r.json()["errors"]) == ["uri"], r.text


@pytest.mark.parametrize("uri", BAD_RESTREAM)
def test_api_refuses_restream_targets(node: OnairServer, uri: str) -> None:
    with node.client() as c:
        sid = c.post("/streaming/streams", json={"name": "r"}).json()["id"]
        r = c.post("/streaming/restreams", json={"restream": {"stream_id": sid, "uri": uri}})
        assert r.status_code == 422 and list(r.json()["errors"]) == ["uri"], r.text
        ok = c.post("/streaming/restreams", json={"restream": {"stream_id": sid, "uri": "rtmp://a.example/live/k"}})
        assert ok.status_code == 200, ok.text
        r = c.patch(f"/streaming/restreams/{ok.json()['id']}", json={"restream": {"uri": uri}})
        assert r.status_code == 422 and list(r.json()["errors"]) == ["uri"], r.text


def _log(srv: OnairServer) -> list[dict[str, Any]]:
    return [json.loads(ln) for ln in srv.log_path.read_text(errors="replace").splitlines() if ln.startswith("{")]


def test_pull_of_a_name_resolving_to_loopback_is_refused_at_run_time(node: OnairServer) -> None:
    """`localhost` passes the API (a name) but resolves to loopback: the node never connects (TCP or UDP)."""
    tcp = socket.socket()
    tcp.bind(("127.0.0.1", 0))
    tcp.listen(8)
    tcp.setblocking(False)
    udp = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    udp.bind(("127.0.0.1", 0))
    udp.setblocking(False)
    port, uport = tcp.getsockname()[1], udp.getsockname()[1]
    sources = [f"rtmp://localhost:{port}/live/x", f"http://localhost:{port}/x.m3u8", f"srt://localhost:{uport}",
               f"rtmps://localhost:{port}/live/x"]
    try:
        with node.client() as c:
            stream = c.post("/streaming/streams", json={"name": "pull", "active": True, "pull": True,
                                                        "uri": " ".join(sources)}).json()

        def all_refused() -> bool:
            assert not _connected(tcp), "the node connected to the refused source"
            with pytest.raises(BlockingIOError):
                udp.recv(2048)
            refused = {x["source"] for x in _log(node) if x.get("msg") == "pull source refused"
                       and x.get("stream_id") == stream["id"]}
            return len(refused) == len(sources)

        wait_until(all_refused, 30, what="every source refused")
        reasons = {x["reason"] for x in _log(node) if x.get("msg") == "pull source refused"}
        assert all("loopback" in r for r in reasons), reasons
        with node.client() as c:
            assert c.get(f"/streaming/streams/{stream['id']}").json()["live"] is False
        assert not _connected(tcp)
    finally:
        tcp.close()
        udp.close()


@pytest.mark.media
def test_restream_to_a_name_resolving_to_loopback_is_refused(node: OnairServer) -> None:
    from tests.media import push_rtmp, stop

    tcp = socket.socket()
    tcp.bind(("127.0.0.1", 0))
    tcp.listen(8)
    tcp.setblocking(False)
    port = tcp.getsockname()[1]
    with node.client() as c:
        stream = c.post("/streaming/streams", json={"name": "src", "active": True}).json()
        rs = c.post("/streaming/restreams", json={"restream": {
            "stream_id": stream["id"], "uri": f"rtmp://localhost:{port}/live/key"}}).json()
    publisher = push_rtmp(stream["push_url"], size="320x180", rate=15)
    try:
        def refused() -> bool:
            assert not _connected(tcp), "the node connected to the refused restream target"
            return any(x.get("msg") == "restream target refused" and x.get("restream_id") == rs["id"]
                       for x in _log(node))

        wait_until(refused, 30, what="restream target refused")
        with node.client() as c:
            # the refusal comes with the first bytes; `live` with the first complete segment
            wait_until(lambda: c.get(f"/streaming/streams/{stream['id']}").json()["live"], 15, what="source live")
            assert c.get(f"/streaming/restreams/{rs['id']}").json()["live"] is False
        assert not _connected(tcp)
    finally:
        stop(publisher)
        tcp.close()
    assert httpx.get(node.base_url + "/healthz", timeout=5).json()["status"] == "ok"


@pytest.mark.media
def test_rtmps_restream_goes_through_the_tls_relay(make_server: Any) -> None:
    """An RTMPS target (here the node's own RTMPS port, by name) is reached through the TLS relay."""
    from tests.media import push_rtmp, stop

    srv = make_server("relay", allow_private_targets=True).start()
    with srv.client() as c:
        source = c.post("/streaming/streams", json={"name": "source", "active": True}).json()
        target = c.post("/streaming/streams", json={"name": "target", "active": True}).json()
        path = target["push_url"].split(f":{srv.ports['rtmp']}", 1)[1]
        rs = c.post("/streaming/restreams", json={"restream": {
            "stream_id": source["id"], "uri": f"rtmps://localhost:{srv.ports['rtmps']}{path}"}}).json()
    publisher = push_rtmp(source["push_url"], size="320x180", rate=15)
    try:
        with srv.client() as c:
            wait_until(lambda: c.get(f"/streaming/streams/{target['id']}").json()["live"], 30,
                       what="the RTMPS restream target live")
            wait_until(lambda: c.get(f"/streaming/restreams/{rs['id']}").json()["live"], 15, what="restream live")
            assert c.get(f"/streaming/streams/{target['id']}").json()["stream_source_type"] == "rtmp"
    finally:
        stop(publisher)
    accepted = [x for x in _log(srv) if x.get("msg") == "publish accepted" and x.get("protocol") == "rtmps"]
    assert accepted, "the target was not reached over RTMPS"


def test_setting_is_documented() -> None:
    readme = (Path(__file__).resolve().parent.parent / "README.md").read_text()
    assert "ONAIR_ALLOW_PRIVATE_TARGETS" in readme
