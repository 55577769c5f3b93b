"""SRT ingest on one UDP port for every stream, routed by streamid, with passphrases."""

from __future__ import annotations

import subprocess
import time

import httpx
import pytest

from onair.ingest.srt.streamid import parse_streamid, stream_name_of
from tests.conftest import OnairServer, wait_until
from tests.ingest_media import create_stream, get_stream, push_srt
from tests.media import codecs, ffprobe, stop


def test_streamid_forms() -> None:
    assert stream_name_of("12#abc") == "12#abc"
    assert stream_name_of("12%23abc") == "12#abc"
    key = parse_streamid("12b#abc")
    assert key is not None and key.stream_id == 12 and key.backup and key.token == "abc"
    key = parse_streamid("#!::r=12,s=tok,m=publish")
    assert key is not None and (key.stream_id, key.backup, key.token) == (12, False, "tok")
    key = parse_streamid("#!::m=publish,r=7b#tok")
    assert key is not None and (key.stream_id, key.backup) == (7, True)
    assert parse_streamid("#!::r=12,s=tok,m=request") is None  # playback is not served over SRT
    assert parse_streamid("#!::r=12") is None
    assert parse_streamid("12") is None
    assert parse_streamid("12?abc") is None
    assert parse_streamid("x" * 600) is None
    assert parse_streamid("#!::r=1,r=2,s=t") is None


def _refused(url: str, passphrase: str | None = None) -> bool:
    proc = push_srt(url, passphrase=passphrase, seconds=20, size="320x240")
    try:
        proc.wait(15)
    except subprocess.TimeoutExpired:
        stop(proc)
        return False
    return proc.returncode != 0


@pytest.mark.media
def test_two_srt_publishers_on_one_port(server: OnairServer) -> None:
    secret = "s3cret-Pass_phrase!"
    plain = create_stream(server)
    locked = create_stream(server, srt_passphrase=secret)
    port = server.ports["srt"]
    assert port > 0 and f":{port}?" in plain["push_url_srt"], "node.ports.srt is the real UDP port"
    assert plain["push_url_srt"].endswith(f"streamid={plain['id']}#{plain['token']}")

    # refused during the handshake: unknown id, wrong token, missing/wrong passphrase, backup of unknown
    base = f"srt://127.0.0.1:{port}?streamid="
    assert _refused(f"{base}999999#{plain['token']}")
    assert _refused(f"{base}{plain['id']}#{'0' * 32}")
    assert _refused(locked["push_url_srt"])
    assert _refused(locked["push_url_srt"], passphrase="wrong-passphrase")

    a = push_srt(plain["push_url_srt"])
    b = push_srt(locked["push_url_srt"], passphrase=secret)
    http = httpx.Client(timeout=30)
    try:
        t0 = time.monotonic()
        for s in (plain, locked):
            got = wait_until(lambda s=s: (x := get_stream(server, s["id"]))["live"] and x, 15, what="srt live")
            assert got["stream_source_type"] == "srt"
        live_after = time.monotonic() - t0
        for s in (plain, locked):
            master = s["hls_cmaf_url"]
            wait_until(lambda m=master: http.get(m).status_code == 200, 20, what="master playlist")
            media = master.rsplit("/", 1)[0] + "/audio/index.m3u8"
            text = wait_until(lambda m=media: (t := http.get(m).text).count("#EXTINF") >= 1 and t, 20,
                              what="audio segment")
            assert a.poll() is None and b.poll() is None, "both publishers still sending"
            seg = next(ln for ln in text.splitlines() if ln.endswith(".m4s"))
            rbase = media.rsplit("/", 1)[0]
            data = http.get(f"{rbase}/init.mp4").content + http.get(f"{rbase}/{seg}").content
            assert codecs(ffprobe(data)) == {"aac"}
        assert live_after < 15
    finally:
        stop(a)
        stop(b)
    for s in (plain, locked):
        wait_until(lambda s=s: not get_stream(server, s["id"])["live"], 20, what="live=false after SRT stop")
