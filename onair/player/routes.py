"""Player pages."""

from fastapi import APIRouter

router = APIRouter(tags=["player"])
