"""LL-HLS media playlists and CMAF files served ahead of the web framework: the hottest playback requests.

Every new part wakes the blocking reload of every viewer at once. Under 120 LL-HLS viewers the framework's
routing, dependency solving and middleware stack took more CPU than the answers themselves. These two routes
are matched here with one regular expression and go to the same handlers the router calls. The only
middleware they need is CORS, whose headers are added here the way the app's CORSMiddleware adds them. Any
other path, and any method but GET, goes on to the app.
"""

from __future__ import annotations

import logging
import re

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import PlainTextResponse
from starlette.types import Receive, Scope, Send

from onair.delivery.routes import cmaf_media, cmaf_media_file

__all__ = ["CORS_EXPOSE_HEADERS", "PlaybackFastPath"]

log = logging.getLogger("onair.delivery.fast_path")

# what browsers may read of a cross-origin answer (the app's CORSMiddleware is configured with the same list)
CORS_EXPOSE_HEADERS = ("Location", "Link", "X-Total-Count", "ETag")
_CORS = {"access-control-allow-origin": "*", "access-control-expose-headers": ", ".join(CORS_EXPOSE_HEADERS)}
# the router's /cmaf/{pid}/{name}/index.m3u8 and /cmaf/{pid}/{name}/{file}, with or without t/{token}/
_HOT = re.compile(r"/cmaf/(?P<pid>[^/]+)/(?:t/(?P<token>[^/]+)/)?(?P<name>[^/]+)/(?P<file>[^/]+)")


class PlaybackFastPath:
    def __init__(self, app: Starlette) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        hot = _HOT.fullmatch(scope["path"]) if scope["type"] == "http" and scope["method"] == "GET" else None
        if hot is None:
            await self.app(scope, receive, send)
            return
        params = {k: v for k, v in hot.groupdict().items() if v is not None}
        scope["app"] = self.app  # what the handlers' request.app (the node's state) is
        scope["path_params"] = params
        request = Request(scope, receive)
        try:
            if params["file"] == "index.m3u8":
                response = await cmaf_media(request, params["pid"], params["name"])
            else:
                response = await cmaf_media_file(request, params["pid"], params["name"], params["file"])
        except Exception:  # the app's ServerErrorMiddleware is not in front of these: answer 500 as it would
            log.exception("playback request failed", extra={"path": scope["path"]})
            response = PlainTextResponse("Internal Server Error", status_code=500)
        if any(name == b"origin" for name, _ in scope["headers"]):
            response.headers.update(_CORS)
        await response(scope, receive, send)

