"""Run every benchmark and print its figures: `python -m bench [--quick] [--only NAME]`."""

from __future__ import annotations

import argparse
import sys
import time

from bench import api, edge, ingest, latency, memory, playback, transcode, whep, whip_latency

BENCHMARKS = {"latency": latency.main, "whip": whip_latency.main, "whep": whep.main, "ingest": ingest.main,
              "playback": playback.main, "edge": edge.main, "transcode": transcode.main, "api": api.main,
              "memory": memory.main}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench", description=__doc__)
    parser.add_argument("--quick", action="store_true", help="one run per measure instead of several")
    parser.add_argument("--only", choices=sorted(BENCHMARKS), action="append", help="run only these benchmarks")
    args = parser.parse_args(argv)
    failed = 0
    for name, run in BENCHMARKS.items():
        if args.only and name not in args.only:
            continue
        started = time.monotonic()
        print(f"== {name}", flush=True)
        try:
            run(quick=args.quick)
        except Exception as exc:  # noqa: BLE001 - report and go on with the next benchmark
            failed += 1
            print(f"!! {name} failed: {exc!r}", flush=True)
        print(f"== {name} took {time.monotonic() - started:.0f} s", flush=True)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
