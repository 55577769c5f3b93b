"""Request dependencies shared by the routers: the node, a DB session, and API-key auth."""

from __future__ import annotations

import hmac
from collections.abc import AsyncIterator
from typing import TYPE_CHECKING, Annotated

from fastapi import Depends, Request
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from onair.api.errors import ApiError
from onair.api.ratelimit import FailureLimiter
from onair.store.api_keys import hash_key
from onair.store.models import ApiKey

if TYPE_CHECKING:
    from onair.node import Node


def get_node(request: Request) -> Node:
    node: Node = request.app.state.node
    return node


NodeDep = Annotated["Node", Depends(get_node)]


async def get_db(request: Request) -> AsyncIterator[AsyncSession]:
    node: Node = request.app.state.node
    async with node.sessionmaker() as session:
        yield session


DbDep = Annotated[AsyncSession, Depends(get_db)]


def _unauthorized(text: str) -> ApiError:
    return ApiError(401, {"status": 401, "error": text}, headers={"WWW-Authenticate": "APIKey"})


async def require_api_key(request: Request) -> None:
    node: Node = request.app.state.node
    client = request.client.host if request.client else "?"
    limiter: FailureLimiter = request.app.state.auth_limiter
    if limiter.blocked(client):
        raise ApiError(429, {"status": 429, "error": "too many failed authentications"},
                       headers={"Retry-After": "10"})
    header = request.headers.get("authorization", "")
    scheme, _, token = header.strip().partition(" ")
    token = token.strip()
    if scheme.lower() != "apikey" or not token:
        limiter.failed(client)
        raise _unauthorized("missing credentials: send 'Authorization: APIKey <token>'")
    digest = hash_key(token)
    known = node.api_key_hashes
    if not any(hmac.compare_digest(digest, h) for h in known):
        # a key added by another node since we cached: look it up once
        async with node.sessionmaker() as db:
            found = (await db.execute(select(ApiKey.key_hash).where(ApiKey.key_hash == digest))).scalar()
        if found is None:
            limiter.failed(client)
            raise _unauthorized("invalid API key")
        known.add(found)
