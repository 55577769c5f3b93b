"""H.264 sequence parameter sets (ITU-T H.264 7.3.2.1.1, E.1.1) and the AVC decoder configuration record.

Only what planning a transcode needs: picture size after cropping, profile, level and the frame rate of the
VUI timing info. Pure: bytes in, values out; malformed input raises :class:`H264Error` (a ``ValueError``).
"""

from __future__ import annotations

from dataclasses import dataclass

from onair.formats.fmp4 import FMP4Error
from onair.formats.fmp4.samples import parse_avcc

__all__ = ["H264Error", "Sps", "annexb_nal_units", "parse_avc_config", "parse_sps", "sps_from_annexb"]

NAL_SPS = 7
# profile_idc values whose SPS carries chroma format, bit depths and scaling matrices (7.3.2.1.1)
_HIGH_PROFILES = frozenset({100, 110, 122, 244, 44, 83, 86, 118, 128, 138, 139, 134, 135})
MAX_FPS = 240.0
_MAX_MBS = 1 << 16  # pictures over a million pixels per side are not H.264 (level 6.2 tops out far below)


class H264Error(ValueError):
    pass


@dataclass(frozen=True)
class Sps:
    profile_idc: int
    level_idc: int
    width: int
    height: int
    fps: float | None  # from the VUI timing info; None when the stream does not say


class _Bits:
    """MSB-first bit reader over an RBSP with exp-Golomb codes (9.1)."""

    def __init__(self, data: bytes) -> None:
        self._data = data
        self._pos = 0

    def u(self, n: int) -> int:
        value = 0
        for _ in range(n):
            byte = self._pos >> 3
            if byte >= len(self._data):
                raise H264Error("SPS truncated")
            value = (value << 1) | ((self._data[byte] >> (7 - (self._pos & 7))) & 1)
            self._pos += 1
        return value

    def ue(self) -> int:
        zeros = 0
        while self.u(1) == 0:
            zeros += 1
            if zeros > 31:
                raise H264Error("exp-Golomb code too long")
        return (1 << zeros) - 1 + self.u(zeros)

    def se(self) -> int:
        k = self.ue()
        return (k + 1) // 2 if k & 1 else -(k // 2)


def _rbsp(nal: bytes) -> bytes:
    """The NAL unit payload without its header byte and emulation prevention bytes (00 00 03 → 00 00)."""
    out = bytearray()
    zeros = 0
    for b in nal[1:]:
        if zeros >= 2 and b == 3:
            zeros = 0
            continue
        out.append(b)
        zeros = zeros + 1 if b == 0 else 0
    return bytes(out)


def _skip_scaling_list(r: _Bits, size: int) -> None:
    last = nxt = 8
    for _ in range(size):
        if nxt:
            nxt = (last + r.se() + 256) % 256
            last = nxt or last


def _chroma_and_depth(r: _Bits, profile_idc: int) -> tuple[int, bool]:
    """chroma_format_idc and separate_colour_plane_flag; skips bit depths and scaling matrices."""
    if profile_idc not in _HIGH_PROFILES:
        return 1, False
    chroma = r.ue()
    if chroma > 3:
        raise H264Error(f"chroma_format_idc {chroma}")
    separate = bool(r.u(1)) if chroma == 3 else False
    r.ue()  # bit_depth_luma_minus8
    r.ue()  # bit_depth_chroma_minus8
    r.u(1)  # qpprime_y_zero_transform_bypass_flag
    if r.u(1):  # seq_scaling_matrix_present_flag
        for i in range(8 if chroma != 3 else 12):
            if r.u(1):
                _skip_scaling_list(r, 16 if i < 6 else 64)
    return chroma, separate


def _skip_poc(r: _Bits) -> None:
    r.ue()  # log2_max_frame_num_minus4
    poc_type = r.ue()
    if poc_type == 0:
        r.ue()  # log2_max_pic_order_cnt_lsb_minus4
    elif poc_type == 1:
        r.u(1)
        r.se()
        r.se()
        n = r.ue()
        if n > 255:
            raise H264Error("num_ref_frames_in_pic_order_cnt_cycle > 255")
        for _ in range(n):
            r.se()
    elif poc_type != 2:
        raise H264Error(f"pic_order_cnt_type {poc_type}")


def _vui_fps(r: _Bits) -> float | None:
    """The frame rate of the VUI timing info (E.1.1); None without timing info or when it is a time base."""
    if r.u(1) and r.u(8) == 255:  # aspect_ratio_info_present_flag, aspect_ratio_idc Extended_SAR
        r.u(32)
    if r.u(1):  # overscan_info_present_flag
        r.u(1)
    if r.u(1):  # video_signal_type_present_flag
        r.u(4)
        if r.u(1):
            r.u(24)
    if r.u(1):  # chroma_loc_info_present_flag
        r.ue()
        r.ue()
    if not r.u(1):  # timing_info_present_flag
        return None
    units, scale = r.u(32), r.u(32)
    if not units or not scale:
        return None
    # x264 writes the real rate even with fixed_frame_rate_flag 0; a variable-rate encoder puts its time base
    # here (1 kHz, 90 kHz), far above any frame rate
    fps = scale / (2 * units)  # two field ticks per frame
    return fps if 0 < fps <= MAX_FPS else None


def parse_sps(nal: bytes) -> Sps:
    """Parse one SPS NAL unit (header byte included, as in an AVC record or after an Annex B start code)."""
    if not nal or nal[0] & 0x1F != NAL_SPS:
        raise H264Error("not an SPS NAL unit")
    r = _Bits(_rbsp(nal))
    profile_idc, _constraints, level_idc = r.u(8), r.u(8), r.u(8)
    r.ue()  # seq_parameter_set_id
    chroma, separate = _chroma_and_depth(r, profile_idc)
    _skip_poc(r)
    r.ue()  # max_num_ref_frames
    r.u(1)  # gaps_in_frame_num_value_allowed_flag
    width_mbs, height_units = r.ue() + 1, r.ue() + 1
    frame_mbs_only = r.u(1)
    if not frame_mbs_only:
        r.u(1)  # mb_adaptive_frame_field_flag
    r.u(1)  # direct_8x8_inference_flag
    crop = (r.ue(), r.ue(), r.ue(), r.ue()) if r.u(1) else (0, 0, 0, 0)
    if width_mbs > _MAX_MBS or height_units > _MAX_MBS:
        raise H264Error("picture size out of range")
    # crop units (7-19..7-22): chroma samples for 4:2:0/4:2:2, and field pairs when not frame_mbs_only
    sub_w, sub_h = {0: (1, 1), 1: (2, 2), 2: (2, 1), 3: (1, 1)}[0 if separate else chroma]
    crop_x, crop_y = sub_w, sub_h * (2 - frame_mbs_only)
    width = width_mbs * 16 - crop_x * (crop[0] + crop[1])
    height = (2 - frame_mbs_only) * height_units * 16 - crop_y * (crop[2] + crop[3])
    if width <= 0 or height <= 0:
        raise H264Error(f"cropping leaves no picture ({width}x{height})")
    fps = _vui_fps(r) if r.u(1) else None  # vui_parameters_present_flag
    return Sps(profile_idc, level_idc, width, height, fps)


def parse_avc_config(record: bytes) -> Sps:
    """The first SPS of an AVCDecoderConfigurationRecord (ISO/IEC 14496-15 5.3.3.1), as in an FLV sequence header."""
    try:
        config = parse_avcc(record)
    except FMP4Error as exc:
        raise H264Error(f"not an AVC decoder configuration record: {exc}") from exc
    if not config.sps:
        raise H264Error("AVC record without an SPS")
    return parse_sps(config.sps[0])


def annexb_nal_units(data: bytes) -> list[bytes]:
    """The NAL units of an Annex B byte stream (start codes 00 00 01 or 00 00 00 01)."""
    units = []
    pos = data.find(b"\x00\x00\x01")
    while pos >= 0:
        start = pos + 3
        nxt = data.find(b"\x00\x00\x01", start)
        end = len(data) if nxt < 0 else nxt
        unit = data[start:end]
        if nxt >= 0 and unit.endswith(b"\x00"):
            unit = unit.rstrip(b"\x00")  # the leading zero of the next four-byte start code (and trailing zeros)
        if unit:
            units.append(unit)
        pos = nxt
    return units


def sps_from_annexb(data: bytes, *, complete_only: bool = False) -> Sps | None:
    """The first SPS found in Annex B data; None when there is none (yet). With ``complete_only`` the last NAL
    unit is left out: in a stream still arriving it may be cut short."""
    units = annexb_nal_units(data)
    for unit in units[:-1] if complete_only else units:
        if unit[0] & 0x1F == NAL_SPS:
            return parse_sps(unit)
    return None
