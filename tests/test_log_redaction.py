"""No stream token, passphrase or restream key in the logs.

Unit tests of the redaction filter on synthetic records (message args, `extra` fields, exception text,
registered secrets), then a real server pushed to with every stream key form RTMP and SRT accept, and
refused with wrong, bare and unknown keys: its whole log output must not hold any of the tokens.
"""

from __future__ import annotations

import io
import json
import logging
from collections.abc import Iterator
from typing import Any

import pytest

from onair import logs

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

