"""Debian's Chromium driven by Playwright (never a browser download), with the flags this machine needs."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

ROOT = Path(__file__).resolve().parent.parent
CHROMIUM = "/usr/bin/chromium"
# no network but loopback here: background networking, sync and component updates would only fail
BASE_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
             "--disable-background-networking", "--disable-component-update", "--disable-sync",
             "--autoplay-policy=no-user-gesture-required"]
# WebGL through SwiftShader for the 360° projections; Chromium wants the explicit opt-in since it
# started phasing out the automatic fallback
PLAYER_ARGS = [*BASE_ARGS, "--enable-unsafe-swiftshader"]
# a fake camera/microphone and loopback ICE for WHIP publishing
WEBRTC_ARGS = [*BASE_ARGS, "--use-fake-device-for-media-stream", "--use-fake-ui-for-media-stream",
               "--allow-loopback-in-peer-connection"]


def launch_chromium(args: list[str], *, need_player_assets: bool = False) -> Iterator[Any]:
    """Body of a module-scoped fixture: yields a Playwright Browser, closed afterwards."""
    if not Path(CHROMIUM).exists():
        pytest.skip("Debian chromium is not installed (make deps)")
    if need_player_assets and not (ROOT / "node_modules" / "hls.js" / "dist" / "hls.min.js").is_file():
        pytest.skip("node_modules missing (make deps runs npm install)")
    sync_api = pytest.importorskip("playwright.sync_api")
    with sync_api.sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=args)
        yield browser
        browser.close()
