"""Request dependencies shared by the routers: the node, a DB session, and API-key auth."""

from __future__ import annotations

import hmac
from collections.abc import AsyncIterator
from typing import TYPE_CHECKING, Annotated, Any

from fastapi import Depends, Request
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from onair.api.errors import ApiError
from onair.api.ratelimit import FailureLimiter
from onair.store.api_keys import hash_key
from onair.store.models import ApiKey, Stream
from onair.store.snapshots import Snapshots

if TYPE_CHECKING:
    from onair.node import Node


async def get_node(request: Request) -> Node:
    # async: FastAPI runs a plain `def` dependency in its thread pool, a thread hop on every request
    node: Node = request.app.state.node
    return node


NodeDep = Annotated["Node", Depends(get_node)]


async def get_db(request: Request) -> AsyncIterator[AsyncSession]:
    node: Node = request.app.state.node
    async with node.sessionmaker() as session:
        yield session


DbDep = Annotated[AsyncSession, Depends(get_db)]


StreamSnapshot = tuple[Stream, list[dict[str, Any]]]  # a stream row and its overlays, as the API shows them


async def get_snapshots(request: Request) -> Snapshots[Any]:
    snapshots: Snapshots[Any] = request.app.state.snapshots
    return snapshots


SnapshotsDep = Annotated[Snapshots[Any], Depends(get_snapshots)]  # API reads served until the next write


def _unauthorized(text: str) -> ApiError:
    return ApiError(401, {"status": 401, "error": text}, headers={"WWW-Authenticate": "APIKey"})


async def require_api_key(request: Request) -> None:
    """The key is checked first: a valid key is never refused, however many wrong ones came from its address
    (behind a reverse proxy every client shares one). Requests with a wrong or missing key are counted per
    address; past the limit they get 429 instead of 401."""
    node: Node = request.app.state.node
    client = request.client.host if request.client else "?"
    limiter: FailureLimiter = request.app.state.auth_limiter
    header = request.headers.get("authorization", "")
    scheme, _, token = header.strip().partition(" ")
    token = token.strip()
    if scheme.lower() == "apikey" and token and await _valid_key(node, token):
        return
    blocked = limiter.blocked(client)
    limiter.failed(client)
    if blocked:
        raise ApiError(429, {"status": 429, "error": "too many failed authentications"},
                       headers={"Retry-After": str(max(1, round(limiter.window)))})
    if scheme.lower() != "apikey" or not token:
        raise _unauthorized("missing credentials: send 'Authorization: APIKey <token>'")
    raise _unauthorized("invalid API key")


async def _valid_key(node: Node, token: str) -> bool:
    digest = hash_key(token)
    if any(hmac.compare_digest(digest, h) for h in node.api_key_hashes):
        return True
    # the operator key of another node on the same database: looked up each time (never cached), so
    # that a key revoked by that node's restart stops working here as well
    async with node.sessionmaker() as db:
        found = (await db.execute(select(ApiKey.key_hash).where(ApiKey.key_hash == digest))).scalar()
    return found is not None
