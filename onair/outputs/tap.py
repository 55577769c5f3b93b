"""A second consumer of a live source: an ffmpeg fed with the publisher's bytes on its stdin.

The origin recorder and the restream pushers both run ``ffmpeg -f flv|mpegts -i pipe:0 ...`` on the
source as it arrives. Such a consumer usually joins mid-stream, so its first bytes are the
transcoder's `resume_point()` (FLV: header, sequence headers, current GOP; MPEG-TS: any packet
boundary) rather than the chunk at hand.

Two ways to feed:

* `feed` waits for the pipe to drain (a recorder must not lose data; a stuck ffmpeg stalls its
  publisher, as before);
* `feed_nowait` never waits: the bytes go into the pipe transport's buffer and `False` comes back once
  that buffer exceeds `max_backlog`, telling the caller to drop the consumer and start it afresh.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from onair.transcode.transcoder import Transcoder

log = logging.getLogger("onair.outputs.tap")

__all__ = ["SourceTap"]


class SourceTap:
    """One ffmpeg reading the source of `transcoder` (its input format and resume point) from stdin."""

    def __init__(self, transcoder: Transcoder, output_args: Sequence[str], *, ffmpeg: str = "ffmpeg",
                 input_args: Sequence[str] = (), cwd: Path | None = None, stdout: int | None = None,
                 stderr: int | None = None, max_backlog: int = 8 * 1024 * 1024,
                 env: dict[str, str] | None = None) -> None:
        self.transcoder = transcoder
        self.output_args = list(output_args)  # everything after `-i pipe:0` (more inputs may follow)
        self.input_args = list(input_args)  # options for the pipe input, before `-f`
        self.ffmpeg = ffmpeg
        self.cwd = cwd
        self.stdout = stdout  # subprocess.PIPE to read e.g. `-progress pipe:1`; DEVNULL by default
        self.stderr = stderr
        self.max_backlog = max_backlog
        self.env = env  # the whole environment of ffmpeg (None: inherited)
        self.proc: asyncio.subprocess.Process | None = None
        self.primed = False
        self.dead = False  # ffmpeg went away or fell too far behind: nothing more is written
        self.overflowed = False  # dead because more than max_backlog bytes were waiting

    @property
    def input_format(self) -> str:
        return self.transcoder.input_format

    @property
    def pid(self) -> int | None:
        return self.proc.pid if self.proc is not None else None

    async def start(self) -> asyncio.subprocess.Process:
        self.proc = await asyncio.create_subprocess_exec(
            self.ffmpeg, "-hide_banner", "-loglevel", "error", "-y", *self.input_args,
            "-f", self.input_format, "-i", "pipe:0", *self.output_args,
            cwd=str(self.cwd) if self.cwd else None, stdin=asyncio.subprocess.PIPE,
            stdout=self.stdout if self.stdout is not None else asyncio.subprocess.DEVNULL,
            stderr=self.stderr if self.stderr is not None else asyncio.subprocess.DEVNULL, env=self.env,
        )  # fmt: skip
        return self.proc

    def _prepare(self, data: bytes) -> bytes | None:
        """What to write for this source chunk, None when nothing can be written (yet)."""
        proc = self.proc
        if self.dead or proc is None or proc.stdin is None or proc.returncode is not None:
            return None
        if proc.stdin.is_closing():
            self.dead = True
            return None
        if not self.primed:
            # joining mid-stream: begin with a decodable start; it already contains this chunk, which
            # the transcoder got first
            head = self.transcoder.resume_point()
            if head is None:
                return None  # no keyframe yet
            self.primed = True
            return head or data
        return data

    async def feed(self, data: bytes) -> None:
        """Write and wait until ffmpeg took it (recordings: no loss)."""
        out = self._prepare(data)
        if out is None:
            return
        assert self.proc is not None and self.proc.stdin is not None
        try:
            self.proc.stdin.write(out)
            await self.proc.stdin.drain()
        except (BrokenPipeError, ConnectionResetError):
            self.dead = True

    def feed_nowait(self, data: bytes) -> bool:
        """Write without waiting; False once ffmpeg is gone or more than `max_backlog` bytes wait."""
        out = self._prepare(data)
        if self.dead:
            return False
        if out is None:
            return True
        assert self.proc is not None and self.proc.stdin is not None
        try:
            self.proc.stdin.write(out)
        except (BrokenPipeError, ConnectionResetError, RuntimeError):
            self.dead = True
            return False
        if self.proc.stdin.transport.get_write_buffer_size() > self.max_backlog:
            self.dead = self.overflowed = True  # the caller restarts us; queued bytes go with the old process
            return False
        return True

    async def close(self, timeout: float = 15.0) -> None:  # noqa: ASYNC109
        """EOF on stdin so ffmpeg finishes its output; kill it when it does not exit in time."""
        proc = self.proc
        if proc is None:
            return
        self.dead = True
        if proc.stdin is not None and not proc.stdin.is_closing():
            proc.stdin.close()
        try:
            await asyncio.wait_for(proc.wait(), timeout)
        except TimeoutError:
            with contextlib.suppress(ProcessLookupError):
                proc.kill()
            await proc.wait()

    async def kill(self) -> None:
        proc = self.proc
        if proc is None:
            return
        self.dead = True
        if proc.stdin is not None and not proc.stdin.is_closing():
            proc.stdin.close()
        if proc.returncode is None:
            with contextlib.suppress(ProcessLookupError):
                proc.kill()
        await proc.wait()
