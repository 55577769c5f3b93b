"""`onair serve`: every setting is an ONAIR_* variable and the matching --flag (CONTRACT.md)."""

from __future__ import annotations

import argparse
import asyncio
import sys
from typing import Any

from onair.config import Settings


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="onair", description="Self-hosted live streaming platform")
    sub = parser.add_subparsers(dest="command", required=True)
    serve = sub.add_parser("serve", help="start the server (all listeners in one process)")
    for name, info in Settings.model_fields.items():
        serve.add_argument("--" + name.replace("_", "-"), dest=name, default=None,
                           help=f"{info.description} (env ONAIR_{name.upper()}, default {info.default})")
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    overrides: dict[str, Any] = {k: v for k, v in vars(args).items() if k != "command" and v is not None}
    settings = Settings(**overrides)
    if args.command == "serve":
        from onair.app.server import serve

        try:
            asyncio.run(serve(settings))
        except KeyboardInterrupt:
            pass
        return 0
    return 2


if __name__ == "__main__":
    sys.exit(main())
