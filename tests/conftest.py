"""Shared fixtures: a real `onair serve` process on 127.0.0.1, on SQLite or PostgreSQL."""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import sys
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

ROOT = Path(__file__).resolve().parent.parent
ONAIR = str(Path(sys.executable).parent / "onair")
PG_DSN_ADMIN = os.environ.get("ONAIR_TEST_PG", "postgresql://postgres@127.0.0.1:5432/postgres")
API_KEY = "test-key-0123456789"


def free_port(kind: int = socket.SOCK_STREAM) -> int:
    with socket.socket(socket.AF_INET, kind) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def wait_until(predicate: Callable[[], Any], timeout: float, interval: float = 0.1, what: str = "condition") -> Any:
    """Poll until predicate() is truthy; the deadline makes a hang a failure, not a stuck suite."""
    deadline = time.monotonic() + timeout
    last_exc: Exception | None = None
    while time.monotonic() < deadline:
        try:
            value = predicate()
            if value:
                return value
        except Exception as exc:  # noqa: BLE001 - retried until the deadline
            last_exc = exc
        time.sleep(interval)
    raise AssertionError(f"timed out after {timeout}s waiting for {what}" + (f": {last_exc!r}" if last_exc else ""))


class OnairServer:
    def __init__(self, data_dir: Path, database_url: str | None = None, **settings: Any) -> None:
        self.data_dir = data_dir
        self.database_url = database_url
        self.settings = settings
        self.proc: subprocess.Popen[bytes] | None = None
        self.http_port = settings.get("http_port") or free_port()
        self.ports: dict[str, int] = {}
        self.log_path = data_dir.parent / f"{data_dir.name}-server.log"

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.http_port}"

    def start(self, timeout: float = 30) -> OnairServer:
        self.data_dir.mkdir(parents=True, exist_ok=True)
        env = {**os.environ, "ONAIR_DATA_DIR": str(self.data_dir), "ONAIR_API_KEY": API_KEY,
               "ONAIR_BIND": "127.0.0.1", "ONAIR_PUBLIC_HOST": "127.0.0.1", "ONAIR_HTTP_PORT": str(self.http_port),
               "ONAIR_RTMP_PORT": "0", "ONAIR_RTMPS_PORT": "-1", "ONAIR_SRT_PORT": "0"}
        if self.database_url:
            env["ONAIR_DATABASE_URL"] = self.database_url
        for k, v in self.settings.items():
            env[f"ONAIR_{k.upper()}"] = str(v)
        log = open(self.log_path, "ab")  # noqa: SIM115 - kept open for the process lifetime
        self.proc = subprocess.Popen([ONAIR, "serve"], env=env, stdout=log, stderr=subprocess.STDOUT,
                                     cwd=str(ROOT))

        def healthy() -> bool:
            assert self.proc is not None
            if self.proc.poll() is not None:
                raise RuntimeError(f"server exited: {self.log_tail()}")
            r = httpx.get(self.base_url + "/healthz", timeout=2)
            if r.status_code == 200:
                self.ports = r.json()["ports"]
                return True
            return False

        wait_until(healthy, timeout, what="onair /healthz")
        return self

    def log_tail(self, n: int = 40) -> str:
        try:
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-n:])
        except OSError:
            return ""

    def stop(self, sig: int = signal.SIGTERM, timeout: float = 20) -> int | None:
        if self.proc is None or self.proc.poll() is not None:
            return self.proc.returncode if self.proc else None
        self.proc.send_signal(sig)
        try:
            return self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            return self.proc.wait(5)

    def client(self) -> httpx.Client:
        return httpx.Client(base_url=self.base_url, headers={"Authorization": f"APIKey {API_KEY}"}, timeout=30)

    def sdk(self) -> Any:
        from gcore import Gcore

        return Gcore(api_key=API_KEY, base_url=self.base_url, max_retries=0)


_PG_CREATED: list[str] = []


def pg_admin(sql: str) -> None:
    """Run one statement on the PostgreSQL server's admin database (CREATE/DROP DATABASE)."""
    import asyncio

    import asyncpg

    async def run() -> None:
        conn = await asyncpg.connect(PG_DSN_ADMIN)
        try:
            await conn.execute(sql)
        finally:
            await conn.close()

    asyncio.run(run())


def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    for name in _PG_CREATED:
        try:
            pg_admin(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        except Exception:  # noqa: BLE001 - cleanup is best effort
            pass


def _pg_database() -> str:
    name = "onair_test_" + uuid.uuid4().hex[:10]
    _PG_CREATED.append(name)
    pg_admin(f'CREATE DATABASE "{name}"')
    return PG_DSN_ADMIN.rsplit("/", 1)[0].replace("postgresql://", "postgresql+asyncpg://") + "/" + name


@pytest.fixture(params=["sqlite", "postgresql"])
def database_url(request: pytest.FixtureRequest) -> str | None:
    if request.param == "sqlite":
        return None
    return _pg_database()


@pytest.fixture
def make_server(tmp_path: Path) -> Iterator[Callable[..., OnairServer]]:
    servers: list[OnairServer] = []

    def make(name: str = "node", database_url: str | None = None, **settings: Any) -> OnairServer:
        srv = OnairServer(tmp_path / name, database_url, **settings)
        servers.append(srv)
        return srv

    yield make
    for srv in servers:
        srv.stop()


@pytest.fixture
def server(make_server: Callable[..., OnairServer]) -> OnairServer:
    return make_server().start()


@pytest.fixture
def api_server(make_server: Callable[..., OnairServer], database_url: str | None) -> OnairServer:
    """The API suite runs once on SQLite and once on PostgreSQL."""
    return make_server(database_url=database_url).start()


def have(binary: str) -> bool:
    return shutil.which(binary) is not None


@pytest.fixture
def pg_url() -> str:
    """A fresh PostgreSQL database (dropped at the end of the session)."""
    return _pg_database()


REDIS_HOST, REDIS_PORT = "127.0.0.1", 6379


@pytest.fixture
def redis_url() -> Iterator[str]:
    """A Redis database of its own: the first empty one of 1..15 (onair derives its key and channel prefix
    from the number), emptied again afterwards."""
    import redis

    for db in range(1, 16):
        client = redis.Redis(host=REDIS_HOST, port=REDIS_PORT, db=db)
        # a marker key claims the database, so two test processes never pick the same one
        if client.dbsize() == 0 and client.set("onair-test-claim", str(os.getpid()), nx=True, ex=3600):
            break
        client.close()
    else:
        pytest.fail("no empty Redis database among 1..15")
    try:
        yield f"redis://{REDIS_HOST}:{REDIS_PORT}/{db}"
    finally:
        client.flushdb()
        client.close()
