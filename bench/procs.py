"""What the resource benchmarks share: CPU and memory of process trees from /proc, cached source media,
an nginx with a generated config, and a compact table printer."""

from __future__ import annotations

import hashlib
import os
import shutil
import signal
import subprocess
import tempfile
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from bench.harness import free_port, poll

TICK = os.sysconf("SC_CLK_TCK")
PAGE = os.sysconf("SC_PAGE_SIZE")
NGINX = "/usr/sbin/nginx"
NGINX_RTMP_MODULE = "/usr/lib/nginx/modules/ngx_rtmp_module.so"
CACHE = Path(tempfile.gettempdir()) / "onair-bench-media"


# --- /proc ------------------------------------------------------------------------------------------

def _stat_fields(pid: int) -> list[str] | None:
    try:
        text = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    # the command name (field 2) may hold spaces and parentheses: split after the last ')'
    return text[text.rindex(")") + 2:].split()


def children_map() -> dict[int, list[int]]:
    kids: dict[int, list[int]] = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        fields = _stat_fields(int(entry))
        if fields is not None:
            kids.setdefault(int(fields[1]), []).append(int(entry))
    return kids


def tree(pid: int) -> list[int]:
    """pid and all its descendants alive now."""
    kids = children_map()
    out, todo = [], [pid]
    while todo:
        p = todo.pop()
        out.append(p)
        todo.extend(kids.get(p, []))
    return out


def cpu_seconds(pid: int, *, children: bool = True) -> float:
    """utime+stime of pid; with children, plus every live descendant's and the reaped ones (cutime+cstime):
    a child's CPU moves from its own stat into its parent's cutime when it is reaped, so the sum is steady."""
    total = 0
    for p in tree(pid) if children else [pid]:
        f = _stat_fields(p)
        if f is None:
            continue
        # fields after ')' start at field 3 (state): utime=14, stime=15, cutime=16, cstime=17
        total += int(f[11]) + int(f[12]) + ((int(f[13]) + int(f[14])) if children else 0)
    return total / TICK


def rss_mb(pid: int) -> float:
    f = _stat_fields(pid)
    return int(f[21]) * PAGE / 1e6 if f else 0.0


def pss_mb(pid: int) -> float:
    """Proportional set size (shared pages split between the processes that map them)."""
    try:
        for line in Path(f"/proc/{pid}/smaps_rollup").read_text().splitlines():
            if line.startswith("Pss:"):
                return int(line.split()[1]) / 1e3
    except OSError:
        pass
    return 0.0


def comm(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/comm").read_text().strip()
    except OSError:
        return ""


def loadavg() -> str:
    return " ".join(Path("/proc/loadavg").read_text().split()[:3])


class CpuMeter:
    """CPU seconds of a set of processes (each with or without its descendants) between start() and stop()."""

    def __init__(self, pids: Sequence[int], *, children: bool = True) -> None:
        self.pids = list(pids)
        self.children = children
        self.cpu0 = self.wall0 = 0.0
        self.cpu = self.wall = 0.0

    def _now(self) -> float:
        return sum(cpu_seconds(p, children=self.children) for p in self.pids)

    def start(self) -> CpuMeter:
        self.cpu0, self.wall0 = self._now(), time.monotonic()
        return self

    def stop(self) -> CpuMeter:
        self.cpu, self.wall = self._now() - self.cpu0, time.monotonic() - self.wall0
        return self

    @property
    def cores(self) -> float:
        return self.cpu / self.wall if self.wall else float("nan")


def cpu_ms_per_s(cores: float, n: int) -> float:
    """CPU milliseconds per wall second for each of n clients: 1000 is a whole core each, 10 is 1 % of one."""
    return 1000 * cores / n if n > 0 else float("nan")


def descendants(pid: int) -> list[str]:
    """The command names of pid's live descendants, to say what a tree measurement counted."""
    return sorted(comm(p) for p in tree(pid)[1:])


def self_cpu() -> float:
    t = os.times()
    return t.user + t.system


# --- media ------------------------------------------------------------------------------------------

def source_file(size: str, rate: int, seconds: int, *, kbps: int | None = None, noise: bool = False) -> Path:
    """A pre-encoded H.264/AAC FLV (2 s GOP), made once and cached in the temp dir."""
    key = f"{size}-{rate}-{seconds}-{kbps}-{noise}"
    path = CACHE / f"src-{hashlib.sha1(key.encode()).hexdigest()[:10]}-{size}p{rate}-{seconds}s.flv"
    if path.exists():
        return path
    CACHE.mkdir(parents=True, exist_ok=True)
    vf = ["-vf", "noise=alls=12:allf=t"] if noise else []
    rc = ["-b:v", f"{kbps}k", "-maxrate", f"{kbps}k", "-bufsize", f"{kbps}k"] if kbps else []
    tmp = path.with_suffix(".tmp.flv")
    subprocess.run(["ffmpeg", "-hide_banner", "-loglevel", "error", "-nostdin", "-y",
                    "-f", "lavfi", "-i", f"testsrc2=size={size}:rate={rate}",
                    "-f", "lavfi", "-i", "sine=frequency=440:sample_rate=48000", "-t", str(seconds), *vf,
                    "-c:v", "libx264", "-preset", "ultrafast", "-g", str(2 * rate), "-pix_fmt", "yuv420p", *rc,
                    "-c:a", "aac", "-b:a", "96k", "-f", "flv", str(tmp)], check=True, timeout=300)
    tmp.rename(path)
    return path


def push_file(path: Path, url: str, *, loop: bool = True) -> subprocess.Popen[bytes]:
    """A cheap live publisher: the pre-encoded file in real time, stream copy (no encoding)."""
    cmd = ["ffmpeg", "-hide_banner", "-loglevel", "error", "-nostdin", *(["-stream_loop", "-1"] if loop else []),
           "-re", "-i", str(path), "-c", "copy", "-f", "flv", url]
    return subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)


# --- nginx ------------------------------------------------------------------------------------------

def have_nginx(rtmp: bool = False) -> bool:
    return Path(NGINX).exists() and (not rtmp or Path(NGINX_RTMP_MODULE).exists())


@dataclass
class Nginx:
    proc: subprocess.Popen[bytes]
    port: int
    prefix: Path

    @property
    def pid(self) -> int:
        return self.proc.pid


@contextmanager
def nginx(*, rtmp: bool = False, root: Path | None = None) -> Iterator[Nginx]:
    """nginx in the foreground with one worker: an RTMP `live on` application `in`, or static files of root."""
    if not have_nginx(rtmp):
        raise RuntimeError("nginx (and libnginx-mod-rtmp) missing: run `make bench-deps`")
    port = free_port()
    with tempfile.TemporaryDirectory(prefix="onair-bench-nginx-") as tmp:
        prefix = Path(tmp)
        (prefix / "logs").mkdir()
        if rtmp:
            body = (f"rtmp {{ server {{ listen 127.0.0.1:{port}; chunk_size 4096;\n"
                    "  application in { live on; record off; } } }\n")
        else:
            body = ("http { access_log off; sendfile on; tcp_nopush on; keepalive_requests 100000;\n"
                    "  types { application/vnd.apple.mpegurl m3u8; video/mp4 m4s mp4; }\n"
                    f"  server {{ listen 127.0.0.1:{port}; root {root}; location / {{ }} }} }}\n")
        conf = prefix / "nginx.conf"
        conf.write_text(
            (f"load_module {NGINX_RTMP_MODULE};\n" if rtmp else "")
            + f"daemon off; master_process on; worker_processes 1; pid {prefix}/nginx.pid;\n"
            + f"error_log {prefix}/logs/error.log warn;\n"
            + "events { worker_connections 4096; }\n" + body)
        with _running(conf, port, prefix / "logs/error.log", signal.SIGQUIT if not rtmp else signal.SIGTERM) as ngx:
            yield ngx


@contextmanager
def nginx_config(render: Callable[[str], str], error_log: str = "error.log") -> Iterator[Nginx]:
    """nginx with a config of our own (render("127.0.0.1:PORT") → the file, e.g. `onair edge-config`'s), run
    with a fresh prefix (-p DIR/) its workers can reach: relative paths in the file (cache, temp, logs) go there."""
    if not have_nginx():
        raise RuntimeError("nginx missing: run `make bench-deps`")
    port = free_port()
    with tempfile.TemporaryDirectory(prefix="onair-bench-nginx-") as tmp:
        prefix = Path(tmp)
        prefix.chmod(0o755)  # started as root, nginx runs its workers as nobody
        conf = prefix / "nginx.conf"
        conf.write_text(render(f"127.0.0.1:{port}"))
        with _running(conf, port, prefix / error_log, signal.SIGQUIT) as ngx:
            yield ngx


@contextmanager
def _running(conf: Path, port: int, error_log: Path, stop: signal.Signals) -> Iterator[Nginx]:
    prefix = conf.parent
    proc = subprocess.Popen([NGINX, "-c", str(conf), "-p", f"{prefix}/"], stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL)
    try:
        def listening() -> bool:
            if proc.poll() is not None:
                raise RuntimeError("nginx exited: " + (error_log.read_text(errors="replace") if error_log.exists()
                                                        else "(no error log)"))
            import socket
            with socket.socket() as s:
                return s.connect_ex(("127.0.0.1", port)) == 0

        poll(listening, 10, 0.05, "nginx listening")
        yield Nginx(proc, port, prefix)
    finally:
        if proc.poll() is None:
            proc.send_signal(stop)  # SIGQUIT: graceful, the workers finish, then exit
            try:
                proc.wait(10)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(5)


# --- output -----------------------------------------------------------------------------------------

def table(rows: Sequence[Sequence[str]], indent: str = "    ") -> None:
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    for n, row in enumerate(rows):
        cells = (c.ljust(w) if i == 0 else c.rjust(w) for i, (c, w) in enumerate(zip(row, widths, strict=True)))
        print(indent + "  ".join(cells), flush=True)
        if n == 0:
            print(indent + "  ".join("-" * w for w in widths), flush=True)


def ratio(a: float, b: float) -> str:
    return f"×{a / b:.2f}" if b and a == a and b == b else "n/a"


def which(binary: str) -> bool:
    return shutil.which(binary) is not None
