"""`onair edge-config` → a real nginx caching edge in front of a node.

N identical concurrent requests through the edge cost the node one request (proxy_cache_lock), blocking
reloads are cached per `_HLS_msn`/`_HLS_part`, and the API passes through uncached.
"""

from __future__ import annotations

import re
import shutil
import signal
import subprocess
import tempfile
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
import pytest

from tests.conftest import API_KEY, ONAIR, OnairServer, free_port, wait_until
from tests.ingest_media import create_stream
from tests.media import parse_master, push_rtmp, stop

pytestmark = pytest.mark.media

NGINX = "/usr/sbin/nginx"
VIEWERS = 20


def _requests(srv: OnairServer, kind: str, status: str = "200") -> float:
    text = httpx.get(srv.base_url + "/metrics", timeout=10).text
    m = re.search(rf'^onair_playback_requests_total\{{kind="{kind}",status="{status}"\}} ([0-9.e+]+)$', text, re.M)
    return float(m[1]) if m else 0.0


def _edge_config(listen: str, *nodes: str) -> subprocess.CompletedProcess[str]:
    args = [ONAIR, "edge-config", "--listen", listen, "--cache-dir", "cache"]
    for node in nodes:
        args += ["--node", node]
    return subprocess.run(args, capture_output=True, text=True, timeout=30)


@pytest.fixture
def edge(server: OnairServer) -> Iterator[str]:
    port = free_port()
    out = _edge_config(f"127.0.0.1:{port}", server.base_url)
    assert out.returncode == 0, out.stderr
    # started as root, nginx runs its workers as nobody: the prefix (cache, temp files) must be theirs to
    # reach, which pytest's private tmp_path is not
    prefix = Path(tempfile.mkdtemp(prefix="onair-edge-"))
    prefix.chmod(0o755)
    conf = prefix / "nginx.conf"
    conf.write_text(out.stdout)
    proc = subprocess.Popen([NGINX, "-c", str(conf), "-p", str(prefix) + "/"], stdout=subprocess.DEVNULL,
                            stderr=subprocess.PIPE)
    base = f"http://127.0.0.1:{port}"
    try:
        wait_until(lambda: proc.poll() is None and httpx.get(base + "/healthz", timeout=2).status_code == 200, 10,
                   what="nginx edge up")
        yield base
    finally:
        proc.send_signal(signal.SIGQUIT)  # graceful: workers finish, then exit
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(5)
        shutil.rmtree(prefix, ignore_errors=True)


def test_edge_config_refuses_bad_input() -> None:
    assert _edge_config("127.0.0.1:8088").returncode != 0  # no --node
    bad = _edge_config("127.0.0.1:8088", "http://127.0.0.1:8080;evil")
    assert bad.returncode == 2 and "--node" in bad.stderr and not bad.stdout
    bad = _edge_config("127.0.0.1:99999", "http://127.0.0.1:8080")
    assert bad.returncode == 2 and "--listen" in bad.stderr


def test_edge_collapses_identical_requests(server: OnairServer, edge: str) -> None:
    stream = create_stream(server)
    encoder = push_rtmp(stream["push_url"], size="320x240", rate=15)
    pid = stream["hls_cmaf_url"].split("/cmaf/", 1)[1].split("/", 1)[0]
    try:
        with httpx.Client(base_url=edge, timeout=30) as http:
            master = wait_until(lambda: (r := http.get(f"/cmaf/{pid}/master.m3u8")).status_code == 200 and r, 30,
                                what="master playlist through the edge")
            media = parse_master(master.text, edge + f"/cmaf/{pid}/master.m3u8")[0]["uri"]
            path = media.removeprefix(edge)
            r = wait_until(lambda: (x := http.get(path)).status_code == 200 and "PRELOAD-HINT" in x.text and x, 30,
                           what="media playlist with a preload hint")
            assert "s-maxage=1" in r.headers["cache-control"]
            hint = re.search(r'#EXT-X-PRELOAD-HINT:TYPE=PART,URI="part(\d+)\.(\d+)\.m4s"', r.text)
            assert hint is not None, r.text
            msn, idx = int(hint[1]), int(hint[2])
            part_url = path.rsplit("/", 1)[0] + f"/part{msn}.{idx}.m4s"
            reload_url = f"{path}?_HLS_msn={msn}&_HLS_part={idx}"

            # a non-blocking playlist: players revalidate, the edge keeps it for a second (s-maxage)
            media_before = _requests(server, "hls_media")
            with ThreadPoolExecutor(VIEWERS) as pool:
                plain = list(pool.map(lambda _: http.get(path), range(VIEWERS)))
            assert {a.status_code for a in plain} == {200}
            plain_cost = _requests(server, "hls_media") - media_before
            assert plain_cost <= 2  # 2: the entry may expire in the middle of the burst

            parts_before = _requests(server, "cmaf_part")
            media_before = _requests(server, "hls_media")
            # viewers at the live edge: each asks for the hinted part and the blocking reload that waits for it
            with ThreadPoolExecutor(2 * VIEWERS) as pool:
                parts = [pool.submit(http.get, part_url) for _ in range(VIEWERS)]
                reloads = [pool.submit(http.get, reload_url) for _ in range(VIEWERS)]
                part_answers = [f.result() for f in parts]
                reload_answers = [f.result() for f in reloads]
            assert {a.status_code for a in part_answers} == {200}
            assert len({a.content for a in part_answers}) == 1 and part_answers[0].content
            assert "immutable" in part_answers[0].headers["cache-control"]
            assert {a.status_code for a in reload_answers} == {200}
            assert all(f"part{msn}.{idx}.m4s" in a.text for a in reload_answers)
            part_cost = _requests(server, "cmaf_part") - parts_before
            reload_cost = _requests(server, "hls_media") - media_before
            print(f"\n{VIEWERS} identical part requests through the edge: {part_cost:.0f} upstream; "
                  f"{VIEWERS} identical blocking reloads: {reload_cost:.0f} upstream; {VIEWERS} playlist "
                  f"requests: {plain_cost:.0f} upstream")
            assert part_cost == 1
            assert reload_cost == 1

            # the API passes through, uncached
            api = http.get(f"/streaming/streams/{stream['id']}", headers={"Authorization": f"APIKey {API_KEY}"})
            assert api.status_code == 200 and api.json()["live"] and "x-cache-status" not in api.headers
    finally:
        stop(encoder)
