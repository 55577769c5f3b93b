"""One recording and its journal on disk.

Each recording lives in ``{data_dir}/recordings/{id}/`` with a ``journal.json``: the Video id, the
pieces (one per source session, with the pid of a writer process still writing it) and the state
(``recording``, ``finalising``, ``done``). It is rewritten atomically at each change, so a crashed
run leaves enough for the next start to finish the recording.
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

from onair.outputs.recording.writers import OriginWriter, TranscodedWriter, Writer

if TYPE_CHECKING:
    from onair.hub.live_stream import LiveStream

JOURNAL = "journal.json"

log = logging.getLogger("onair.outputs.recording")


def write_journal(directory: Path, journal: dict[str, Any]) -> None:
    path = directory / JOURNAL
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps(journal, indent=1))
    tmp.replace(path)  # atomic: a crash leaves the old or the new journal, never half of one


def mark_done(directory: Path, journal: dict[str, Any]) -> None:
    """The recording is in the library: keep only the journal (it marks the directory as handled)."""
    journal["state"] = "done"
    write_journal(directory, journal)
    for p in directory.iterdir():
        if p.name != JOURNAL:
            p.unlink(missing_ok=True)


class Recording:
    """A recording in progress: its journal and the writer of the current piece (None between pieces)."""

    def __init__(self, directory: Path, journal: dict[str, Any]) -> None:
        self.dir = directory
        self.journal = journal
        self.writer: Writer | None = None
        self.piece_started: float | None = None
        self.done_seconds = 0.0
        self.grace: asyncio.Task[None] | None = None

    @property
    def stream_id(self) -> int:
        return int(self.journal["stream_id"])

    @property
    def video_id(self) -> int:
        return int(self.journal["video_id"])

    @property
    def duration(self) -> float:
        running = time.monotonic() - self.piece_started if self.piece_started is not None else 0.0
        return self.done_seconds + running

    def save(self) -> None:
        try:
            write_journal(self.dir, self.journal)
        except OSError as exc:  # a full disk must not break the live path; the next save catches up
            log.warning("recording journal not written", extra={"video_id": self.video_id, "error": str(exc)})

    async def open_piece(self, output: LiveStream, ffmpeg: str) -> None:
        n = len(self.journal["pieces"])
        writer: Writer
        if self.journal["record_type"] == "transcoded" and output.transcoder.plan:
            writer = TranscodedWriter(self.dir / f"p{n}", output)
        else:
            writer = OriginWriter(self.dir / f"p{n}.mp4", output.transcoder, ffmpeg)
        await writer.start()
        self.writer = writer
        self.piece_started = time.monotonic()
        self.journal["pieces"].append({"kind": "transcoded" if isinstance(writer, TranscodedWriter) else "origin",
                                       "base": f"p{n}", "pid": writer.pid})
        self.save()

    async def close_piece(self) -> None:
        writer, self.writer = self.writer, None
        if writer is None:
            return
        await writer.close()
        if self.piece_started is not None:
            self.done_seconds += time.monotonic() - self.piece_started
        self.piece_started = None
        self.journal["pieces"][-1]["pid"] = None
        self.save()
