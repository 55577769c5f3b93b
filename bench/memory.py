"""Memory per live stream: RSS of `onair serve` and of its ffmpeg children with 0, 1, 2, 3 live streams.

Each stream is a pre-encoded 640x360@30 H.264/AAC file pushed over RTMP with `ffmpeg -re -c copy`
(looped), so onair runs one ffmpeg per stream with the 360p rendition + audio, and packages LL-HLS /
LL-DASH in memory (the live window, ONAIR_LIVE_WINDOW_SEGMENTS). After each stream starts, a settle
time, then the median of a few samples. ffmpeg children are shown as RSS (shared libraries counted once
per process, what `ps` says) and PSS (shared pages split between the processes that map them, what they
really add together).
"""

from __future__ import annotations

import statistics
import subprocess
import time

import httpx

from bench.harness import poll, running_server, stop_process
from bench.procs import comm, loadavg, pss_mb, push_file, rss_mb, source_file, table, tree
from onair.config import Settings


def _sample(pid: int) -> tuple[float, float, float, int]:
    kids = [p for p in tree(pid)[1:] if comm(p) == "ffmpeg"]
    return rss_mb(pid), sum(rss_mb(p) for p in kids), sum(pss_mb(p) for p in kids), len(kids)


IDLE_TARGET_MB = 100
STREAM_TARGET_MB = 5


def _idle_rss(pid: int, settle: float, samples: int) -> float:
    time.sleep(settle)
    got = []
    for _ in range(samples):
        got.append(rss_mb(pid))
        time.sleep(0.5)
    return float(statistics.median(got))


def main(quick: bool = False) -> None:
    streams, settle, samples = 3, (2.0 if quick else 8.0), (3 if quick else 5)
    window_s = Settings().live_window_segments * 2.0  # 2 s segments
    src = source_file("640x360", 30, 10)
    rows = [["live streams", "server RSS MB", "ffmpeg RSS MB", "ffmpeg PSS MB", "total RSS MB"]]
    points: list[tuple[float, float, float]] = []
    pubs: list[subprocess.Popen[bytes]] = []
    print(f"    640x360@30 sources over RTMP, {settle:.0f} s settle after each start, median of {samples} samples; "
          f"load average {loadavg()}", flush=True)
    with running_server() as srv:
        assert srv.proc is not None
        first_start = _idle_rss(srv.proc.pid, settle, samples)
        srv.stop()
        srv.start()  # the same data dir again: what an operator's node is after its first day
        assert srv.proc is not None
        pid = srv.proc.pid
        restarted = _idle_rss(pid, settle, samples)
        met = "met" if max(first_start, restarted) <= IDLE_TARGET_MB else "NOT met"
        print(f"    idle node RSS: first start {first_start:.1f} MB, restarted {restarted:.1f} MB "
              f"(target <= {IDLE_TARGET_MB} MB: {met})", flush=True)
        try:
            started = 0.0
            for k in range(streams + 2):
                if k == streams + 1:
                    # the steady state: every stream's live window full (the last row)
                    time.sleep(max(0.0, started + window_s + 4 - time.monotonic()))
                elif k:
                    stream = srv.create_stream(f"mem-{k}")
                    pubs.append(push_file(src, stream["push_url"]))
                    url: str = stream["hls_cmaf_url"]

                    def live(url: str = url, k: int = k) -> bool:
                        return httpx.get(url, timeout=10).status_code == 200 and _sample(pid)[3] == k

                    poll(live, 30, 0.2, f"stream {k} live with its ffmpeg")
                    started = time.monotonic()
                    time.sleep(settle)
                else:
                    time.sleep(settle)
                got = []
                for _ in range(samples):
                    got.append(_sample(pid))
                    time.sleep(0.5)
                server = statistics.median(g[0] for g in got)
                ff_rss = statistics.median(g[1] for g in got)
                ff_pss = statistics.median(g[2] for g in got)
                points.append((server, ff_rss, ff_pss))
                label = f"{streams}, windows full ({window_s:.0f} s)" if k > streams else str(k)
                rows.append([label, f"{server:.1f}", f"{ff_rss:.1f}", f"{ff_pss:.1f}", f"{server + ff_rss:.1f}"])
        finally:
            for p in pubs:
                stop_process(p)
    table(rows)
    (s0, r0, p0), (s3, r3, p3) = points[0], points[-1]
    print(f"    per stream (0 → {streams} streams with full windows, slope): server {(s3 - s0) / streams:.1f} MB, "
          f"ffmpeg {(r3 - r0) / streams:.1f} MB RSS / {(p3 - p0) / streams:.1f} MB PSS, "
          f"server + ffmpeg {(s3 + r3 - s0 - r0) / streams:.1f} MB RSS; idle server {s0:.1f} MB "
          f"(load average {loadavg()})", flush=True)
    per_stream = (s3 - s0) / streams
    print(f"    server per live stream {per_stream:.1f} MB (target <= {STREAM_TARGET_MB} MB: "
          f"{'met' if per_stream <= STREAM_TARGET_MB else 'NOT met'})", flush=True)


if __name__ == "__main__":
    import sys

    main("--quick" in sys.argv)
