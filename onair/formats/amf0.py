"""AMF0 encoding and decoding (the subset RTMP commands and FLV metadata use).

Decoding is defensive: it is fed bytes straight from the network, so every
malformed input raises :class:`AMF0Error` (a ``ValueError``) and nothing else.
"""

from __future__ import annotations

import math
import struct
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any, Final

__all__ = [
    "AMF0Error",
    "ECMAArray",
    "UNDEFINED",
    "Undefined",
    "decode",
    "decode_all",
    "decode_value",
    "encode",
    "encode_value",
]

NUMBER: Final = 0x00
BOOLEAN: Final = 0x01
STRING: Final = 0x02
OBJECT: Final = 0x03
NULL: Final = 0x05
UNDEFINED_MARKER: Final = 0x06
REFERENCE: Final = 0x07
ECMA_ARRAY: Final = 0x08
OBJECT_END: Final = 0x09
STRICT_ARRAY: Final = 0x0A
DATE: Final = 0x0B
LONG_STRING: Final = 0x0C
UNSUPPORTED: Final = 0x0D
XML_DOCUMENT: Final = 0x0F
TYPED_OBJECT: Final = 0x10

# Nesting deeper than this is certainly garbage; the cap keeps a hostile peer
# from provoking RecursionError.
MAX_DEPTH: Final = 64

_DOUBLE = struct.Struct(">d")
_U16 = struct.Struct(">H")
_U32 = struct.Struct(">I")
_S16 = struct.Struct(">h")


class AMF0Error(ValueError):
    """Malformed AMF0 data (or a value that cannot be encoded)."""


class Undefined:
    """The AMF0 ``undefined`` value (distinct from ``null``, which is ``None``)."""

    _instance: Undefined | None = None

    def __new__(cls) -> Undefined:
        if cls._instance is None:
            cls._instance = super().__new__(cls)
        return cls._instance

    def __repr__(self) -> str:
        return "UNDEFINED"


UNDEFINED: Final = Undefined()


class ECMAArray(dict[str, Any]):
    """A dict encoded as an AMF0 ECMA array (``onMetaData`` uses these) instead of an object."""


# --------------------------------------------------------------------------- decoding


def decode_value(data: bytes | bytearray | memoryview, offset: int = 0) -> tuple[Any, int]:
    """Decode one value at ``offset``; return ``(value, offset_after)``."""
    buf = bytes(data) if not isinstance(data, bytes) else data
    if offset < 0 or offset > len(buf):
        raise AMF0Error("offset out of range")
    return _Decoder(buf).value(offset, 0)


def decode_all(data: bytes | bytearray | memoryview) -> list[Any]:
    """Decode consecutive values until the data is exhausted."""
    buf = bytes(data) if not isinstance(data, bytes) else data
    dec = _Decoder(buf)
    out: list[Any] = []
    pos = 0
    while pos < len(buf):
        value, pos = dec.value(pos, 0)
        out.append(value)
    return out


def decode(data: bytes | bytearray | memoryview) -> Any:
    """Decode exactly one value that spans all of ``data``."""
    buf = bytes(data) if not isinstance(data, bytes) else data
    value, pos = _Decoder(buf).value(0, 0)
    if pos != len(buf):
        raise AMF0Error(f"{len(buf) - pos} trailing bytes after AMF0 value")
    return value


class _Decoder:
    __slots__ = ("buf",)

    def __init__(self, buf: bytes) -> None:
        self.buf = buf

    def _need(self, pos: int, n: int) -> None:
        if pos + n > len(self.buf):
            raise AMF0Error("truncated AMF0 data")

    def _u16(self, pos: int) -> int:
        self._need(pos, 2)
        return int(_U16.unpack_from(self.buf, pos)[0])

    def _u32(self, pos: int) -> int:
        self._need(pos, 4)
        return int(_U32.unpack_from(self.buf, pos)[0])

    def _utf8(self, pos: int, n: int) -> str:
        self._need(pos, n)
        try:
            return self.buf[pos : pos + n].decode("utf-8")
        except UnicodeDecodeError as exc:
            raise AMF0Error("invalid UTF-8 in AMF0 string") from exc

    def _short_string(self, pos: int) -> tuple[str, int]:
        n = self._u16(pos)
        return self._utf8(pos + 2, n), pos + 2 + n

    def value(self, pos: int, depth: int) -> tuple[Any, int]:
        if depth > MAX_DEPTH:
            raise AMF0Error("AMF0 nesting too deep")
        self._need(pos, 1)
        marker = self.buf[pos]
        read = _READERS.get(marker)
        if read is None:
            raise AMF0Error(_UNREADABLE.get(marker, f"unknown AMF0 type marker 0x{marker:02x}"))
        return read(self, pos + 1, depth)

    # One reader per type marker: (position after the marker, depth) -> (value, position after it).

    def _number(self, pos: int, depth: int) -> tuple[Any, int]:
        self._need(pos, 8)
        return float(_DOUBLE.unpack_from(self.buf, pos)[0]), pos + 8

    def _boolean(self, pos: int, depth: int) -> tuple[Any, int]:
        self._need(pos, 1)
        return self.buf[pos] != 0, pos + 1

    def _string(self, pos: int, depth: int) -> tuple[Any, int]:
        return self._short_string(pos)

    def _long_string(self, pos: int, depth: int) -> tuple[Any, int]:
        n = self._u32(pos)
        return self._utf8(pos + 4, n), pos + 4 + n

    def _null(self, pos: int, depth: int) -> tuple[Any, int]:
        return None, pos

    def _undefined(self, pos: int, depth: int) -> tuple[Any, int]:
        return UNDEFINED, pos

    def _object(self, pos: int, depth: int) -> tuple[Any, int]:
        obj: dict[str, Any] = {}
        return obj, self._properties(pos, depth, obj)

    def _typed_object(self, pos: int, depth: int) -> tuple[Any, int]:
        _class_name, pos = self._short_string(pos)
        typed: dict[str, Any] = {}
        return typed, self._properties(pos, depth, typed)

    def _ecma_array(self, pos: int, depth: int) -> tuple[Any, int]:
        # The count is only a hint (encoders get it wrong); the end marker is authoritative.
        self._u32(pos)
        arr = ECMAArray()
        return arr, self._properties(pos + 4, depth, arr)

    def _strict_array(self, pos: int, depth: int) -> tuple[Any, int]:
        count = self._u32(pos)
        pos += 4
        # Every value takes at least one byte: reject impossible counts up front.
        if count > len(self.buf) - pos:
            raise AMF0Error("strict array count exceeds data")
        items: list[Any] = []
        for _ in range(count):
            item, pos = self.value(pos, depth + 1)
            items.append(item)
        return items, pos

    def _date(self, pos: int, depth: int) -> tuple[Any, int]:
        self._need(pos, 10)
        ms = float(_DOUBLE.unpack_from(self.buf, pos)[0])
        # The timezone field is reserved and ignored by every implementation.
        _S16.unpack_from(self.buf, pos + 8)
        return _date_from_ms(ms), pos + 10

    def _properties(self, pos: int, depth: int, out: dict[str, Any]) -> int:
        while True:
            key, pos = self._short_string(pos)
            self._need(pos, 1)
            if key == "" and self.buf[pos] == OBJECT_END:
                return pos + 1
            value, pos = self.value(pos, depth + 1)
            out[key] = value


_Reader = Callable[[_Decoder, int, int], tuple[Any, int]]
_READERS: Final[dict[int, _Reader]] = {
    NUMBER: _Decoder._number,
    BOOLEAN: _Decoder._boolean,
    STRING: _Decoder._string,
    LONG_STRING: _Decoder._long_string,
    XML_DOCUMENT: _Decoder._long_string,
    NULL: _Decoder._null,
    UNDEFINED_MARKER: _Decoder._undefined,
    UNSUPPORTED: _Decoder._undefined,
    OBJECT: _Decoder._object,
    TYPED_OBJECT: _Decoder._typed_object,
    ECMA_ARRAY: _Decoder._ecma_array,
    STRICT_ARRAY: _Decoder._strict_array,
    DATE: _Decoder._date,
}
# Markers that are valid AMF0 but never decoded here.
_UNREADABLE: Final[dict[int, str]] = {
    OBJECT_END: "unexpected AMF0 object end marker",
    REFERENCE: "AMF0 references are not supported",
}


def _date_from_ms(ms: float) -> datetime:
    if not math.isfinite(ms):
        raise AMF0Error("non-finite AMF0 date")
    try:
        return datetime.fromtimestamp(ms / 1000.0, tz=UTC)
    except (OverflowError, OSError, ValueError) as exc:
        raise AMF0Error("AMF0 date out of range") from exc


# --------------------------------------------------------------------------- encoding


def encode(*values: Any) -> bytes:
    """Encode values back to back (an RTMP command is ``encode(name, txn, obj, ...)``)."""
    out = bytearray()
    for v in values:
        _encode_into(out, v, 0)
    return bytes(out)


def encode_value(value: Any) -> bytes:
    """Encode a single value."""
    out = bytearray()
    _encode_into(out, value, 0)
    return bytes(out)


def _encode_key(out: bytearray, key: str) -> None:
    raw = key.encode("utf-8")
    if len(raw) > 0xFFFF:
        raise AMF0Error("AMF0 property name too long")
    out += _U16.pack(len(raw))
    out += raw


def _encode_properties(out: bytearray, obj: dict[Any, Any], depth: int) -> None:
    for key, val in obj.items():
        if not isinstance(key, str):
            raise AMF0Error(f"AMF0 property names must be str, not {type(key).__name__}")
        _encode_key(out, key)
        _encode_into(out, val, depth + 1)
    out += b"\x00\x00" + bytes([OBJECT_END])


def _encode_into(out: bytearray, value: Any, depth: int) -> None:
    if depth > MAX_DEPTH:
        raise AMF0Error("value nested too deeply for AMF0")
    # bool before int: bool is an int subclass.
    if isinstance(value, bool):
        out.append(BOOLEAN)
        out.append(1 if value else 0)
    elif isinstance(value, int | float):
        out.append(NUMBER)
        out += _DOUBLE.pack(float(value))
    elif isinstance(value, str):
        _encode_string(out, value)
    elif value is None:
        out.append(NULL)
    elif isinstance(value, Undefined):
        out.append(UNDEFINED_MARKER)
    elif isinstance(value, ECMAArray):
        out.append(ECMA_ARRAY)
        out += _U32.pack(len(value))
        _encode_properties(out, value, depth)
    elif isinstance(value, dict):
        out.append(OBJECT)
        _encode_properties(out, value, depth)
    elif isinstance(value, list | tuple):
        _encode_strict_array(out, value, depth)
    elif isinstance(value, datetime):
        _encode_date(out, value)
    else:
        raise AMF0Error(f"cannot encode {type(value).__name__} as AMF0")


def _encode_string(out: bytearray, value: str) -> None:
    raw = value.encode("utf-8")
    if len(raw) <= 0xFFFF:
        out.append(STRING)
        out += _U16.pack(len(raw))
    else:
        out.append(LONG_STRING)
        out += _U32.pack(len(raw))
    out += raw


def _encode_strict_array(out: bytearray, items: list[Any] | tuple[Any, ...], depth: int) -> None:
    out.append(STRICT_ARRAY)
    out += _U32.pack(len(items))
    for item in items:
        _encode_into(out, item, depth + 1)


def _encode_date(out: bytearray, value: datetime) -> None:
    if value.tzinfo is None:
        value = value.replace(tzinfo=UTC)  # naive datetimes are taken as UTC
    out.append(DATE)
    out += _DOUBLE.pack(value.timestamp() * 1000.0)
    out += _S16.pack(0)
