"""LL-HLS viewers with blocking reload per core: onair against nginx serving the same files statically.

onair: one live stream (a pre-encoded 640x360@30 file pushed with `ffmpeg -re -c copy` over RTMP, so
the ladder is the 360p rendition + audio; 0.2 s parts). Each simulated viewer runs, like an LL-HLS
player, two loops (the 360p video playlist and the audio playlist), each on its own keep-alive
connection: blocking reload `index.m3u8?_HLS_msn=M&_HLS_part=P` for the preload-hinted part, then GET
the newest part the answer lists, and so on. The server's own CPU (the Python process, not its ffmpeg
child) is measured idle (stream live, no viewers) and with the viewers; viewer cores = the difference.

nginx baseline: the playlists and parts one viewer received are snapshotted to a directory; nginx
(1 worker, sendfile, access log off) serves it statically, and the same number of loops GET the
static playlist then a part (cycling through the snapshotted parts, so the same bytes) at the part
rate measured on onair, every loop on the same tick (as blocking reloads all wake on the same part).
So nginx does the same requests and bytes without holding any request, i.e. the HTTP cost floor.
"""

from __future__ import annotations

import asyncio
import re
import statistics
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import httpx

from bench.harness import Server, poll, running_server, stop_process
from bench.http1 import Connection
from bench.procs import (
    CpuMeter,
    cpu_ms_per_s,
    descendants,
    loadavg,
    nginx,
    push_file,
    ratio,
    self_cpu,
    source_file,
    table,
)

PART_URI = re.compile(r'#EXT-X-PART:[^\n]*URI="([^"]+)"')
PRELOAD_HINT = re.compile(r'#EXT-X-PRELOAD-HINT:[^\n]*URI="part(\d+)\.(\d+)\.m4s"')


@dataclass
class Counters:
    reloads: int = 0
    parts: int = 0
    bytes: int = 0
    errors: int = 0
    requests: int = 0  # every GET sent, answered or not
    part_ms: list[float] = field(default_factory=list)
    answered: dict[tuple[int, int], float] | None = None  # when kept: (msn, part) → when its blocking reload came

    def reset(self) -> None:
        self.reloads = self.parts = self.bytes = self.errors = self.requests = 0
        self.part_ms.clear()
        if self.answered is not None:
            self.answered.clear()


@dataclass
class Snapshot:
    """What one loop received, for the static baseline: the last playlist and the parts in order."""
    playlist: str = ""
    parts: dict[str, bytes] = field(default_factory=dict)


async def ll_loop(host: str, port: int, path: str, c: Counters, snap: Snapshot | None) -> None:
    """One LL-HLS playlist loop: blocking reload for the hinted part, then GET the newest part."""
    conn = Connection(host, port)
    base = path.rsplit("/", 1)[0]
    status, body = await conn.get(path)
    hint = PRELOAD_HINT.search(body.decode())
    if status != 200 or hint is None:
        raise RuntimeError(f"no preload hint in {path}: {status} {body[:200]!r}")
    msn, idx = int(hint[1]), int(hint[2])
    try:
        while True:
            status, body = await conn.get(f"{path}?_HLS_msn={msn}&_HLS_part={idx}")
            c.requests += 1
            if status != 200:
                c.errors += 1
                await asyncio.sleep(0.1)
                continue
            c.reloads += 1
            if c.answered is not None:
                c.answered[msn, idx] = time.monotonic()
            text = body.decode()
            parts = PART_URI.findall(text)
            hint = PRELOAD_HINT.search(text)
            if not parts or hint is None:
                c.errors += 1
                continue
            t = time.monotonic()
            status, data = await conn.get(f"{base}/{parts[-1]}")
            c.requests += 1
            if status != 200:
                c.errors += 1
            else:
                c.part_ms.append(1000 * (time.monotonic() - t))
                c.parts += 1
                c.bytes += len(data)
                if snap is not None:
                    snap.playlist = text
                    snap.parts[parts[-1]] = data
            msn, idx = int(hint[1]), int(hint[2])
    finally:
        conn.close()


async def static_loop(port: int, track: str, names: list[str], interval: float, t0: float, offset: int,
                      c: Counters) -> None:
    """The baseline loop: on every tick GET the static playlist, then the next snapshotted part."""
    conn = Connection("127.0.0.1", port)
    k = 0
    try:
        while True:
            k += 1
            await asyncio.sleep(max(0.0, t0 + k * interval - time.monotonic()))
            status, _ = await conn.get(f"/{track}/index.m3u8")
            if status != 200:
                c.errors += 1
                continue
            c.reloads += 1
            t = time.monotonic()
            status, data = await conn.get(f"/{track}/{names[(k + offset) % len(names)]}")
            if status != 200:
                c.errors += 1
                continue
            c.part_ms.append(1000 * (time.monotonic() - t))
            c.parts += 1
            c.bytes += len(data)
    finally:
        conn.close()


@dataclass
class Run:
    label: str
    viewers: int
    cores: float  # server cores attributable to the viewers
    parts_per_s: float
    mbit_s: float
    part_p50: float
    part_p99: float
    errors: int
    client_cores: float

    @property
    def per_core(self) -> float:
        return self.viewers / self.cores if self.cores > 0 else float("inf")

    @property
    def ms_per_viewer(self) -> float:
        return cpu_ms_per_s(self.cores, self.viewers)


def pct(values: list[float], q: float) -> float:
    if not values:
        return float("nan")
    values = sorted(values)
    return values[min(len(values) - 1, int(q * len(values)))]


async def drive(label: str, viewers: int, loops: list[asyncio.Task[None]], counters: list[Counters],
                 meter: CpuMeter, warmup: float, window: float, idle_cores: float) -> Run:
    try:
        await asyncio.sleep(warmup)
        for t in loops:
            if t.done():
                t.result()  # raises what stopped it
        for c in counters:
            c.reset()
        cpu0 = self_cpu()
        meter.start()
        await asyncio.sleep(window)
        meter.stop()
        client = (self_cpu() - cpu0) / meter.wall
        for t in loops:
            if t.done():
                t.result()
    finally:
        for t in loops:
            t.cancel()
        await asyncio.gather(*loops, return_exceptions=True)
    part_ms = [v for c in counters for v in c.part_ms]
    return Run(label, viewers, meter.cores - idle_cores, sum(c.parts for c in counters) / meter.wall,
               8 * sum(c.bytes for c in counters) / meter.wall / 1e6, statistics.median(part_ms) if part_ms else 0,
               pct(part_ms, 0.99), sum(c.errors for c in counters), client)


def new_loop() -> asyncio.AbstractEventLoop:
    try:
        import uvloop

        return uvloop.new_event_loop()
    except ImportError:
        return asyncio.new_event_loop()


def live_tracks(srv: Server, stream: dict[str, Any]) -> dict[str, str]:
    """Once the stream is live with two segments: its first video and audio media playlists, track → path."""
    master_url = stream["hls_cmaf_url"]
    master = poll(lambda: (r := httpx.get(master_url, timeout=10)).status_code == 200 and r.text, 30, 0.1,
                  "stream live")
    uri = next(line for line in master.splitlines() if line and not line.startswith("#"))
    audio = re.search(r'TYPE=AUDIO[^\n]*URI="([^"]+)"', master)
    base_path = urlsplit(master_url).path.rsplit("/", 1)[0]
    paths = {uri.split("/")[0]: f"{base_path}/{uri}"}
    if audio:
        paths[audio[1].split("/")[0]] = f"{base_path}/{audio[1]}"
    poll(lambda: httpx.get(srv.base_url + paths[next(iter(paths))], timeout=10).text.count("#EXTINF") >= 2,
         30, 0.2, "two segments")
    return paths


def main(quick: bool = False) -> None:
    levels = [40] if quick else [40, 120]
    warmup, window, idle_window = (2.0, 4.0, 2.0) if quick else (3.0, 10.0, 5.0)
    src = source_file("640x360", 30, 10)
    runs: list[Run] = []
    tracks: dict[str, Snapshot] = {}
    with running_server() as srv:
        stream = srv.create_stream("playback")
        pub = push_file(src, stream["push_url"])
        try:
            paths = live_tracks(srv, stream)
            assert srv.proc is not None
            idle = CpuMeter([srv.proc.pid], children=False).start()
            time.sleep(idle_window)
            idle_cores = idle.stop().cores
            print(f"    live 640x360@30 stream, tracks {', '.join(paths)}; onair process idle (ingest + packaging, "
                  f"no viewers) {idle_cores:.3f} cores; load average {loadavg()}", flush=True)
            # the children do ingest/packaging whatever the number of viewers, so they are left out of the count
            kids = descendants(srv.proc.pid)
            print(f"    counted: utime+stime of the `onair serve` process alone, minus its idle; not counted: its "
                  f"children ({', '.join(kids) or 'none'}); nginx: master + worker", flush=True)
            for m in levels:
                async def onair_run(m: int = m) -> Run:
                    counters = [Counters() for _ in range(m * len(paths))]
                    loops = []
                    for i in range(m):
                        for j, (track, path) in enumerate(paths.items()):
                            snap = tracks.setdefault(track, Snapshot()) if i == 0 else None
                            loops.append(asyncio.create_task(
                                ll_loop("127.0.0.1", srv.http_port, path, counters[i * len(paths) + j], snap)))
                    assert srv.proc is not None
                    return await drive(f"onair blocking reload, {m} viewers", m, loops, counters,
                                        CpuMeter([srv.proc.pid], children=False), warmup, window, idle_cores)

                with asyncio.Runner(loop_factory=new_loop) as runner:
                    runs.append(runner.run(onair_run()))
        finally:
            stop_process(pub)

    baseline(levels, runs, tracks, warmup, window)
    report(runs)


def baseline(levels: list[int], runs: list[Run], tracks: dict[str, Snapshot], warmup: float, window: float) -> None:
    """For each level's run in runs, append nginx serving the snapshotted tracks statically at its part rate."""
    with tempfile.TemporaryDirectory(prefix="onair-bench-llhls-") as tmp:
        Path(tmp).chmod(0o755)  # nginx's worker runs as nobody
        _static_runs(Path(tmp), levels, runs, tracks, warmup, window)


def _static_runs(snap_dir: Path, levels: list[int], runs: list[Run], tracks: dict[str, Snapshot], warmup: float,
                 window: float) -> None:
    for track, snap in tracks.items():
        (snap_dir / track).mkdir(parents=True, exist_ok=True)
        (snap_dir / track / "index.m3u8").write_text(snap.playlist)
        for name, data in snap.parts.items():
            (snap_dir / track / name).write_bytes(data)
    with nginx(root=snap_dir) as ngx:
        for m, on in zip(levels, list(runs), strict=True):
            n_loops = m * len(tracks)
            interval = n_loops / on.parts_per_s if on.parts_per_s else 0.5

            async def static_run(m: int = m, interval: float = interval, n_loops: int = n_loops) -> Run:
                counters = [Counters() for _ in range(n_loops)]
                t0 = time.monotonic()
                loops = []
                for i, (track, snap) in enumerate((t, s) for _ in range(m) for t, s in tracks.items()):
                    loops.append(asyncio.create_task(static_loop(ngx.port, track, list(snap.parts), interval, t0, i,
                                                                 counters[i])))
                return await drive(f"nginx static, same requests, {m} viewers", m, loops, counters,
                                    CpuMeter([ngx.pid]), warmup, window, 0.0)

            with asyncio.Runner(loop_factory=new_loop) as runner:
                runs.append(runner.run(static_run()))


def report(runs: list[Run], name: str = "onair") -> None:
    """The runs as a table, then each of the first half against its nginx static counterpart in the second."""
    rows = [["server", "viewers", "viewer cores", "viewers/core", "CPU ms/viewer/s", "parts/s", "Mbit/s",
             "part p50 ms", "part p99 ms", "errors", "client cores"]]
    for r in runs:
        rows.append([r.label, str(r.viewers), f"{r.cores:.3f}", f"{r.per_core:.0f}", f"{r.ms_per_viewer:.2f}",
                     f"{r.parts_per_s:.0f}", f"{r.mbit_s:.1f}", f"{r.part_p50:.1f}", f"{r.part_p99:.1f}",
                     str(r.errors), f"{r.client_cores:.2f}"])
    table(rows)
    half = len(runs) // 2
    for on, st in zip(runs[:half], runs[half:], strict=True):
        print(f"    {on.viewers} viewers: {name}/nginx viewers per core {ratio(on.per_core, st.per_core)}; "
              f"CPU per viewer {on.ms_per_viewer:.2f} vs {st.ms_per_viewer:.2f} ms/s "
              f"({name}/nginx {ratio(on.ms_per_viewer, st.ms_per_viewer)})", flush=True)
    print(f"    (a viewer = video + audio playlist loops, 2 requests per part each; "
          f"load average after {loadavg()})", flush=True)


if __name__ == "__main__":
    import sys

    main("--quick" in sys.argv)
