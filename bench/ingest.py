"""RTMP passthrough publishers per core: onair's RTMP ingest layer against nginx-rtmp.

N concurrent publishers (ffmpeg `-stream_loop -1 -re -i file.flv -c copy`, so senders do no encoding)
push the same pre-encoded 720p30 H.264/AAC file into each server in turn; the server's CPU seconds
(utime+stime from /proc, nginx: master + its one worker) over a fixed window give the cores it uses,
and publishers per core = N / cores used.

onair side: transcoding off, i.e. the ingest layer alone. A bench process runs
`onair.ingest.rtmp.server.RTMPServer` (sans-IO protocol core + asyncio glue, the default asyncio loop
as in `onair serve`) with a gateway whose sessions count the FLV bytes and drop them. nginx side:
`application in { live on; }` with no players, which also receives and drops.
"""

from __future__ import annotations

import argparse
import asyncio
import signal
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

from bench.harness import ROOT, stop_process
from bench.procs import CpuMeter, cpu_ms_per_s, descendants, loadavg, nginx, push_file, ratio, source_file, table

SIZE, FPS, KBPS = "1280x720", 30, 2500


# --- the onair ingest layer in a process of its own --------------------------------------------------

class _CountingSession:
    input_format = "flv"

    def __init__(self, gateway: _CountingGateway) -> None:
        self.closed = asyncio.Event()
        self._gateway = gateway

    async def feed(self, data: bytes) -> None:
        self._gateway.bytes += len(data)

    async def close(self, reason: str) -> None:
        self._gateway.closed += 1


class _CountingGateway:
    def __init__(self) -> None:
        self.sessions = self.closed = self.bytes = 0

    async def open_session(self, *, protocol: str, app: str, stream_name: str, remote: str) -> _CountingSession:
        self.sessions += 1
        return _CountingSession(self)


async def _serve_rtmp() -> None:
    from onair.ingest.rtmp.server import RTMPServer

    gateway = _CountingGateway()
    server = RTMPServer(gateway, "127.0.0.1", 0)  # type: ignore[arg-type]
    await server.start()
    print(server.port, flush=True)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    await stop.wait()
    await server.stop()
    print(f"sessions={gateway.sessions} closed={gateway.closed} bytes={gateway.bytes}", flush=True)


class OnairIngest:
    """`python -m bench.ingest --serve-rtmp`: RTMPServer + counting gateway, its port on stdout."""

    def __init__(self) -> None:
        self.proc = subprocess.Popen([sys.executable, "-m", "bench.ingest", "--serve-rtmp"], cwd=str(ROOT),
                                     stdout=subprocess.PIPE, stderr=subprocess.DEVNULL)
        assert self.proc.stdout is not None
        self.port = int(self.proc.stdout.readline())
        self.pid = self.proc.pid

    def stop(self) -> str:
        self.proc.send_signal(signal.SIGTERM)
        out, _ = self.proc.communicate(timeout=20)
        return out.decode().strip()


# --- the measurement ---------------------------------------------------------------------------------

@dataclass
class Result:
    name: str
    publishers: int
    alive: int
    cores: float
    senders_cores: float
    children: list[str]  # the server's descendants at the end of the window
    note: str = ""

    @property
    def per_core(self) -> float:
        return self.publishers / self.cores if self.cores > 0 else float("inf")

    @property
    def ms_per_publisher(self) -> float:
        return cpu_ms_per_s(self.cores, self.publishers)


def measure(name: str, pid: int, port: int, src: Path, n: int, warmup: float, window: float,
            children: bool) -> Result:
    pubs = [push_file(src, f"rtmp://127.0.0.1:{port}/in/bench{i}") for i in range(n)]
    try:
        time.sleep(warmup)
        dead = [p for p in pubs if p.poll() is not None]
        if dead:
            raise RuntimeError(f"{name}: {len(dead)} of {n} publishers exited during warm-up")
        server = CpuMeter([pid], children=children).start()
        senders = CpuMeter([p.pid for p in pubs]).start()
        time.sleep(window)
        server.stop()
        senders.stop()
        alive = sum(p.poll() is None for p in pubs)
        kids = descendants(pid)
    finally:
        for p in pubs:
            p.send_signal(signal.SIGINT)
        for p in pubs:
            stop_process(p, 5)
    if kids and not children:
        # passthrough ingest spawns nothing; a child here would be CPU the figure leaves out
        raise RuntimeError(f"{name}: unexpected child processes {kids}")
    return Result(name, n, alive, server.cores, senders.cores, kids)


def main(quick: bool = False) -> None:
    n = 10 if quick else 24
    warmup, window = (3.0, 6.0) if quick else (4.0, 15.0)
    src = source_file(SIZE, FPS, 10, kbps=KBPS, noise=True)
    mbps = src.stat().st_size * 8 / 10 / 1e6
    print(f"    {n} RTMP publishers × {SIZE}@{FPS} H.264/AAC at {mbps:.1f} Mbit/s (ffmpeg -c copy -re, looped), "
          f"window {window:.0f} s after {warmup:.0f} s warm-up; load average {loadavg()}", flush=True)
    results: list[Result] = []

    onair = OnairIngest()
    try:
        r = measure("onair RTMPServer (ingest layer only, no transcoding)", onair.pid, onair.port, src, n,
                    warmup, window, children=False)
    finally:
        stats = onair.stop()
    got = dict(kv.split("=") for kv in stats.split()) if stats else {}
    received = int(got.get("bytes", 0))
    if int(got.get("sessions", 0)) < n or received == 0:
        raise RuntimeError(f"onair ingest did not receive the publishers: {stats!r}")
    r.note = f"{received / 1e6:.0f} MB of FLV counted"
    results.append(r)

    with nginx(rtmp=True) as ngx:
        results.append(measure("nginx 1.22 + libnginx-mod-rtmp (live on, 1 worker)", ngx.pid, ngx.port, src, n,
                               warmup, window, children=True))

    rows = [["server", "publishers", "alive at end", "server cores", "publishers/core", "CPU ms/publisher/s",
             "senders' cores"]]
    for r in results:
        rows.append([r.name, str(r.publishers), str(r.alive), f"{r.cores:.3f}", f"{r.per_core:.0f}",
                     f"{r.ms_per_publisher:.2f}", f"{r.senders_cores:.2f}"])
    table(rows)
    a, b = results
    print(f"    onair/nginx publishers per core: {ratio(a.per_core, b.per_core)} "
          f"(onair's ingest needs {ratio(a.cores, b.cores)} nginx's CPU); {a.note}; "
          f"load average after {loadavg()}", flush=True)
    print(f"    CPU per publisher {a.ms_per_publisher:.2f} vs {b.ms_per_publisher:.2f} ms/s "
          f"(onair/nginx {ratio(a.ms_per_publisher, b.ms_per_publisher)}); counted: utime+stime of the onair "
          f"RTMPServer process (children: {', '.join(a.children) or 'none'}); of the nginx master and "
          f"its children ({', '.join(b.children) or 'none'}), reaped ones included", flush=True)


if __name__ == "__main__":
    parser = argparse.ArgumentParser()
    parser.add_argument("--serve-rtmp", action="store_true")
    parser.add_argument("--quick", action="store_true")
    args = parser.parse_args()
    if args.serve_rtmp:
        from onair.app.cli import loop_factory

        with asyncio.Runner(loop_factory=loop_factory()) as runner:  # the event loop `onair serve` runs on
            runner.run(_serve_rtmp())
    else:
        main(args.quick)
