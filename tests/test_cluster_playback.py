"""Three nodes A, B, C: a stream pushed to A plays from C in hls.js and dash.js (Chromium), and the
hls.js player on C resumes by itself when A is SIGKILLed and the encoder re-pushes to B."""

from __future__ import annotations

import signal
import subprocess
import time
from collections.abc import Callable, Iterator
from typing import Any

import pytest

from tests.browser import PLAYER_ARGS, launch_chromium
from tests.conftest import OnairServer, wait_until
from tests.ingest_media import create_stream
from tests.media import push_rtmp, stop
from tests.rtmp_client import Publisher
from tests.test_cluster import (
    ACCEPTED,
    audio_playlist,
    cluster_node,
    live_on,
    newest_msn,
    push_url_on,
    raw_publish,
)
from tests.test_player import assert_plays, player_state

pytestmark = pytest.mark.media


@pytest.fixture
def browser() -> Iterator[Any]:
    yield from launch_chromium(PLAYER_ARGS, need_player_assets=True)


def test_plays_from_a_third_node_and_resumes_after_the_origin_dies(  # type: ignore[no-untyped-def]
        make_server: Callable[..., OnairServer], pg_url: str, redis_url: str, browser: Any) -> None:
    a, b, c = (cluster_node(make_server, n, pg_url, redis_url).start() for n in ("a", "b", "c"))
    stream = create_stream(c)
    sid = stream["id"]
    assert stream["iframe_url"].startswith(c.base_url)
    encoders: list[subprocess.Popen[bytes]] = [push_rtmp(push_url_on(a, stream), size="320x240", rate=15)]
    pubs: list[Publisher] = []
    console: list[str] = []
    pages = []
    try:
        wait_until(lambda: live_on(c, sid, "node-a"), 20, what="live on A, seen from C")
        for query in ("", "?dash"):
            page = browser.new_page()
            page.on("console", lambda m, q=query: console.append(f"{q or 'hls'} {m.type}: {m.text}"))
            page.goto(stream["iframe_url"] + query)
            wait_until(lambda p=page: player_state(p) == "playing", 40,
                       what=f"C's player{query} playing; {console[-10:]}")
            assert page.evaluate("onairPlayer.mode") == ("dash" if query else "llhls")
            assert_plays(page, 20, console)
            pages.append(page)
        hls_page = pages[0]
        before = wait_until(lambda: audio_playlist(c, stream), 10, what="C's playlist")

        assert a.proc is not None
        a.proc.send_signal(signal.SIGKILL)
        a.proc.wait(5)
        killed = time.monotonic()
        encoders[0].wait(10)

        def accepted_on_b() -> bool:
            code, pub = raw_publish(b, stream)
            pubs.append(pub)
            return code == ACCEPTED

        wait_until(accepted_on_b, 5, interval=0.2, what="the re-push accepted by B")
        for pub in pubs:
            pub.close()
        encoders.append(push_rtmp(push_url_on(b, stream), size="320x240", rate=15))
        # the same playlist URL on C goes on counting, with new parts within 10 s of the kill
        after = wait_until(lambda: (p := audio_playlist(c, stream)) and "#EXT-X-DISCONTINUITY\n" in p and p,
                           10 - (time.monotonic() - killed), interval=0.1, what="C's playlist going on")
        assert newest_msn(after) > newest_msn(before)
        print(f"\nC's playlist went on from A's {time.monotonic() - killed:.1f}s after the SIGKILL of A")
        # the page on C was never reloaded: hls.js finds the stream on B through C and goes on
        assert_plays(hls_page, 40, console)
        print(f"\nhls.js on C playing again {time.monotonic() - killed:.1f}s after the SIGKILL of A")
    finally:
        for page in pages:
            page.close()
        for pub in pubs:
            pub.close()
        for enc in encoders:
            stop(enc)
