"""`onair serve`: every setting is an ONAIR_* variable and the matching --flag (CONTRACT.md)."""

from __future__ import annotations

import argparse
import asyncio
import sys
from collections.abc import Callable
from typing import Any

from pydantic import ValidationError

from onair.app.edge import EdgeConfigError, EdgeSettings, parse_node, render_edge_config
from onair.config import Settings


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="onair", description="Self-hosted live streaming platform")
    sub = parser.add_subparsers(dest="command", required=True)
    serve = sub.add_parser("serve", help="start the server (all listeners in one process)")
    for name, info in Settings.model_fields.items():
        serve.add_argument("--" + name.replace("_", "-"), dest=name, default=None,
                           help=f"{info.description} (env ONAIR_{name.upper()}, default {info.default})")
    edge = sub.add_parser("edge-config", help="print an nginx configuration for a caching edge in front of nodes")
    edge.add_argument("--listen", required=True, help="HOST:PORT the edge listens on")
    edge.add_argument("--node", action="append", required=True, help="a node's HTTP base URL (repeatable)")
    edge.add_argument("--cache-dir", default="cache", help="cache directory (relative: under nginx's -p DIR)")
    return parser


def _edge_config(args: argparse.Namespace) -> int:
    try:
        text = render_edge_config(EdgeSettings(listen=args.listen, nodes=tuple(parse_node(n) for n in args.node),
                                               cache_dir=args.cache_dir))
    except EdgeConfigError as exc:
        print(f"onair edge-config: {exc}", file=sys.stderr)
        return 2
    sys.stdout.write(text)
    return 0


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    if args.command == "edge-config":
        return _edge_config(args)
    overrides: dict[str, Any] = {k: v for k, v in vars(args).items() if k != "command" and v is not None}
    try:
        settings = Settings(**overrides)
    except ValidationError as exc:  # a clear line per bad setting, not a traceback
        for err in exc.errors():
            name = ".".join(str(p) for p in err["loc"])
            print(f"onair: ONAIR_{name.upper()} / --{name.replace('_', '-')}: {err['msg']}", file=sys.stderr)
        return 2
    if args.command == "serve":
        from onair.app.server import serve

        try:
            # uvloop (uvicorn[standard] brings it): the event loop every viewer's request and RTP packet runs on
            with asyncio.Runner(loop_factory=loop_factory()) as runner:
                runner.run(serve(settings))
        except KeyboardInterrupt:
            pass
        return 0
    return 2


def loop_factory() -> Callable[[], asyncio.AbstractEventLoop] | None:
    try:
        import uvloop
    except ImportError:  # the standard loop works as well, only slower
        return None
    return uvloop.new_event_loop


if __name__ == "__main__":
    sys.exit(main())
