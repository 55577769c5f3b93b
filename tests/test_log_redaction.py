"""No stream token, passphrase or restream key in the logs.

Unit tests of the redaction filter on synthetic records (message args, `extra` fields, exception text,
registered secrets), then a real server pushed to with every stream key form RTMP and SRT accept, and
refused with wrong, bare and unknown keys: its whole log output must not hold any of the tokens.
"""

from __future__ import annotations

import io
import json
import logging
import socket
import time
from collections.abc import Callable, Iterator
from typing import Any

import pytest

from onair import logs
from tests.conftest import OnairServer, free_port, have, wait_until
from tests.ingest_media import create_stream
from tests.media import push_rtmp, stop
from tests.rtmp_client import Publisher
from tests.srt_caller import Caller

TOKEN = "33ce5a1f0b9d4e2a8c7f6b5a4d3c2b1a"  # the shape of a real token (32 hex)
OTHER = "Zq8xWv7uTs6rQp5oNm4lKj3iHg2fEd1c"


class Captured:
    def __init__(self, stream: io.StringIO) -> None:
        self.log = logging.getLogger("onair.test")
        self.stream = stream

    def text(self) -> str:
        return self.stream.getvalue()

    def records(self) -> list[dict[str, Any]]:
        return [json.loads(line) for line in self.text().splitlines()]


@pytest.fixture
def captured() -> Iterator[Captured]:
    """logs.setup() as the server runs it, its handler writing to a buffer; root logging restored after."""
    root = logging.getLogger()
    saved = root.handlers[:], root.level
    logs.setup("debug")
    (handler,) = root.handlers
    assert isinstance(handler, logging.StreamHandler)
    stream = io.StringIO()
    handler.setStream(stream)
    try:
        yield Captured(stream)
    finally:
        root.handlers[:], level = saved
        root.setLevel(level)


CASES = [
    (f"publish started: app='in' stream='1_{TOKEN}'", "stream='1_<redacted>'"),
    (f"stream 1#{TOKEN} refused", "1#<redacted>"),
    (f"backup 12b#{TOKEN}", "12b#<redacted>"),
    (f"name 7?{TOKEN}", "7?<redacted>"),
    (f"pct 7%23{TOKEN}", "7%23<redacted>"),
    (f"srt #!::r=1,s={TOKEN},m=request", "#!::r=1,s=<redacted>,m=request"),
    (f"srt 1#{TOKEN}&latency=200", "1#<redacted>&latency=200"),
    (f"colon 1:{TOKEN}", "1:<redacted>"),
    (f"path /in/3?{TOKEN}", "/in/3?<redacted>"),
    (f"whip /whip/3_{TOKEN}/whip", "/whip/3_<redacted>/whip"),
    (f"ffmpeg: rtmp://a.rtmp.youtube.com/live2/{OTHER}: I/O error", "rtmp://a.rtmp.youtube.com/live2/<redacted>"),
    (f"rtmps://live.example.com:443/app?{OTHER}", "rtmps://live.example.com:443/app?<redacted>"),
    (f"srt://h:9000?streamid={OTHER}&passphrase=hunter2hunter2&latency=200",
     "srt://h:9000?streamid=<redacted>&passphrase=<redacted>&latency=200"),
    (f"https://x.example/hook?token={OTHER}&key={OTHER}&pass=p4ss", "?token=<redacted>&key=<redacted>&pass=<redacted>"),
    (f"rtmp://user:{OTHER}@host/app", "rtmp://user:<redacted>@host/app"),
    (f"Authorization: APIKey {OTHER}", "APIKey <redacted>"),
]


@pytest.mark.parametrize(("text", "expected"), CASES)
def test_redact_patterns(text: str, expected: str) -> None:
    out = logs.redact(text)
    assert expected in out
    assert TOKEN not in out and OTHER not in out


@pytest.mark.parametrize("text", ["GET /cmaf/1_42/master.m3u8", "rtmp://127.0.0.1:1935/in",
                                  "/videos/1_abcdefghijklmnop/player", "/streaming/streams/5?page=2",
                                  "peer 127.0.0.1:50412", "at 12:30:45", "stream=12b"])
def test_redact_leaves_ordinary_text(text: str) -> None:
    assert logs.redact(text) == text


def test_redact_stays_linear_on_hostile_text() -> None:
    start = time.monotonic()
    for text in ("a." * 100_000, "rtmp" * 100_000, "1" * 200_000, "x://" * 50_000 + ":", "/in/" * 50_000):
        logs.redact(text)
    assert time.monotonic() - start < 2.0


def test_filter_survives_odd_records(captured: Captured) -> None:
    class Unprintable:
        def __str__(self) -> str:
            raise RuntimeError("no")

    captured.log.info("value %s", Unprintable(), extra={"odd": Unprintable()})
    captured.log.info("after")
    assert [ln["msg"] for ln in captured.records()][-1] == "after"
    assert captured.records()[0]["odd"] == "<unprintable>"


def test_filter_scrubs_args_extra_and_exceptions(captured: Captured) -> None:
    log = captured.log
    log.info("publish from %s with %r", "peer", f"5?{TOKEN}")
    log.info("restream failed", extra={"target": f"rtmp://x.example/live2/{OTHER}",
                                       "detail": {"urls": [f"srt://h:1?streamid=5%23{TOKEN}"], "n": 3},
                                       "obj": RuntimeError(f"bad key 5#{TOKEN}")})
    try:
        raise ValueError(f"could not open rtmp://h/live/{OTHER}")
    except ValueError:
        log.exception("pusher crashed: %s", f"5_{TOKEN}")
    log.info("bad format %s %s", "only one")  # must still be logged (and scrubbed)
    out = captured.text()
    assert TOKEN not in out and OTHER not in out, out
    lines = [json.loads(line) for line in out.splitlines()]
    assert lines[0]["msg"] == "publish from peer with '5?<redacted>'"
    assert lines[1]["target"] == "rtmp://x.example/live2/<redacted>"
    assert lines[1]["detail"] == {"urls": ["srt://h:1?streamid=<redacted>"], "n": 3}
    assert lines[1]["obj"] == "bad key 5#<redacted>"
    assert lines[2]["msg"] == "pusher crashed: 5_<redacted>"
    assert "ValueError: could not open rtmp://h/live/<redacted>" in lines[2]["exc"]
    assert "bad format" in lines[3]["msg"]


def test_registered_secrets(captured: Captured) -> None:
    log = captured.log
    secret = "plainwordsecret"  # no pattern matches this: only the registry can catch it
    log.info("ffmpeg said %s", secret)
    logs.register_secret(secret)
    logs.register_secret(secret)  # two holders
    try:
        log.info("ffmpeg said %s", secret, extra={"tail": f"...{secret}..."})
        logs.forget_secret(secret)
        log.info("still held: %s", secret)
    finally:
        logs.forget_secret(secret)
    log.info("released: %s", secret)
    lines = captured.records()
    assert [ln["msg"] for ln in lines] == [f"ffmpeg said {secret}", "ffmpeg said <redacted>",
                                           "still held: <redacted>", f"released: {secret}"]
    assert lines[1]["tail"] == "...<redacted>..."


def test_setup_installs_filter_on_root_handler(captured: Captured) -> None:
    # pytest adds its capture handlers during the test: ours is the one with the formatter
    (handler,) = [h for h in logging.getLogger().handlers if isinstance(h.formatter, logs.JsonFormatter)]
    assert any(isinstance(f, logs.RedactingFilter) for f in handler.filters)
    # records of every logger reach it, uvicorn's included
    logging.getLogger("uvicorn.error").warning("Invalid request to /whip/4_%s/whip", TOKEN)
    assert captured.records()[-1]["msg"] == "Invalid request to /whip/4_<redacted>/whip"


# --------------------------------------------------------------------------- a real server's log


WRONG = "WrongToken0123456789abcdef012345"


def _rtmp(srv: OnairServer, app: str, name: str) -> str:
    with Publisher("127.0.0.1", srv.ports["rtmp"]) as pub:
        code = pub.publish(app, name)
        if code == "NetStream.Publish.Start":
            pub.send_media()
        return code


def _srt(srv: OnairServer, streamid: str) -> bool:
    with Caller("127.0.0.1", srv.ports["srt"], streamid) as caller:
        return caller.connect()


def _lines(srv: OnairServer, needle: str) -> int:
    return srv.log_path.read_text(errors="replace").count(needle)


def test_no_token_in_server_log(server: OnairServer) -> None:
    rtmp_forms = ["{id}?{t}", "{id}_{t}", "{id}#{t}", "{id}b?{t}", "{id}b#{t}"]
    srt_forms = ["{id}#{t}", "{id}b#{t}", "{id}%23{t}", "#!::r={id},s={t}", "#!::r={id}#{t},m=publish",
                 "#!::m=publish,r={id}b,s={t}"]
    streams = [create_stream(server, name=f"form {i}") for i in range(len(rtmp_forms) + len(srt_forms))]
    tokens = [s["token"] for s in streams]
    one = streams[0]

    # accepted, one stream per form; each session ends when its publisher goes
    for form, s in zip(rtmp_forms, streams, strict=False):
        name = form.format(id=s["id"], t=s["token"])
        assert _rtmp(server, "in", name) == "NetStream.Publish.Start", name
    for form, s in zip(srt_forms, streams[len(rtmp_forms):], strict=True):
        streamid = form.format(id=s["id"], t=s["token"])
        assert _srt(server, streamid), streamid
        wait_until(lambda sid=s["id"]: _lines(server, f"srt publish started: stream={sid}") >= 1, 10,
                   what=f"srt publish of {streamid}")

    # refused: wrong token, bare token, unknown id, key in the app, wrong app, token as the whole name
    refusals = [("in", f"{one['id']}?{WRONG}"), ("in", one["token"]), ("in", f"999999?{one['token']}"),
                (f"in/{one['id']}?{one['token']}", ""), ("live", f"{one['id']}?{one['token']}"),
                ("in", f"{one['id']}?{one['token']}&x=1"), ("in", f"{one['id']}:{one['token']}")]
    for app, name in refusals:
        assert _rtmp(server, app, name) != "NetStream.Publish.Start", (app, name)
    for streamid in (f"#!::r={one['id']},s={one['token']},m=request", f"{one['id']}#{one['token']}&latency=200",
                     f"{one['id']}:{one['token']}", f"{one['id']}#{WRONG}", f"999999#{one['token']}",
                     one["token"], f"#!::r={one['id']},s={WRONG}"):
        assert not _srt(server, streamid), streamid

    wait_until(lambda: _lines(server, "publish started") >= len(rtmp_forms) + len(srt_forms), 15,
               what="every publish logged")
    wait_until(lambda: _lines(server, "publish refused") >= len(refusals), 15, what="every refusal logged")
    wait_until(lambda: _lines(server, "srt handshake refused") >= 7, 15, what="every srt refusal logged")
    wait_until(lambda: _lines(server, "session ended") >= len(rtmp_forms), 15, what="rtmp sessions ended")
    server.stop()
    log = server.log_path.read_text(errors="replace")
    for secret in [*tokens, WRONG]:
        assert secret not in log, f"{secret} in the log:\n" + "\n".join(ln for ln in log.splitlines() if secret in ln)
    # the log still says which stream it was about
    for s in streams[: len(rtmp_forms)]:
        assert f"stream={s['id']}" in log


@pytest.mark.media
def test_no_restream_key_in_server_log(make_server: Callable[..., OnairServer]) -> None:
    """ffmpeg's own error text names the target URL: the filter has to catch keys and passphrases in it."""
    if not have("ffmpeg"):
        pytest.skip("ffmpeg is not installed")
    server = make_server(allow_private_targets=True).start()  # the dead targets are on loopback
    source = create_stream(server, name="source")
    dead = free_port()
    targets = {"rtmp": f"rtmp://127.0.0.1:{dead}/live2/{OTHER}",
               "srt": f"srt://127.0.0.1:{free_port(socket.SOCK_DGRAM)}?streamid={TOKEN}&passphrase=Passphrase4Srt"
                      f"&connect_timeout=500"}
    with server.client() as c:
        for uri in targets.values():
            c.post("/streaming/restreams", json={"restream": {"stream_id": source["id"], "uri": uri}}
                   ).raise_for_status()
    publisher = push_rtmp(source["push_url"], size="320x240", rate=15)
    try:
        wait_until(lambda: _lines(server, "restream restarting") >= 4, 40, what="failing restreams retried")
    finally:
        stop(publisher)
    server.stop()
    log = server.log_path.read_text(errors="replace")
    assert "restream restarting" in log
    for secret in (OTHER, TOKEN, "Passphrase4Srt", source["token"]):
        assert secret not in log, f"{secret} in the log:\n" + "\n".join(ln for ln in log.splitlines() if secret in ln)
