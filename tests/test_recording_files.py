"""Pure parts of finishing a recording: master playlists, journal files, piece inputs (no ffmpeg)."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path

from onair.formats.hls import vod_master_playlist
from onair.formats.probe import MediaInfo
from onair.outputs.recording.finishing import (
    piece_inputs,
    recording_end,
    write_master_playlists,
)
from onair.outputs.recording.journal import JOURNAL, mark_done, write_journal


def test_vod_master_playlist() -> None:
    assert vod_master_playlist(800000, "1280x720", "avc1.64001f,mp4a.40.2", "hls/index.m3u8") == (
        "#EXTM3U\n#EXT-X-VERSION:7\n#EXT-X-INDEPENDENT-SEGMENTS\n"
        '#EXT-X-STREAM-INF:BANDWIDTH=800000,RESOLUTION=1280x720,CODECS="avc1.64001f,mp4a.40.2"\n'
        "hls/index.m3u8\n")
    assert vod_master_playlist(1, None, "mp4a.40.2", "cmaf/index.m3u8").splitlines()[3] == (
        '#EXT-X-STREAM-INF:BANDWIDTH=1,CODECS="mp4a.40.2"')


def test_write_master_playlists(tmp_path: Path) -> None:
    write_master_playlists(tmp_path, MediaInfo(10.0, 640, 360, "h264", "aac"), 1_000_000)
    assert (tmp_path / "master.m3u8").read_text().endswith(
        'BANDWIDTH=800000,RESOLUTION=640x360,CODECS="avc1.64001f,mp4a.40.2"\nhls/index.m3u8\n')
    assert (tmp_path / "master-cmaf.m3u8").read_text().endswith("\ncmaf/index.m3u8\n")
    write_master_playlists(tmp_path, MediaInfo(0.0, None, None, None, "opus"), 5)
    assert 'BANDWIDTH=1,CODECS=""\n' in (tmp_path / "master.m3u8").read_text()


def test_journal_written_atomically_and_done_keeps_only_it(tmp_path: Path) -> None:
    journal = {"video_id": 3, "state": "finalising", "pieces": [{"kind": "origin", "base": "p0", "pid": None}]}
    write_journal(tmp_path, journal)
    assert json.loads((tmp_path / JOURNAL).read_text()) == journal
    assert (tmp_path / JOURNAL).read_text() == json.dumps(journal, indent=1)
    (tmp_path / "p0.mp4").write_bytes(b"x")
    mark_done(tmp_path, journal)
    assert [p.name for p in tmp_path.iterdir()] == [JOURNAL]
    assert json.loads((tmp_path / JOURNAL).read_text())["state"] == "done"


def test_piece_inputs_and_end(tmp_path: Path) -> None:
    (tmp_path / "p0.mp4").write_bytes(b"data")
    (tmp_path / "p1.audio.mp4").write_bytes(b"a")
    (tmp_path / "p1.720p.mp4").write_bytes(b"v")
    (tmp_path / "p2.mp4").write_bytes(b"")
    assert piece_inputs(tmp_path, {"kind": "origin", "base": "p0"}) == [tmp_path / "p0.mp4"]
    assert [p.name for p in piece_inputs(tmp_path, {"kind": "transcoded", "base": "p1"})] == [
        "p1.720p.mp4", "p1.audio.mp4"]
    assert piece_inputs(tmp_path, {"kind": "origin", "base": "p2"}) == []  # empty: nothing recorded
    ended = datetime(2024, 5, 1, 12, 0, tzinfo=UTC)
    assert recording_end({"ended_at": ended.isoformat()}, []) == ended
    crashed = recording_end({}, [tmp_path / "p0.mp4"])
    assert abs(crashed.timestamp() - (tmp_path / "p0.mp4").stat().st_mtime) < 1e-3 and crashed.tzinfo == UTC
