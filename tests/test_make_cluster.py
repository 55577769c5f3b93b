"""`make cluster` (python -m onair.app.cluster) starts three nodes and the nginx edge, and stops
every child on SIGTERM or Ctrl-C (and when killed itself); a rerun on the same data dir and database works."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import tempfile
import uuid
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tests.conftest import PG_DSN_ADMIN, ROOT, pg_admin, wait_until

pytestmark = pytest.mark.media

HTTP_PORT, RTMP_PORT, SRT_PORT, EDGE_PORT = 18481, 18441, 18451, 18490
NAMES = {"a", "b", "c"}


def _descendants(pid: int) -> set[int]:
    """Every process below pid (from /proc: the nodes, nginx's master and its workers)."""
    children: dict[int, list[int]] = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                stat = (entry / "stat").read_text()
            except OSError:
                continue
            ppid = int(stat.rsplit(")", 1)[1].split()[1])
            children.setdefault(ppid, []).append(int(entry.name))
    found: set[int] = set()
    todo = [pid]
    while todo:
        for child in children.get(todo.pop(), []):
            found.add(child)
            todo.append(child)
    return found


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True


@pytest.fixture
def cluster_env(redis_url: str) -> Iterator[dict[str, str]]:
    db = "onair_cluster_test_" + uuid.uuid4().hex[:8]  # created by the launcher itself
    # nginx's workers (nobody) must reach the edge's prefix, which pytest's private tmp_path is not
    data = Path(tempfile.mkdtemp(prefix="onair-cluster-"))
    data.chmod(0o755)
    pg_base = PG_DSN_ADMIN.rsplit("/", 1)[0].replace("postgresql://", "postgresql+asyncpg://")
    env = {k: v for k, v in os.environ.items() if k != "ONAIR_API_KEY"}
    env.update(CLUSTER_DATABASE_URL=f"{pg_base}/{db}", CLUSTER_REDIS_URL=redis_url, CLUSTER_DATA_DIR=str(data),
               CLUSTER_HTTP_PORT=str(HTTP_PORT), CLUSTER_RTMP_PORT=str(RTMP_PORT), CLUSTER_SRT_PORT=str(SRT_PORT),
               CLUSTER_EDGE_PORT=str(EDGE_PORT), PYTHONPATH=str(ROOT))
    try:
        yield env
    finally:
        subprocess.run(["rm", "-rf", str(data)], check=False)
        pg_admin(f'DROP DATABASE IF EXISTS "{db}" WITH (FORCE)')


def _run_once(env: dict[str, str], sig: int = signal.SIGTERM) -> str:
    """Start the cluster, check every node through the edge and directly, stop it with sig; returns the API key."""
    proc = subprocess.Popen([sys.executable, "-m", "onair.app.cluster"], env=env, cwd=str(ROOT),
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    edge = f"http://127.0.0.1:{EDGE_PORT}"
    try:
        assert proc.stdout is not None
        out = ""
        while "play through the edge" not in out:  # the URLs, printed once nodes and edge answer /healthz
            line = proc.stdout.readline()
            assert line, f"launcher exited early: {out}"
            out += line
        for i, name in enumerate(sorted(NAMES)):
            assert f"http://127.0.0.1:{HTTP_PORT + i}" in out and f"rtmp://127.0.0.1:{RTMP_PORT + i}/in/" in out
            health = httpx.get(f"http://127.0.0.1:{HTTP_PORT + i}/healthz", timeout=5).json()
            assert health["node"] == name and health["ports"]["rtmp"] == RTMP_PORT + i
            assert health["ports"]["srt"] == SRT_PORT + i and health["ports"]["rtmps"] == 0
        assert edge in out

        seen: set[str] = set()

        def all_behind_edge() -> bool:  # the edge spreads requests over the nodes: all three answer in time
            seen.add(httpx.get(edge + "/healthz", timeout=5).json()["node"])
            return seen == NAMES

        wait_until(all_behind_edge, 15, interval=0.05, what="every node answering through the edge")
        key = (Path(env["CLUSTER_DATA_DIR"]) / "api_key").read_text().strip()
        # one shared database: a stream created through the edge is found on c
        headers = {"Authorization": f"APIKey {key}"}
        created = httpx.post(edge + "/streaming/streams", headers=headers, json={"name": "t"}, timeout=10)
        assert created.status_code in (200, 201), created.text
        sid = created.json()["id"]
        got = httpx.get(f"http://127.0.0.1:{HTTP_PORT + 2}/streaming/streams/{sid}", headers=headers, timeout=10)
        assert got.status_code == 200 and got.json()["name"] == "t"

        children = _descendants(proc.pid)
        assert len(children) >= 4  # three nodes, nginx's master (and its workers)
        proc.send_signal(sig)
        rest, _ = proc.communicate(timeout=60)
        if sig != signal.SIGKILL:
            assert proc.returncode == 0 and "cluster stopped" in rest, out + rest
        wait_until(lambda: not any(_alive(p) for p in children), 10, what="every child gone")
        return key
    finally:
        if proc.poll() is None:  # a failed check: the children die with the launcher (PR_SET_PDEATHSIG)
            proc.kill()
            proc.wait(10)


def test_make_cluster_starts_and_stops(cluster_env: dict[str, str]) -> None:
    key = _run_once(cluster_env)
    # a rerun on the same data dir, database and Redis works and keeps the generated key
    assert _run_once(cluster_env, signal.SIGINT) == key
    # a launcher killed outright takes its children with it (PR_SET_PDEATHSIG), and the next run starts
    assert _run_once(cluster_env, signal.SIGKILL) == key
    assert _run_once(cluster_env) == key
