"""Playback routes: LL-HLS, DASH, MPEG-TS HLS and screenshots."""

from fastapi import APIRouter

router = APIRouter(tags=["playback"])
