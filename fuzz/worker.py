"""One fuzz target under atheris: ``python -m fuzz.worker TARGET [libFuzzer args...]`` (started by the runner)."""

from __future__ import annotations

import sys


def main(argv: list[str]) -> None:
    import atheris

    from fuzz.targets import TARGETS

    name, libfuzzer_args = argv[0], argv[1:]
    with atheris.instrument_imports(include=["onair"]):
        harness = TARGETS[name].build()
    atheris.Setup([sys.argv[0], *libfuzzer_args], harness)
    atheris.Fuzz()


if __name__ == "__main__":
    main(sys.argv[1:])
