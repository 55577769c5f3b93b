"""API latency at a fixed 1,000 requests/s (open loop).

A load generator in a process of its own (asyncio + uvloop + a minimal keep-alive HTTP/1.1 client,
up to 512 connections) schedules requests at exactly RATE/s regardless of how fast answers come back,
and measures each latency from the request's *scheduled* time, so a server that falls behind shows its
queueing (no coordinated omission). The first second of each run is warm-up and not counted. Against
one `onair serve` with 100 streams, on SQLite and then on PostgreSQL: `GET /streaming/streams/{id}` with the
API key at 1,000/s; the list (`GET /streaming/streams`, one page of 100) at 100/s; a mix of 90 % gets and
10 % lists at 1,000/s; and side by side `GET /healthz` (no database, no auth).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import random
import subprocess
import sys
import time
from collections.abc import Awaitable, Callable
from typing import Any

from bench.harness import API_KEY, ROOT, pg_database, running_server
from bench.http1 import Pool
from bench.procs import CpuMeter, loadavg, self_cpu, table

RATE = 1000
CONCURRENCY = 16  # clients of the closed-loop capacity run
GRACE_S = 2.0  # after the last scheduled send, wait this long for answers, then count the rest as unanswered


# --- the generator process ---------------------------------------------------------------------------

async def _open_loop(one: Callable[[float, str], Awaitable[None]], pick: Callable[[], str], t0: float,
                     total: int, rate: float) -> int:
    """Send `total` requests on schedule from `t0`; returns how many were still unanswered after GRACE_S."""
    loop = asyncio.get_running_loop()
    tasks: set[asyncio.Task[None]] = set()
    i = 0
    while i < total:
        now = loop.time()
        while i < total and t0 + i / rate <= now:
            task = asyncio.create_task(one(t0 + i / rate, pick()))
            tasks.add(task)
            task.add_done_callback(tasks.discard)
            i += 1
        await asyncio.sleep(max(0.0, t0 + i / rate - loop.time()))
    if not tasks:
        return 0
    _, pending = await asyncio.wait(set(tasks), timeout=GRACE_S)
    for task in pending:
        task.cancel()
    return len(pending)


async def _generate(port: int, paths: list[tuple[str, float]], rate: float, duration: float, auth: bool,
                    concurrency: int = 0) -> dict[str, Any]:
    """Open loop at `rate`/s, or (concurrency > 0) closed loop: that many clients back to back."""
    pool = Pool("127.0.0.1", port, {"Authorization": f"APIKey {API_KEY}"} if auth else None, limit=512)
    for _ in range(max(concurrency, 32)):  # connections are opened before the clock starts
        await pool.get(paths[0][0])
    rng = random.Random(7)
    choices, weights = [p for p, _ in paths], [w for _, w in paths]
    lat: list[float] = []
    errors: dict[str, int] = {}
    loop = asyncio.get_running_loop()
    t0 = loop.time() + 0.01
    cpu0 = self_cpu()

    async def one(scheduled: float, path: str) -> None:
        try:
            status, _ = await pool.get(path)
            key = None if status == 200 else str(status)
        except Exception as exc:  # noqa: BLE001 - counted as an error of that kind
            key = type(exc).__name__
        if key is None:
            lat.append(loop.time() - scheduled)
        else:
            errors[key] = errors.get(key, 0) + 1

    unanswered = 0
    if concurrency:
        async def client() -> None:
            while loop.time() < t0 + duration:
                await one(loop.time(), rng.choices(choices, weights)[0])

        await asyncio.gather(*(client() for _ in range(concurrency)))
        elapsed = loop.time() - t0
        sent = len(lat) + sum(errors.values())
    else:
        sent = int(duration * rate)
        unanswered = await _open_loop(one, lambda: rng.choices(choices, weights)[0], t0, sent, rate)
        if unanswered:
            errors[f"unanswered {GRACE_S:.0f} s after the last send"] = unanswered
        elapsed = max(duration, loop.time() - t0 - (GRACE_S if unanswered else 0))
    cpu = self_cpu() - cpu0
    pool.close()
    lat.sort()
    ranked = lat + [float("inf")] * unanswered  # an unanswered request is slower than any answered one

    def pct(q: float) -> float:
        return 1000 * ranked[min(len(ranked) - 1, int(q * len(ranked)))] if ranked else float("nan")

    return {"sent_rps": sent / duration if not concurrency else sent / elapsed, "ok_rps": len(lat) / elapsed,
            "ok": len(lat), "errors": errors, "p50_ms": pct(0.5), "p99_ms": pct(0.99), "max_ms": pct(1.0),
            "client_cores": cpu / (loop.time() - t0), "connections": pool.opened}


def generate(port: int, paths: list[tuple[str, float]], rate: float, duration: float, auth: bool,
             concurrency: int = 0) -> dict[str, Any]:
    """Run the generator in a child process (so its CPU is its own, not shared with this one's)."""
    spec = json.dumps({"port": port, "paths": paths, "rate": rate, "duration": duration, "auth": auth,
                       "concurrency": concurrency})
    out = subprocess.run([sys.executable, "-m", "bench.api", "--gen", spec], cwd=str(ROOT), capture_output=True,
                         timeout=duration + 90, check=False)
    if out.returncode != 0:
        raise RuntimeError("load generator failed: " + out.stderr.decode(errors="replace")[-2000:])
    result: dict[str, Any] = json.loads(out.stdout.decode().strip().splitlines()[-1])
    return result


def _new_loop() -> asyncio.AbstractEventLoop:
    try:
        import uvloop

        return uvloop.new_event_loop()
    except ImportError:
        return asyncio.new_event_loop()


# --- the benchmark -----------------------------------------------------------------------------------

def _ms(v: float) -> str:
    return "unanswered" if v == float("inf") else f"{v:.1f}"


def _settle(pid: int, timeout: float = 10.0) -> None:
    """Wait until the server has worked off what the last run left in flight (under 0.1 core for 0.5 s)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        meter = CpuMeter([pid], children=False).start()
        time.sleep(0.5)
        if meter.stop().cores < 0.1:
            return

STREAMS = 100  # the list returns one full page
LIST_RATE = 100
GET_P99_TARGET_MS = 10.0
LIST_P99_TARGET_MS = 50.0


def main(quick: bool = False) -> None:
    duration, cap_duration = (1.5, 1.0) if quick else (10.0, 4.0)
    print(f"    {STREAMS} streams; per request kind: capacity (closed loop, {CONCURRENCY} clients, "
          f"{cap_duration:.0f} s), then open loop at its rate for {duration:.0f} s (latency from the scheduled send "
          f"time), and when the rate is over capacity, open loop at half the capacity; load average {loadavg()}",
          flush=True)
    verdicts = []
    verdicts.append(_one_database("SQLite", None, duration, cap_duration))
    with pg_database() as url:
        verdicts.append(_one_database("PostgreSQL", url, duration, cap_duration))
    for line in verdicts:
        print(line, flush=True)


def _one_database(db_label: str, database_url: str | None, duration: float, cap_duration: float) -> str:
    rows = [["requests", "load", "sent/s", "ok/s", "p50 ms", "p99 ms", "max ms", "errors", "server cores",
             "gen cores"]]
    at_rate: dict[str, dict[str, Any]] = {}
    env = {"ONAIR_DATABASE_URL": database_url} if database_url else None
    with running_server(env) as srv:
        assert srv.proc is not None
        ids = [srv.create_stream(f"api-{i}")["id"] for i in range(STREAMS)]
        variants = [
            ("GET /healthz (no DB, baseline)", [("/healthz", 1.0)], False, RATE),
            ("GET /streaming/streams/{id}", [(f"/streaming/streams/{ids[0]}", 1.0)], True, RATE),
            (f"GET /streaming/streams ({STREAMS})", [("/streaming/streams", 1.0)], True, LIST_RATE),
            ("90 % get + 10 % list", [(f"/streaming/streams/{ids[0]}", 0.9), ("/streaming/streams", 0.1)], True,
             RATE),
        ]

        def run(label: str, load: str, paths: list[tuple[str, float]], auth: bool, rate: float, seconds: float,
                concurrency: int = 0) -> dict[str, Any]:
            assert srv.proc is not None
            meter = CpuMeter([srv.proc.pid], children=False).start()
            r = generate(srv.http_port, paths, rate, seconds, auth, concurrency)
            meter.stop()
            errors = ", ".join(f"{k}: {v}" for k, v in r["errors"].items() if v) or "0"
            rows.append([label, load, f"{r['sent_rps']:.0f}", f"{r['ok_rps']:.0f}", _ms(r["p50_ms"]),
                         _ms(r["p99_ms"]), _ms(r["max_ms"]), errors, f"{meter.cores:.2f}",
                         f"{r['client_cores']:.2f}"])
            _settle(srv.proc.pid)
            return r

        for label, paths, auth, rate in variants:
            cap = run(label, f"closed {CONCURRENCY}", paths, auth, 0, cap_duration, CONCURRENCY)["ok_rps"]
            at_rate[label] = run("", f"open {rate}/s", paths, auth, rate, duration)
            if cap < rate:
                half = max(10, round(cap / 2, -1))
                run("", f"open {half:.0f}/s", paths, auth, half, duration)
    print(f"  {db_label}", flush=True)
    table(rows)
    base, get, listing, mixed = (at_rate[v[0]] for v in variants)

    def sustained(r: dict[str, Any], rate: float) -> bool:
        return bool(r["ok_rps"] >= 0.97 * rate)

    get_ok = sustained(get, RATE) and get["p99_ms"] < GET_P99_TARGET_MS
    list_ok = sustained(listing, LIST_RATE) and listing["p99_ms"] < LIST_P99_TARGET_MS
    return (f"    {db_label}: GET one stream at {RATE}/s p99 {_ms(get['p99_ms'])} ms "
            f"(target < {GET_P99_TARGET_MS:.0f}: "
            f"{'met' if get_ok else 'NOT met'}; ×{get['p99_ms'] / base['p99_ms']:.2f} of /healthz); list of "
            f"{STREAMS} at {LIST_RATE}/s p99 {_ms(listing['p99_ms'])} ms (target < {LIST_P99_TARGET_MS:.0f}: "
            f"{'met' if list_ok else 'NOT met'}); 90/10 mix at {RATE}/s p99 {_ms(mixed['p99_ms'])} ms "
            f"(load average {loadavg()})")


if __name__ == "__main__":
    parser = argparse.ArgumentParser()
    parser.add_argument("--gen", help="run the load generator with this JSON spec, print JSON")
    parser.add_argument("--quick", action="store_true")
    args = parser.parse_args()
    if args.gen:
        spec = json.loads(args.gen)
        with asyncio.Runner(loop_factory=_new_loop) as runner:
            res = runner.run(_generate(spec["port"], [tuple(p) for p in spec["paths"]], spec["rate"],
                                       spec["duration"], spec["auth"], spec["concurrency"]))
        print(json.dumps(res))
    else:
        main(args.quick)
