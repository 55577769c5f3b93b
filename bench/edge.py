"""LL-HLS viewers through the nginx edge of `onair edge-config`: what they cost the node, and viewers per core.

One node with bench/playback.py's live stream (a pre-encoded 640x360@30 file pushed with `ffmpeg -re -c copy`
over RTMP), and nginx running the config `onair edge-config --node` writes for it (proxy_cache,
proxy_cache_lock, `worker_processes auto`). N viewers run bench/playback.py's loops against the edge: each
viewer a video and an audio playlist loop on its own keep-alive connection, blocking reload
`index.m3u8?_HLS_msn=M&_HLS_part=P` for the preload-hinted part, then GET the newest part it lists. Over the
measured window:

- upstream requests per viewer request: what the node's `onair_playback_requests_total` (every kind and
  status) gained, over the GETs the viewers sent the edge; the target is at most 0.1;
- edge viewer cores: nginx (master, workers, cache manager) plus the `onair serve` process alone minus its
  idle (stream live, no viewers; its ffmpeg children are not counted), as bench/playback.py counts onair;
  beside it, bench/playback.py's baseline: nginx serving a snapshot of the same files statically to the same
  number of loops at the part rate measured through the edge;
- part latency through the edge (parts are asked for once listed, so nearly all are cache hits), and how long
  after the first viewer the others get the same blocking reload's answer: nginx's proxy_cache_lock wakes no
  waiter when the entry is filled, each re-checks on its own 500 ms timer (hard-wired in
  ngx_http_file_cache.c), so the waiters' answers come up to 500 ms late.
"""

from __future__ import annotations

import asyncio
import re
import time

import httpx

from bench.harness import poll, running_server, stop_process
from bench.playback import Counters, Run, Snapshot, baseline, drive, live_tracks, ll_loop, new_loop, pct, report
from bench.procs import CpuMeter, cpu_seconds, descendants, loadavg, nginx_config, push_file, source_file
from onair.app.edge import EdgeSettings, parse_node, render_edge_config

TARGET = 0.1  # upstream requests per viewer request
_COUNTER = re.compile(r'^onair_playback_requests_total\{([^}]*)\} ([0-9.e+-]+)$', re.M)
_KIND = re.compile(r'kind="([^"]*)"')


def playback_requests(base_url: str) -> dict[str, float]:
    """The node's playback requests answered so far, by kind (every status summed), from its /metrics."""
    r = httpx.get(base_url + "/metrics", timeout=10)
    r.raise_for_status()
    kinds: dict[str, float] = {}
    for labels, value in _COUNTER.findall(r.text):
        kind = m[1] if (m := _KIND.search(labels)) else "?"
        kinds[kind] = kinds.get(kind, 0.0) + float(value)
    return kinds


class EdgeMeter(CpuMeter):
    """Between start() and stop(): CPU of nginx's process tree and of the node's own process (not its children),
    and the node's playback requests by kind."""

    def __init__(self, nginx_pid: int, node_pid: int, node_url: str) -> None:
        super().__init__([nginx_pid])
        self.node_pid, self.node_url = node_pid, node_url
        self.node_cpu = 0.0
        self.upstream: dict[str, float] = {}
        self._node0 = 0.0
        self._upstream0: dict[str, float] = {}

    def start(self) -> EdgeMeter:
        self._upstream0 = playback_requests(self.node_url)  # first, so the node's CPU for /metrics is left out
        self._node0 = cpu_seconds(self.node_pid, children=False)
        super().start()
        return self

    def stop(self) -> EdgeMeter:
        super().stop()
        self.node_cpu = cpu_seconds(self.node_pid, children=False) - self._node0
        after = playback_requests(self.node_url)
        self.upstream = {k: v - self._upstream0.get(k, 0.0) for k, v in after.items()
                         if v - self._upstream0.get(k, 0.0) > 0}
        return self

    @property
    def nginx_cores(self) -> float:
        return self.cpu / self.wall if self.wall else float("nan")

    @property
    def node_cores(self) -> float:
        return self.node_cpu / self.wall if self.wall else float("nan")

    @property
    def cores(self) -> float:
        return self.nginx_cores + self.node_cores


def reload_lag(tracks: list[list[Counters]]) -> list[float]:
    """For each track's loops: how long after the first loop each other loop got the same blocking reload (ms)."""
    lags: list[float] = []
    for loops in tracks:
        times: dict[tuple[int, int], list[float]] = {}
        for c in loops:
            for key, t in (c.answered or {}).items():
                times.setdefault(key, []).append(t)
        for ts in times.values():
            first = min(ts)
            lags.extend(1000 * (t - first) for t in ts if t is not first)
    return lags


def main(quick: bool = False) -> None:
    viewers = 40 if quick else 100
    warmup, window, idle_window = (2.0, 4.0, 2.0) if quick else (3.0, 10.0, 5.0)
    src = source_file("640x360", 30, 10)
    tracks: dict[str, Snapshot] = {}
    with running_server() as srv:
        stream = srv.create_stream("edge")
        pub = push_file(src, stream["push_url"])
        try:
            paths = live_tracks(srv, stream)
            assert srv.proc is not None
            node_pid = srv.proc.pid
            idle = CpuMeter([node_pid], children=False).start()
            time.sleep(idle_window)  # a measuring window, not a wait for anything
            idle_cores = idle.stop().cores
            print(f"    live 640x360@30 stream, tracks {', '.join(paths)}; onair process idle (ingest + packaging, "
                  f"no viewers) {idle_cores:.3f} cores; load average {loadavg()}", flush=True)

            def config(listen: str) -> str:
                return render_edge_config(EdgeSettings(listen=listen, nodes=(parse_node(srv.base_url),)))

            with nginx_config(config) as edge:
                first = next(iter(paths.values()))
                poll(lambda: "PRELOAD-HINT" in httpx.get(f"http://127.0.0.1:{edge.port}{first}", timeout=10).text,
                     10, 0.1, "a media playlist through the edge")
                workers = ", ".join(descendants(edge.pid))
                print(f"    edge: `onair edge-config --node {srv.base_url}` run by nginx ({workers} under its "
                      f"master); counted: nginx master + children, and the `onair serve` process alone "
                      f"minus its idle (not its {', '.join(descendants(node_pid)) or 'no'} children)", flush=True)

                async def edge_run() -> tuple[Run, EdgeMeter, list[Counters]]:
                    counters = [Counters(answered={}) for _ in range(viewers * len(paths))]
                    loops = []
                    for i in range(viewers):
                        for j, (track, path) in enumerate(paths.items()):
                            snap = tracks.setdefault(track, Snapshot()) if i == 0 else None
                            loops.append(asyncio.create_task(
                                ll_loop("127.0.0.1", edge.port, path, counters[i * len(paths) + j], snap)))
                    meter = EdgeMeter(edge.pid, node_pid, srv.base_url)
                    run = await drive(f"nginx edge → onair, {viewers} viewers", viewers, loops, counters, meter,
                                      warmup, window, idle_cores)
                    return run, meter, counters

                with asyncio.Runner(loop_factory=new_loop) as runner:
                    run, meter, counters = runner.run(edge_run())
        finally:
            stop_process(pub)

    requests = sum(c.requests for c in counters)
    lag = reload_lag([counters[j::len(paths)] for j in range(len(paths))])
    runs = [run]
    baseline([viewers], runs, tracks, warmup, window)
    report(runs, "edge")
    upstream = sum(meter.upstream.values())
    per_request = upstream / requests if requests else float("nan")
    kinds = ", ".join(f"{k} {v:.0f}" for k, v in sorted(meter.upstream.items())) or "none"
    verdict = "meets" if per_request <= TARGET else "MISSES"
    print(f"    upstream requests per viewer request: {per_request:.4f} ({upstream:.0f} node playback requests "
          f"[{kinds}] for {requests} viewer requests in {meter.wall:.1f} s); target ≤ {TARGET}: {verdict}",
          flush=True)
    print(f"    edge viewer cores {run.cores:.3f} = nginx {meter.nginx_cores:.3f} + onair process "
          f"{meter.node_cores:.3f} - its idle {idle_cores:.3f}; edge viewers per core {run.per_core:.0f} against "
          f"nginx static {runs[1].per_core:.0f}; part through the edge p50 {run.part_p50:.1f} ms, "
          f"p99 {run.part_p99:.1f} ms", flush=True)
    print(f"    a blocking reload's answer through the edge, after the first viewer's for the same part: "
          f"p50 {pct(lag, 0.5):.1f} ms, p99 {pct(lag, 0.99):.1f} ms, max {max(lag, default=float('nan')):.1f} ms "
          f"({len(lag)} answers)", flush=True)


if __name__ == "__main__":
    import sys

    main("--quick" in sys.argv)
