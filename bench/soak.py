"""Soak: a node under steady mixed load for a while must not grow, fail requests or lose recordings.

`make soak` (or `python -m bench.soak`), `SOAK_MINUTES` long (default 30). The load, all at once:

* 4 live streams, 320x180@15 H.264/AAC pushed over RTMP by ffmpeg (a pre-encoded file looped with
  stream copy, so 2 cores carry the transcoders), each with `auto_record` on;
* 3 LL-HLS viewers per stream, blocking playlist reloads then the newest part (bench/http1.py);
* API churn in a loop: create, update, list and delete streams, and overlays on them;
* a publisher reconnect every minute, round robin: kill its ffmpeg, push again at once (the recording
  continues across the gap).

Server RSS, open file descriptors and asyncio tasks (``onair_asyncio_tasks`` from /metrics) are
sampled after the warm-up and at the end, each time 30 s after the last reconnect with every stream
live (median of 5 readings). At the end the publishers stop and every recorded Video must become
`ready`. Exit status 1 when any figure grew by more than 5 %, any response was a 5xx, the server
logged a traceback, or a recording was lost.
"""

from __future__ import annotations

import asyncio
import os
import re
import statistics
import sys
import time
from dataclasses import dataclass, field
from typing import Any

import httpx

from bench.harness import API_KEY, Server, poll, running_server, stop_process
from bench.http1 import Connection
from bench.playback import PART_URI, PRELOAD_HINT
from bench.procs import loadavg, push_file, rss_mb, source_file, table

STREAMS = 4
VIEWERS = 3  # per stream
SIZE, RATE = "320x180", 15
RECONNECT_S = 60.0  # one publisher reconnect this often; the first at half that
WARMUP_S = 60.0
GROWTH_LIMIT = 0.05
HEADERS = {"Authorization": f"APIKey {API_KEY}"}


@dataclass
class Tally:
    requests: int = 0
    parts: int = 0
    api_calls: int = 0
    reconnects: int = 0
    errors_5xx: list[str] = field(default_factory=list)
    failed: list[str] = field(default_factory=list)  # requests that got no answer (timeouts, resets)

    def status(self, status: int, what: str) -> None:
        self.requests += 1
        if status >= 500:
            self.errors_5xx.append(f"{status} {what}")


@dataclass
class Sample:
    rss_mb: float
    fds: int
    tasks: float


def _fds(pid: int) -> int:
    return len(os.listdir(f"/proc/{pid}/fd"))


def _tasks(srv: Server) -> float:
    text = httpx.get(srv.base_url + "/metrics", timeout=10).text
    m = re.search(r"^onair_asyncio_tasks ([0-9.e+]+)$", text, re.M)
    if m is None:
        raise RuntimeError("the server exposes no onair_asyncio_tasks gauge")
    return float(m[1])


class Soak:
    def __init__(self, srv: Server, minutes: float) -> None:
        assert srv.proc is not None
        self.srv = srv
        self.pid = srv.proc.pid
        self.duration = minutes * 60
        self.tally = Tally()
        self.src = source_file(SIZE, RATE, 10)
        self.streams: list[dict[str, Any]] = []
        self.pubs: list[Any] = []
        self.last_reconnect = 0.0
        self.t0 = 0.0

    # -- load ---------------------------------------------------------------------------------------
    async def viewer(self, stream: dict[str, Any]) -> None:
        """Blocking reloads for the hinted part, then GET the newest part; starts over when the stream restarts."""
        url = httpx.URL(stream["hls_cmaf_url"])
        conn = Connection(url.host, url.port or 80)
        master_path = url.raw_path.decode()
        try:
            while True:
                try:
                    await self._watch(conn, master_path)
                except (ConnectionError, asyncio.IncompleteReadError, OSError) as exc:
                    self.tally.failed.append(f"viewer: {exc!r}")
                    conn.close()
                    await asyncio.sleep(1.0)
        finally:
            conn.close()

    async def _watch(self, conn: Connection, master_path: str) -> None:
        while True:
            status, body = await conn.get(master_path)
            self.tally.status(status, "master playlist")
            variant = next((ln for ln in body.decode(errors="replace").splitlines()
                            if ln.endswith(".m3u8") and not ln.startswith("#")), None)
            if status != 200 or variant is None:
                await asyncio.sleep(0.5)  # between two sessions (a reconnect)
                continue
            await self._follow(conn, master_path.rsplit("/", 1)[0] + "/" + variant)
            await asyncio.sleep(0.2)

    async def _follow(self, conn: Connection, path: str) -> None:
        base = path.rsplit("/", 1)[0]
        query = ""
        while True:
            status, body = await conn.get(path + query)
            self.tally.status(status, "media playlist")
            text = body.decode(errors="replace")
            parts, hint = PART_URI.findall(text), PRELOAD_HINT.search(text)
            if status != 200 or not parts or hint is None or "#EXT-X-ENDLIST" in text:
                return
            status, _ = await conn.get(f"{base}/{parts[-1]}")
            self.tally.status(status, "part")
            if status == 200:
                self.tally.parts += 1
            query = f"?_HLS_msn={hint[1]}&_HLS_part={hint[2]}"

    async def api_churn(self) -> None:
        async with httpx.AsyncClient(base_url=self.srv.base_url, headers=HEADERS, timeout=30) as c:
            n = 0
            while True:
                n += 1
                try:
                    await self._churn_once(c, n)
                except httpx.HTTPError as exc:
                    self.tally.failed.append(f"API: {exc!r}")
                await asyncio.sleep(0.2)

    async def _churn_once(self, c: httpx.AsyncClient, n: int) -> None:
        calls = [await c.post("/streaming/streams", json={"name": f"churn {n}"})]
        sid = calls[0].json()["id"] if calls[0].status_code == 200 else None
        if sid is not None:
            calls.append(await c.patch(f"/streaming/streams/{sid}", json={"stream": {"name": f"churn {n}b"}}))
            calls.append(await c.post(f"/streaming/streams/{sid}/overlays",
                                      json=[{"url": "https://example.com/overlay.html", "width": 100}]))
            calls.append(await c.get(f"/streaming/streams/{sid}/overlays"))
            overlays = calls[-1].json() if calls[-1].status_code == 200 else []
            for o in overlays:
                calls.append(await c.patch(f"/streaming/streams/{sid}/overlays/{o['id']}", json={"x": 10}))
                calls.append(await c.delete(f"/streaming/streams/{sid}/overlays/{o['id']}"))
        calls.append(await c.get("/streaming/streams"))
        calls.append(await c.get("/streaming/videos"))
        if sid is not None:
            calls.append(await c.delete(f"/streaming/streams/{sid}"))
        for r in calls:
            self.tally.api_calls += 1
            self.tally.status(r.status_code, f"{r.request.method} {r.request.url.path}")

    async def reconnects(self) -> None:
        k = 0
        while True:
            await asyncio.sleep(max(0.0, self.t0 + RECONNECT_S / 2 + k * RECONNECT_S - time.monotonic()))
            i = k % STREAMS
            self.pubs[i].kill()  # an encoder crash or network cut, not a clean unpublish
            await asyncio.to_thread(self.pubs[i].wait)
            self.pubs[i] = push_file(self.src, self.streams[i]["push_url"])
            self.last_reconnect = time.monotonic()
            self.tally.reconnects += 1
            k += 1

    # -- measures -----------------------------------------------------------------------------------
    def all_live(self) -> bool:
        with httpx.Client(base_url=self.srv.base_url, headers=HEADERS, timeout=10) as c:
            return all(c.get(f"/streaming/streams/{s['id']}").json()["live"] for s in self.streams)

    async def sample(self) -> Sample:
        """Median of 5 readings once every stream is live again after the last reconnect."""
        await asyncio.to_thread(poll, self.all_live, 30, 0.5, "every stream live")
        got: list[Sample] = []
        for _ in range(5):
            got.append(Sample(rss_mb(self.pid), _fds(self.pid), await asyncio.to_thread(_tasks, self.srv)))
            await asyncio.sleep(1.0)
        return Sample(statistics.median(g.rss_mb for g in got), int(statistics.median(g.fds for g in got)),
                      statistics.median(g.tasks for g in got))

    async def run(self) -> tuple[Sample, Sample]:
        async with httpx.AsyncClient(base_url=self.srv.base_url, headers=HEADERS, timeout=30) as c:
            for i in range(STREAMS):
                r = await c.post("/streaming/streams", json={"name": f"soak {i}", "active": True, "auto_record": True})
                r.raise_for_status()
                self.streams.append(r.json())
                self.pubs.append(push_file(self.src, self.streams[-1]["push_url"]))
        await asyncio.to_thread(poll, self.all_live, 60, 0.5, "every soak stream live")
        self.t0 = time.monotonic()
        load = [asyncio.create_task(self.viewer(s)) for s in self.streams for _ in range(VIEWERS)]
        load += [asyncio.create_task(self.api_churn()), asyncio.create_task(self.reconnects())]
        try:
            warmup = min(WARMUP_S, self.duration / 3)
            await asyncio.sleep(warmup)
            start = await self.sample()
            print(f"    after {warmup:.0f} s warm-up: RSS {start.rss_mb:.1f} MB, {start.fds} fds, "
                  f"{start.tasks:.0f} asyncio tasks (load average {loadavg()})", flush=True)
            await asyncio.sleep(max(0.0, self.t0 + self.duration - time.monotonic()))
            end = await self.sample()
            for task in load:
                if task.done() and task.exception() is not None:
                    raise RuntimeError(f"a load task failed: {task.exception()!r}")
        finally:
            for task in load:
                task.cancel()
            await asyncio.gather(*load, return_exceptions=True)
        return start, end

    def stop_and_check_recordings(self) -> list[str]:
        """Stop the publishers; every Video recorded from a soak stream must end `ready`."""
        for p in self.pubs:
            stop_process(p)
        ids = {s["id"] for s in self.streams}

        def settled() -> list[dict[str, Any]] | None:
            with httpx.Client(base_url=self.srv.base_url, headers=HEADERS, timeout=30) as c:
                videos = [v for sid in ids for v in c.get("/streaming/videos",
                                                              params={"stream_id": sid, "per_page": 1000}).json()]
                live = any(c.get(f"/streaming/streams/{sid}").json()["live"] for sid in ids)
            pending = [v for v in videos if v["status"] in ("empty", "pending")]
            return videos if videos and not live and not pending else None

        try:
            videos = poll(settled, 180, 1.0, "recordings finished")
        except TimeoutError as exc:
            return [str(exc)]
        lost = [f"video {v['id']} of stream {v['stream_id']}: {v['status']} {v.get('error') or ''}".strip()
                for v in videos if v["status"] != "ready"]
        missing = ids - {v["stream_id"] for v in videos}
        lost += [f"stream {sid}: no recording" for sid in sorted(missing)]
        print(f"    recordings: {len(videos)} Videos of {len(ids)} streams, "
              f"{sum(v['status'] == 'ready' for v in videos)} ready", flush=True)
        return lost


def _growth(a: float, b: float) -> float:
    return (b - a) / a if a else 0.0


def main(minutes: float | None = None) -> int:
    minutes = minutes if minutes is not None else float(os.environ.get("SOAK_MINUTES", "30"))
    print(f"== soak: {minutes:g} min, {STREAMS} streams {SIZE}@{RATE} (auto_record), {VIEWERS} LL-HLS viewers "
          f"each, API churn, a publisher reconnect every {RECONNECT_S:.0f} s", flush=True)
    with running_server() as srv:
        soak = Soak(srv, minutes)
        started = time.monotonic()
        try:
            start, end = asyncio.run(soak.run())
        finally:
            lost = soak.stop_and_check_recordings()
        took = time.monotonic() - started
        tracebacks = srv.log_path.read_text(errors="replace").count("Traceback")
    t = soak.tally
    rows = [["", "start", "end", "growth"],
            ["server RSS MB", f"{start.rss_mb:.1f}", f"{end.rss_mb:.1f}", f"{_growth(start.rss_mb, end.rss_mb):+.1%}"],
            ["open fds", str(start.fds), str(end.fds), f"{_growth(start.fds, end.fds):+.1%}"],
            ["asyncio tasks", f"{start.tasks:.0f}", f"{end.tasks:.0f}", f"{_growth(start.tasks, end.tasks):+.1%}"]]
    table(rows)
    print(f"    {took / 60:.1f} min; {t.requests} viewer/API requests ({t.parts} LL-HLS parts, {t.api_calls} API "
          f"calls), {t.reconnects} publisher reconnects; 5xx: {len(t.errors_5xx)}; unanswered: {len(t.failed)}; "
          f"tracebacks in the server log: {tracebacks}; lost recordings: {len(lost)}", flush=True)
    failures = [f"{name} grew {_growth(a, b):+.1%}" for name, a, b in
                (("RSS", start.rss_mb, end.rss_mb), ("fds", start.fds, end.fds), ("tasks", start.tasks, end.tasks))
                if _growth(a, b) > GROWTH_LIMIT]
    failures += [f"5xx: {e}" for e in t.errors_5xx[:10]] + [f"no answer: {e}" for e in t.failed[:10]]
    failures += [f"lost recording: {x}" for x in lost]
    if tracebacks:
        failures.append(f"{tracebacks} tracebacks in the server log")
    for f in failures:
        print(f"!! {f}", flush=True)
    print("== soak " + ("FAILED" if failures else "passed"), flush=True)
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main(float(sys.argv[1]) if len(sys.argv) > 1 else None))

