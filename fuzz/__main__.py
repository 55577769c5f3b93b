"""Fuzz runner: ``python -m fuzz --seconds N [--jobs J] [--workdir DIR] [target ...]``.

Each target runs in its own subprocess under atheris for N seconds (``-max_total_time``), starting
from seed corpora generated in code (``fuzz/seeds.py``) into ``<workdir>/seeds/<target>/``; new
coverage-increasing inputs collect in ``<workdir>/corpus/<target>/`` and crashing/hanging inputs in
``<workdir>/crashes/``. The exit status is non-zero when any target fails. A crash input becomes a
regression test by copying it to ``tests/regressions/<target>/``; ``--replay TARGET FILE...`` runs
inputs through a target without atheris.
"""

from __future__ import annotations

import argparse
import os
import re
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from hashlib import sha1
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
PER_INPUT_TIMEOUT = 10  # seconds one input may take before libFuzzer calls it a hang
RSS_LIMIT_MB = 1024


@dataclass
class Result:
    target: str
    status: str  # ok, FAILED, skipped
    execs: int = 0
    seconds: float = 0.0
    cov: int = 0
    detail: str = ""

    def line(self) -> str:
        rate = f"{self.execs / self.seconds:,.0f}/s" if self.seconds else "-"
        text = f"{self.target:<16} {self.status:<7} execs={self.execs:<9} ({rate}) cov={self.cov} {self.seconds:.1f}s"
        return text + (f"\n    {self.detail}" if self.detail else "")


def write_seeds(name: str, seed_dir: Path) -> int:
    """Seeds of ``name`` into ``seed_dir`` (files named by label and content hash; existing ones kept)."""
    from fuzz.seeds import SEEDS

    seed_dir.mkdir(parents=True, exist_ok=True)
    seeds = SEEDS.get(name, lambda: [])()
    for label, data in seeds:
        path = seed_dir / f"{label}-{sha1(data).hexdigest()[:10]}"
        if not path.exists():
            path.write_bytes(data)
    return len(seeds)


def run_target(name: str, seconds: int, workdir: Path, verbose: bool = False) -> Result:
    from fuzz.seeds import write_dict
    from fuzz.targets import TARGETS

    if not TARGETS[name].available():
        return Result(name, "skipped", detail=f"{TARGETS[name].requires} is not present")
    seed_dir, corpus_dir, crash_dir = workdir / "seeds" / name, workdir / "corpus" / name, workdir / "crashes"
    write_seeds(name, seed_dir)
    corpus_dir.mkdir(parents=True, exist_ok=True)
    crash_dir.mkdir(parents=True, exist_ok=True)
    args = [sys.executable, "-m", "fuzz.worker", name, f"-max_total_time={seconds}",
            f"-timeout={PER_INPUT_TIMEOUT}", f"-rss_limit_mb={RSS_LIMIT_MB}", "-print_final_stats=1",
            f"-artifact_prefix={crash_dir}/{name}-"]
    if write_dict(name, str(workdir / "seeds" / f"{name}.dict")):
        args.append(f"-dict={workdir / 'seeds' / f'{name}.dict'}")
    args += [str(corpus_dir), str(seed_dir)]
    start = time.monotonic()
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")]))}
    try:
        proc = subprocess.run(args, capture_output=True, text=True, errors="replace", cwd=ROOT, env=env,
                              timeout=seconds + PER_INPUT_TIMEOUT + 60)
        out, rc = proc.stdout + proc.stderr, proc.returncode
    except subprocess.TimeoutExpired as exc:
        out = (exc.stdout or "") + (exc.stderr or "") if isinstance(exc.stdout, str) else ""
        rc = -1
    elapsed = time.monotonic() - start
    if verbose:
        print(out, file=sys.stderr)
    execs = _last_int(r"stat::number_of_executed_units:\s*(\d+)", out) or _last_int(r"Done (\d+) runs", out)
    cov = _last_int(r"cov: (\d+)", out)
    if rc == 0:
        return Result(name, "ok", execs, elapsed, cov)
    crash = re.findall(r"Test unit written to (\S+)", out)
    lines = out.strip().splitlines()
    marks = [i for i, line in enumerate(lines) if "Uncaught Python exception" in line]
    shown = lines[marks[-1]:][:30] if marks else lines[-25:]  # the Python traceback, else libFuzzer's tail
    tail = "\n    ".join(shown)
    detail = (f"input: {crash[-1]}\n    " if crash else "") + f"exit {rc}:\n    {tail}"
    return Result(name, "FAILED", execs, elapsed, cov, detail)


def _last_int(pattern: str, text: str) -> int:
    found = re.findall(pattern, text)
    return int(found[-1]) if found else 0


def main(argv: list[str] | None = None) -> int:
    from fuzz.targets import TARGETS, replay

    ap = argparse.ArgumentParser(prog="python -m fuzz", description=__doc__.split("\n\n")[0] if __doc__ else None)
    ap.add_argument("targets", nargs="*", help=f"default: all ({', '.join(TARGETS)})")
    ap.add_argument("--seconds", type=int, default=10, help="fuzzing time per target (default 10)")
    ap.add_argument("--jobs", type=int, default=1, help="targets run in parallel (default 1)")
    ap.add_argument("--workdir", type=Path, default=ROOT / "fuzz" / "work", help="seeds, corpus and crashes")
    ap.add_argument("--list", action="store_true", help="list the targets and exit")
    ap.add_argument("--replay", nargs="+", metavar=("TARGET", "FILE"), help="run files through TARGET, no atheris")
    ap.add_argument("-v", "--verbose", action="store_true", help="show libFuzzer output")
    opts = ap.parse_args(argv)
    if opts.list:
        for t in TARGETS.values():
            print(f"{t.name:<16} {t.doc}" + ("" if t.available() else "  (skipped: not present)"))
        return 0
    if opts.replay:
        name, files = opts.replay[0], opts.replay[1:]
        for f in files:
            replay(name, Path(f).read_bytes())
            print(f"{f}: ok")
        return 0
    unknown = [t for t in opts.targets if t not in TARGETS]
    if unknown:
        ap.error(f"unknown targets: {', '.join(unknown)}")
    names = opts.targets or list(TARGETS)
    workdir = opts.workdir.resolve()
    with ThreadPoolExecutor(max(1, opts.jobs)) as pool:
        results = list(pool.map(lambda n: run_target(n, opts.seconds, workdir, opts.verbose), names))
    for r in results:
        print(r.line())
    failed = [r.target for r in results if r.status == "FAILED"]
    if failed:
        print(f"FAILED: {', '.join(failed)} (crash inputs in {workdir / 'crashes'})")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
