"""Where a restarted ffmpeg (or a consumer joining mid-stream) can pick a live source up again.

FLV: header + script/sequence-header tags + the cached current GOP, or, without a keyframe yet,
nothing until the next keyframe. MPEG-TS: the next 188-byte packet boundary.
"""

from __future__ import annotations

from onair.formats.flv_tracker import FLV_VIDEO, FlvTag, FlvTracker

TS_PACKET = 188


class SourceResume:
    """Follows the source bytes and cuts the stream for a restarted reader (no I/O)."""

    def __init__(self, input_format: str) -> None:
        self._flv = FlvTracker() if input_format == "flv" else None
        self._offset = 0  # bytes of source seen, to find TS packet boundaries
        self._skip = 0  # bytes to drop before the next TS packet boundary after a restart
        self._await_keyframe = False

    def track(self, data: bytes) -> list[FlvTag]:
        """Account for source bytes (all of them, whether forwarded or not); the FLV tags they complete."""
        self._offset += len(data)
        return self._flv.feed(data) if self._flv is not None else []

    def source_has_no_video(self) -> None:
        """The probe found no video: FLV resume data must not wait for video keyframes."""
        if self._flv is not None:
            self._flv.has_video_flag = False

    def resume_point(self) -> bytes | None:
        """A decodable start as of the bytes tracked so far; b"" for MPEG-TS, None before a keyframe."""
        if self._flv is None:
            return b""
        return self._flv.resume_data()

    def restart(self) -> bytes:
        """Decodable start for a restarted reader; sets up dropping until one is available."""
        if self._flv is not None:
            data = self._flv.resume_data()
            if data is None and not self._flv.broken:
                self._await_keyframe = True
                return b""
            return data or b""
        self._skip = (-self._offset) % TS_PACKET
        return b""

    def forward(self, data: bytes, tags: list[FlvTag]) -> bytes:
        """What of the just tracked ``data`` (whose FLV ``tags`` :meth:`track` returned) to pass on."""
        if self._flv is not None and self._await_keyframe:
            return self._after_keyframe(tags)
        if self._skip:
            n = min(self._skip, len(data))
            data, self._skip = data[n:], self._skip - n
        return data

    def _after_keyframe(self, tags: list[FlvTag]) -> bytes:
        assert self._flv is not None
        for i, tag in enumerate(tags):
            if tag.type == FLV_VIDEO and tag.keyframe:
                self._await_keyframe = False
                return self._flv.config(tag.timestamp) + b"".join(t.raw for t in tags[i:]) + self._flv.pending
        return b""
