"""What the benchmarks share: an `onair serve` process, streams, RTMP publishers, headless Chromium."""

from __future__ import annotations

import os
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import httpx

ROOT = Path(__file__).resolve().parent.parent
API_KEY = "bench-key-0123456789"
CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                 "--disable-background-networking", "--disable-component-update", "--disable-sync",
                 "--autoplay-policy=no-user-gesture-required"]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class Fatal(RuntimeError):
    """Raised inside a polled predicate: stop polling at once."""


def poll(predicate: Callable[[], Any], timeout: float, interval: float = 0.02, what: str = "condition") -> Any:
    deadline = time.monotonic() + timeout
    last: Exception | None = None
    while time.monotonic() < deadline:
        try:
            value = predicate()
            if value:
                return value
        except Fatal:
            raise
        except Exception as exc:  # noqa: BLE001 - retried until the deadline
            last = exc
        time.sleep(interval)
    raise TimeoutError(f"timed out after {timeout}s waiting for {what}" + (f": {last!r}" if last else ""))


def median(values: list[float]) -> float:
    return float(statistics.median(values)) if values else float("nan")


class Server:
    """A node on loopback with its own data dir and free ports."""

    def __init__(self, data_dir: Path, env: dict[str, str] | None = None) -> None:
        self.data_dir = data_dir
        self.extra_env = env or {}
        self.http_port = free_port()
        self.ports: dict[str, int] = {}
        self.proc: subprocess.Popen[bytes] | None = None
        self.base_url = f"http://127.0.0.1:{self.http_port}"
        self.log_path = data_dir / "server.log"

    def start(self) -> Server:
        self.data_dir.mkdir(parents=True, exist_ok=True)
        env = {**os.environ, "ONAIR_DATA_DIR": str(self.data_dir), "ONAIR_API_KEY": API_KEY,
               "ONAIR_BIND": "127.0.0.1", "ONAIR_PUBLIC_HOST": "127.0.0.1", "ONAIR_HTTP_PORT": str(self.http_port),
               "ONAIR_RTMP_PORT": "0", "ONAIR_RTMPS_PORT": "0", "ONAIR_SRT_PORT": "0", "ONAIR_LOG_LEVEL": "warning",
               **self.extra_env}
        log = open(self.log_path, "ab")  # noqa: SIM115 - kept open for the process lifetime
        onair = str(Path(sys.executable).parent / "onair")
        self.proc = subprocess.Popen([onair, "serve"], env=env, stdout=log, stderr=subprocess.STDOUT, cwd=str(ROOT))

        def healthy() -> bool:
            assert self.proc is not None
            if self.proc.poll() is not None:
                raise Fatal("onair exited: " + self.log_path.read_text(errors="replace")[-2000:])
            r = httpx.get(self.base_url + "/healthz", timeout=2)
            if r.status_code == 200:
                self.ports = r.json()["ports"]
                return True
            return False

        poll(healthy, 30, 0.1, "onair /healthz")
        return self

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(20)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(5)

    def create_stream(self, name: str) -> dict[str, Any]:
        r = httpx.post(self.base_url + "/streaming/streams", json={"name": name, "active": True},
                       headers={"Authorization": f"APIKey {API_KEY}"}, timeout=30)
        r.raise_for_status()
        stream: dict[str, Any] = r.json()
        return stream


@contextmanager
def running_server(env: dict[str, str] | None = None) -> Iterator[Server]:
    with tempfile.TemporaryDirectory(prefix="onair-bench-") as tmp:
        srv = Server(Path(tmp) / "node", env).start()
        try:
            yield srv
        finally:
            srv.stop()


def push_testsrc(url: str, *, size: str = "640x360", rate: int = 30) -> subprocess.Popen[bytes]:
    """An OBS-like live source: realtime testsrc2 + sine, x264 ultrafast/zerolatency, 2 s GOP, AAC."""
    cmd = ["ffmpeg", "-hide_banner", "-loglevel", "error", "-nostdin",
           "-re", "-f", "lavfi", "-i", f"testsrc2=size={size}:rate={rate}",
           "-re", "-f", "lavfi", "-i", "sine=frequency=440:sample_rate=48000",
           "-c:v", "libx264", "-preset", "ultrafast", "-tune", "zerolatency", "-g", str(2 * rate),
           "-pix_fmt", "yuv420p", "-c:a", "aac", "-b:a", "96k", "-f", "flv", url]
    return subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)


def stop_process(proc: subprocess.Popen[bytes], timeout: float = 10) -> None:
    if proc.poll() is None:
        proc.send_signal(signal.SIGINT)
        try:
            proc.wait(timeout)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(5)


class TcpTap:
    """A loopback TCP forwarder that notes when the first client connects and sends its first byte."""

    def __init__(self, target_port: int) -> None:
        self.target_port = target_port
        self.sock = socket.socket()
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(8)
        self.port = int(self.sock.getsockname()[1])
        self.first_connect: float | None = None
        self.first_byte: float | None = None
        self._closed = False
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        while not self._closed:
            try:
                client, _ = self.sock.accept()
            except OSError:
                return
            if self.first_connect is None:
                self.first_connect = time.monotonic()
            upstream = socket.create_connection(("127.0.0.1", self.target_port))
            for a, b, tap in ((client, upstream, True), (upstream, client, False)):
                threading.Thread(target=self._pump, args=(a, b, tap), daemon=True).start()

    def _pump(self, src: socket.socket, dst: socket.socket, tap: bool) -> None:
        try:
            while data := src.recv(65536):
                if tap and self.first_byte is None:
                    self.first_byte = time.monotonic()
                dst.sendall(data)
        except OSError:
            pass
        finally:
            for s in (src, dst):
                try:
                    s.shutdown(socket.SHUT_RDWR)
                except OSError:
                    pass

    def close(self) -> None:
        self._closed = True
        self.sock.close()


@contextmanager
def chromium() -> Iterator[Any]:
    from playwright.sync_api import sync_playwright

    if not Path(CHROMIUM).exists():
        raise RuntimeError("Debian chromium is missing: run `make deps`")
    # without hls.js/dash.js the player falls back to Chromium's native HLS, and every figure would be wrong
    for lib in ("hls.js", "dashjs"):
        if not (ROOT / "node_modules" / lib / "dist").is_dir():
            raise RuntimeError(f"node_modules/{lib} is missing: run `make deps`")
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        try:
            yield browser
        finally:
            browser.close()


PG_ADMIN_DSN = os.environ.get("ONAIR_BENCH_PG", "postgresql://postgres@127.0.0.1:5432/postgres")


@contextmanager
def pg_database() -> Iterator[str]:
    """A new, empty PostgreSQL database on this machine's server (dropped afterwards): its SQLAlchemy URL."""
    import asyncio

    import asyncpg

    name = "onair_bench_" + uuid.uuid4().hex[:10]

    async def admin(sql: str) -> None:
        conn = await asyncpg.connect(PG_ADMIN_DSN)
        try:
            await conn.execute(sql)
        finally:
            await conn.close()

    asyncio.run(admin(f'CREATE DATABASE "{name}"'))
    try:
        yield PG_ADMIN_DSN.rsplit("/", 1)[0].replace("postgresql://", "postgresql+asyncpg://") + "/" + name
    finally:
        asyncio.run(admin(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
