"""Start every listener of a node in one process and stop them cleanly on SIGTERM/SIGINT."""

from __future__ import annotations

import asyncio
import logging
import signal
import ssl

import uvicorn
from fastapi import FastAPI

from onair import httpguard, logs
from onair.api.app import create_app
from onair.app.wiring import bind_tcp, bootstrap_api_key, create_node, start_node, stop_node, tls_context
from onair.config import Settings
from onair.delivery.fast_path import PlaybackFastPath
from onair.delivery.playback import Playback
from onair.delivery.relay import OriginRelay
from onair.delivery.routes import router as delivery_router
from onair.delivery.vod import router as vod_router
from onair.delivery.whep.routes import WhepService
from onair.delivery.whep.routes import router as whep_router
from onair.ingest.rtmp.server import RTMPServer
from onair.ingest.srt.server import SRTServer
from onair.ingest.whip.routes import WhipService
from onair.ingest.whip.routes import router as whip_router
from onair.node import Node
from onair.player.pages import router as pages_router
from onair.player.routes import router as player_router

log = logging.getLogger("onair.server")


class Listeners:
    """The ingest servers of a node; HTTP is served by uvicorn on a socket bound beforehand."""

    def __init__(self, node: Node) -> None:
        self.node = node
        self.servers: list[RTMPServer | SRTServer] = []

    async def start(self) -> None:
        s, node = self.node.settings, self.node
        rtmp = self._rtmp(s.rtmp_port, None)
        await rtmp.start()
        self.servers.append(rtmp)
        node.ports.rtmp = rtmp.port
        if s.rtmps_port != 0:
            port = 0 if s.rtmps_port < 0 else s.rtmps_port
            rtmps = self._rtmp(port, tls_context(s))
            await rtmps.start()
            self.servers.append(rtmps)
            node.ports.rtmps = rtmps.port
        srt = SRTServer(node.hub, node.hub.directory, s.bind, s.srt_port,
                        latency_ms=s.srt_latency_ms, idle_timeout=s.ingest_idle_timeout)
        await srt.start()
        self.servers.append(srt)
        node.ports.srt = srt.port  # the real UDP port when ONAIR_SRT_PORT=0

    def _rtmp(self, port: int, ssl_context: ssl.SSLContext | None) -> RTMPServer:
        s = self.node.settings
        return RTMPServer(self.node.hub, s.bind, port, ssl_context=ssl_context, idle_timeout=s.ingest_idle_timeout,
                          setup_timeout=s.rtmp_setup_timeout, max_connections=s.rtmp_max_connections,
                          max_connections_per_ip=s.rtmp_max_connections_per_ip)

    async def stop(self) -> None:
        for server in reversed(self.servers):
            await server.stop()


def build_http_app(node: Node) -> FastAPI:
    # pages before vod: `/videos/{vid}/player` must win over vod's `/videos/{vid}/{file:path}`
    app = create_app(node, [delivery_router, player_router, pages_router, whip_router, whep_router, vod_router])
    app.state.playback = Playback(node.hub, node.urls, node.library, node.sessionmaker,
                                  node.control.playback_guard)
    app.state.whip = WhipService(node.hub, node.settings, node.urls, node.sessionmaker)
    app.state.whep_playback = WhepService(node.settings)
    node.hub.events.subscribe(app.state.whep_playback.on_event)  # feeds attach as sessions start
    return app


async def serve(settings: Settings) -> None:
    logs.setup(settings.log_level)
    # bound first: the default node name carries the HTTP port (ONAIR_HTTP_PORT=0 picks one)
    http_sock = bind_tcp(settings.bind, settings.http_port)
    node = await create_node(settings, http_sock.getsockname()[1])
    node.ports.http = http_sock.getsockname()[1]
    generated = await bootstrap_api_key(node)
    if generated:
        print(f"onair: generated the operator API key (stored in {settings.data_dir / 'api_key'}):\n"
              f"  Authorization: APIKey {generated}", flush=True)
    listeners = Listeners(node)
    await listeners.start()
    u = node.urls
    u.http_port, u.rtmp_port, u.rtmps_port, u.srt_port = (node.ports.http, node.ports.rtmp,
                                                            node.ports.rtmps or 443, node.ports.srt)
    await start_node(node)
    app = build_http_app(node)
    front = PlaybackFastPath(app)
    relay = None
    if node.cluster is not None:  # playback of streams another node receives comes from that node
        relay = OriginRelay(front, urls=node.urls, is_local=lambda sid: node.hub.live(sid) is not None,
                            locate=node.cluster.origin_url)
    config = uvicorn.Config(relay or front, log_config=None, access_log=False, lifespan="off", timeout_keep_alive=30,
                            timeout_graceful_shutdown=3,
                            **httpguard.uvicorn_options(max_connections=settings.http_max_connections,
                                                        header_timeout=settings.http_header_timeout,
                                                        max_header_bytes=settings.http_max_header_bytes))
    server = uvicorn.Server(config)
    # uvicorn installs its own handlers inside serve(); ours only matter before that point
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, lambda: setattr(server, "should_exit", True))
    node.listeners_ready.set()
    log.info("onair listening", extra={"node": node.name, "ports": vars(node.ports),
                                       "data_dir": str(settings.data_dir),
                                       "database": settings.resolved_database_url.split("://")[0]})
    try:
        await server.serve(sockets=[http_sock])
    finally:
        log.info("shutting down")
        await listeners.stop()
        if relay is not None:
            await relay.close()
        await stop_node(node)
        await node.engine.dispose()
