"""SRT `streamid` values as publishers send them (pure, no libsrt).

Accepted forms, all naming the same stream key (see :mod:`onair.hub.keys`):

* plain, as in the push URLs the API returns: ``{id}#{token}``, backup ``{id}b#{token}``;
* the SRT access-control syntax (``#!::`` then comma-separated ``key=value``): the resource ``r`` is
  ``{id}`` or ``{id}b`` with the token in ``s`` (session), or the whole plain key ``{id}#{token}``;
  the mode ``m`` must be ``publish`` when given (this listener only ingests).
"""

from __future__ import annotations

from urllib.parse import unquote

from onair.hub.keys import StreamKey, parse_stream_key

__all__ = ["MAX_STREAMID", "parse_streamid", "stream_name_of"]

MAX_STREAMID = 512  # SRTO_STREAMID limit


def _access_control(body: str) -> dict[str, str] | None:
    fields: dict[str, str] = {}
    for item in body.split(","):
        key, sep, value = item.partition("=")
        key = key.strip()
        if not sep or not key or key in fields:
            return None
        fields[key] = value.strip()
    return fields


def stream_name_of(streamid: str) -> str | None:
    """The stream key in the plain `{id}[b]#{token}` form, or None when the value is not one of ours."""
    if not streamid or len(streamid) > MAX_STREAMID:
        return None
    if "%" in streamid:
        streamid = unquote(streamid)  # some callers percent-encode the `#` (`%23`)
    if streamid.startswith("#!::"):
        fields = _access_control(streamid[4:])
        if fields is None or "r" not in fields:
            return None
        if fields.get("m", "publish") != "publish":
            return None
        resource = fields["r"]
        if "#" in resource:
            name = resource
        elif "s" in fields:
            name = f"{resource}#{fields['s']}"
        else:
            return None
    else:
        name = streamid
    return name if "#" in name else None


def parse_streamid(streamid: str) -> StreamKey | None:
    name = stream_name_of(streamid)
    return parse_stream_key(name) if name is not None else None
