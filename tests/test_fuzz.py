"""Parsers of outside bytes under fuzzing: every atheris target runs briefly, past crash inputs are replayed.

`make fuzz` runs the same targets for minutes (`python -m fuzz --seconds 300`); an input it reports
goes to `tests/regressions/<target>/` and from then on is checked here.
"""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest

from fuzz.seeds import SEEDS
from fuzz.targets import TARGETS, replay

ROOT = Path(__file__).resolve().parent.parent
REGRESSIONS = Path(__file__).resolve().parent / "regressions"
CASES = sorted((d.name, f) for d in REGRESSIONS.iterdir() if d.is_dir() for f in d.iterdir() if f.is_file())


@pytest.mark.parametrize(("target", "path"), CASES, ids=[f"{t}/{p.name}" for t, p in CASES])
def test_regression_input(target: str, path: Path) -> None:
    if not TARGETS[target].available():
        pytest.skip(f"{TARGETS[target].requires} is not present")
    replay(target, path.read_bytes())


def test_regression_folders_name_targets() -> None:
    assert {d.name for d in REGRESSIONS.iterdir() if d.is_dir()} <= set(TARGETS)


@pytest.mark.parametrize("name", sorted(TARGETS))
def test_seeds_pass_their_target(name: str) -> None:
    """Seeds are valid inputs: generated in code (and with ffmpeg), each one runs clean."""
    if not TARGETS[name].available():
        pytest.skip(f"{TARGETS[name].requires} is not present")
    seeds = SEEDS[name]()
    assert seeds, f"no seeds for {name}"
    harness = TARGETS[name].build()
    for _label, data in seeds:
        harness(data)


def test_fuzz_every_target_briefly(tmp_path: Path) -> None:
    pytest.importorskip("atheris")
    proc = subprocess.run([sys.executable, "-m", "fuzz", "--seconds", "2", "--jobs", "2", "--workdir", str(tmp_path)],
                          cwd=ROOT, capture_output=True, text=True, timeout=240)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    for name in TARGETS:
        m = re.search(rf"^{name}\s+(ok|skipped)\s+execs=(\d+)", proc.stdout, re.M)
        assert m, f"{name} did not report:\n{proc.stdout}"
        assert m[1] == "skipped" or int(m[2]) > 0, f"{name} ran no inputs:\n{proc.stdout}"
