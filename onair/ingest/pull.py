"""PULL streams: the node fetches the source itself (the stream's `pull` and `uri`).

For each stream with `pull=true` and `active=true` a supervised task runs
`ffmpeg -i <uri> -c copy -f flv|mpegts pipe:1` and feeds the bytes to a session opened at the hub's
ingest gateway, like any push (the same transcoding/packaging path). `uri` may list several space-separated
sources: on a connect failure, or when data stops for `pull_stall_timeout` seconds, the next one is
tried, round-robin. One Publisher spans the switches (`live` is the only liveness flag); a
switch restarts the transcoder on the new input and the playlists continue with a discontinuity.
After `pull_inactivity_timeout` seconds without any data the stream is set to `active=false`.
In a cluster every node supervises every PULL stream, but only the one holding its pull claim connects to
the sources; the others wait and take over within a lease's lifetime when that node stops or dies.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from typing import Protocol
from urllib.parse import urlsplit

from sqlalchemy import select, update
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from onair.config import Settings
from onair.hub.ports import IngestRefused
from onair.hub.publisher import Publisher
from onair.hub.registry import StreamHub
from onair.outbound import PULL_SCHEMES, Outbound, Outgoing, TargetRefused
from onair.store.models import Stream
from onair.timeutil import utcnow

__all__ = ["PullManager", "pull_protocol", "split_uris"]

log = logging.getLogger("onair.ingest.pull")

_READ = 64 * 1024
_CONNECT_TIMEOUT = 10.0  # seconds a source may take to deliver its first bytes
_RETRY_PAUSE = 1.0  # between two attempts when a source gave nothing (a dead list must not spin)
_CLAIM_RETRY = 1.0  # between two tries of a pull claim another node holds


class _PullStream(Protocol):
    id: int
    pull: bool
    active: bool
    uri: str | None


def split_uris(uri: str | None) -> list[str]:
    return [u for u in (uri or "").split() if u]


def pull_protocol(uri: str) -> str | None:
    """The ingest protocol a source URL stands for (`stream_source_type` follows it), None if unsupported."""
    scheme = urlsplit(uri).scheme.lower()
    return {"rtmp": "rtmp", "rtmps": "rtmp", "srt": "srt", "http": "https", "https": "https"}.get(scheme)


def _label(uri: str) -> str:
    """A source for logs: scheme, host and port only (paths and queries may hold keys)."""
    try:
        parts = urlsplit(uri)
        return f"{parts.scheme}://{parts.hostname or '?'}" + (f":{parts.port}" if parts.port else "")
    except ValueError:  # a malformed URL (refused by the policy anyway)
        return "?"


class PullManager:
    def __init__(self, hub: StreamHub, sessionmaker: async_sessionmaker[AsyncSession], settings: Settings,
                 outbound: Outbound) -> None:
        self.hub = hub
        self.sessionmaker = sessionmaker
        self.settings = settings
        self.outbound = outbound  # every source is resolved, checked and pinned before ffmpeg connects
        self._tasks: dict[int, tuple[str, asyncio.Task[None]]] = {}

    async def start(self) -> None:
        async with self.sessionmaker() as db:
            rows = (await db.execute(select(Stream).where(Stream.pull.is_(True), Stream.active.is_(True)))).scalars()
            for stream in rows:
                await self.changed(stream)

    async def stop(self) -> None:
        for sid in list(self._tasks):
            await self.deleted(sid)

    def running(self, stream_id: int) -> bool:
        return stream_id in self._tasks

    async def changed(self, stream: _PullStream) -> None:
        uri = " ".join(split_uris(stream.uri))
        want = bool(stream.pull and stream.active and uri)
        current = self._tasks.get(stream.id)
        if current is not None and want and current[0] == uri and not current[1].done():
            return
        await self.deleted(stream.id)
        if want:
            task = asyncio.create_task(self._run(stream.id, split_uris(uri)), name=f"pull-{stream.id}")
            self._tasks[stream.id] = (uri, task)

    async def deleted(self, stream_id: int) -> None:
        entry = self._tasks.pop(stream_id, None)
        if entry is not None:
            entry[1].cancel()
            await asyncio.gather(entry[1], return_exceptions=True)

    # ------------------------------------------------------------------ one stream

    def claim_lost(self, stream_id: int) -> None:
        """Another node may pull the stream now: stop, and wait to claim it again (the cluster's callback)."""
        entry = self._tasks.get(stream_id)
        if entry is not None:
            log.warning("pull claim lost: stopping", extra={"stream_id": stream_id})
            entry[1].cancel()
            self._tasks[stream_id] = (entry[0], asyncio.create_task(self._run(stream_id, split_uris(entry[0])),
                                                                    name=f"pull-{stream_id}"))

    async def _claim(self, sid: int) -> None:
        """Returns once this node holds the stream's pull claim."""
        unsure = False
        while True:
            try:
                if await self.hub.leases.claim_pull(sid):
                    return
                unsure = False
            except Exception as exc:  # noqa: BLE001 - the registry is unreachable: nobody may pull meanwhile
                if not unsure:
                    log.warning("pull claim unknown, retrying", extra={"stream_id": sid, "error": type(exc).__name__})
                unsure = True
            await asyncio.sleep(_CLAIM_RETRY)

    async def _run(self, sid: int, uris: list[str]) -> None:
        settings = self.settings
        claimed = False
        state = _PullState(last_data=time.monotonic())
        try:
            await self._claim(sid)
            claimed = True
            state.last_data = time.monotonic()
            index = 0
            while True:
                uri = uris[index % len(uris)]
                index += 1
                got = await self._pull_once(sid, uri, state)
                if time.monotonic() - state.last_data >= settings.pull_inactivity_timeout:
                    log.info("pull source silent too long: switching the stream off", extra={"stream_id": sid})
                    await self._deactivate(sid)
                    return
                if not got:
                    await asyncio.sleep(_RETRY_PAUSE)
        except asyncio.CancelledError:
            raise
        except Exception:
            log.exception("pull supervisor failed", extra={"stream_id": sid})
        finally:
            if state.publisher is not None:
                with contextlib.suppress(Exception):
                    await state.publisher.close("pull stopped")
            if claimed:
                with contextlib.suppress(Exception):
                    await self.hub.leases.release_pull(sid)
            if self._tasks.get(sid, ("", None))[1] is asyncio.current_task():
                self._tasks.pop(sid, None)

    async def _pull_once(self, sid: int, uri: str, state: _PullState) -> bool:
        """Pull from one source until it fails or stalls; True when it delivered data."""
        protocol = pull_protocol(uri)
        if protocol is None:
            log.warning("unsupported pull source", extra={"stream_id": sid, "source": _label(uri)})
            return False
        source = await self._prepare(sid, uri, state)
        if source is None:
            return False
        settings = self.settings
        fmt = "flv" if protocol == "rtmp" else "mpegts"
        cmd = [settings.ffmpeg, "-hide_banner", "-loglevel", "error", "-nostdin", *source.input_args(),
               "-i", source.url, "-map", "0:v:0?", "-map", "0:a:0?", "-c", "copy", "-f", fmt, "pipe:1"]
        proc = await asyncio.create_subprocess_exec(*cmd, stdin=asyncio.subprocess.DEVNULL,
                                                    stdout=asyncio.subprocess.PIPE,
                                                    stderr=asyncio.subprocess.DEVNULL, env=source.env)
        assert proc.stdout is not None
        delivered = False
        try:
            timeout = _CONNECT_TIMEOUT
            while True:
                try:
                    chunk = await asyncio.wait_for(proc.stdout.read(_READ), timeout)
                except TimeoutError:
                    log.info("pull source stalled", extra={"stream_id": sid, "source": _label(uri)})
                    break
                if not chunk:
                    break
                timeout = settings.pull_stall_timeout
                state.last_data = time.monotonic()
                if not delivered:
                    delivered = True
                    log.info("pulling", extra={"stream_id": sid, "source": _label(uri)})
                    if not await self._attach(sid, uri, protocol, fmt, state):
                        break
                pub = state.publisher
                if pub is None or pub.closed.is_set():
                    break
                await pub.feed(chunk)
        finally:
            if proc.returncode is None:
                with contextlib.suppress(ProcessLookupError):
                    proc.kill()
            await proc.wait()
        if not delivered:
            log.info("pull source gave no data", extra={"stream_id": sid, "source": _label(uri)})
        if state.publisher is not None and (state.publisher.closed.is_set()
                                            or time.monotonic() - state.last_data > settings.ingest_idle_timeout):
            # nothing for a while: the stream is not live until a source answers again
            await state.publisher.close("pull sources silent")
            state.publisher = None
        return delivered

    async def _prepare(self, sid: int, uri: str, state: _PullState) -> Outgoing | None:
        """The source resolved, checked and pinned by the outbound policy; None (logged once) if refused."""
        try:
            source = await self.outbound.prepare(uri, PULL_SCHEMES)
        except TargetRefused as exc:
            if state.refused.get(uri) != str(exc):  # once per source and reason, not every retry
                state.refused[uri] = str(exc)
                log.warning("pull source refused", extra={"stream_id": sid, "source": _label(uri),
                                                          "reason": str(exc)})
            return None
        state.refused.pop(uri, None)
        return source

    async def _attach(self, sid: int, uri: str, protocol: str, fmt: str, state: _PullState) -> bool:
        """Make `state.publisher` ready for a fresh byte stream from `uri`."""
        hub = self.hub
        pub = state.publisher
        if pub is not None and not pub.closed.is_set():
            # round-robin switch: same session, new input byte stream for a new transcoder
            await hub.restart_input(pub, protocol, fmt)
            return True
        entry = hub.directory.get(sid)
        if entry is None:
            return False
        try:
            pub = await hub.open_session(protocol=protocol, app="in", stream_name=f"{sid}#{entry.token}",
                                         remote=_label(uri), pull=True)
        except IngestRefused as exc:
            log.info("pull refused", extra={"stream_id": sid, "reason": str(exc)})
            return False
        if pub.input_format != fmt:  # open_session infers the format from the protocol
            await hub.restart_input(pub, protocol, fmt)
        state.publisher = pub
        return True

    async def _deactivate(self, sid: int) -> None:
        async with self.sessionmaker() as db:
            stream = await db.get(Stream, sid)
            if stream is None:
                return
            await db.execute(update(Stream).where(Stream.id == sid).values(active=False, updated_at=utcnow()))
            await db.commit()
            stream = await db.get(Stream, sid)
            if stream is not None:
                await db.refresh(stream)
                self.hub.directory.update(stream)


class _PullState:
    def __init__(self, last_data: float) -> None:
        self.last_data = last_data
        self.publisher: Publisher | None = None
        self.refused: dict[str, str] = {}  # source → why the outbound policy refused it (logged once)
