"""Display settings of a stored player as the public pages apply them.

Only what a viewer's browser needs to draw the player leaves the server: colours, logo, custom CSS and
the behaviour switches. `name`, `js_url`, `skin_is_url`, `design` and `framework` stay private (the
pages never load operator JS). Without a player (`?player_id` absent or unknown) the built-in defaults
apply: autoplay muted, like the live player always did.
"""

from __future__ import annotations

import re
from typing import TYPE_CHECKING, Any

from onair.store.models import Document

if TYPE_CHECKING:
    from onair.node import Node

COLOR_KEYS = ("bg_color", "fg_color", "text_color", "hover_color")
BOOL_KEYS = ("autoplay", "mute", "disable_skin", "speed_control", "show_sharing")
LOGO_POSITIONS = ("tl", "tr", "bl", "br")
# what a stored player that leaves a switch unset gets (the API's player defaults)
STORED_DEFAULTS: dict[str, bool] = {"autoplay": False, "mute": False, "disable_skin": False,
                                    "speed_control": False, "show_sharing": True}
BUILTIN: dict[str, Any] = {"player_id": None, "autoplay": True, "mute": True, "disable_skin": False,
                           "speed_control": False, "show_sharing": True, "bg_color": None, "fg_color": None,
                           "text_color": None, "hover_color": None, "custom_css": None, "logo": None,
                           "logo_position": "tl"}
MAX_CSS = 65536
_COLOR = re.compile(r"^#[0-9A-Fa-f]{6}$")
_ID = re.compile(r"^[0-9]{1,10}$")


def safe_url(url: Any) -> str | None:
    """An http(s) or same-site absolute path URL, else None (no javascript:, data: or protocol-relative)."""
    if not isinstance(url, str) or not url or len(url) > 2048 or any(c in url for c in "\"'<> \t\r\n\\"):
        return None
    low = url.lower()
    if low.startswith(("http://", "https://")) or (url.startswith("/") and not url.startswith("//")):
        return url
    return None


def display_settings(data: dict[str, Any], player_id: int | None = None) -> dict[str, Any]:
    """The public subset of a stored player's fields, validated again (stored data may predate checks)."""
    out: dict[str, Any] = {"player_id": player_id}
    for key in BOOL_KEYS:
        value = data.get(key)
        out[key] = STORED_DEFAULTS[key] if value is None else bool(value)
    for key in COLOR_KEYS:
        value = data.get(key)
        out[key] = value if isinstance(value, str) and _COLOR.match(value) else None
    css = data.get("custom_css")
    out["custom_css"] = css[:MAX_CSS] if isinstance(css, str) and css.strip() else None
    out["logo"] = safe_url(data.get("logo"))
    position = data.get("logo_position")
    out["logo_position"] = position if position in LOGO_POSITIONS else "tl"
    return out


def parse_player_id(raw: str | None) -> int | None:
    """`?player_id=N`: a positive int32, else None (a bad value falls back to the built-in player)."""
    if raw is None or not _ID.match(raw.strip()):
        return None
    value = int(raw.strip())
    return value if 0 < value < 2**31 else None


async def load_display_settings(node: Node, player_id: int | None) -> dict[str, Any]:
    """The display settings of player `player_id`, the built-in ones when there is no such player."""
    if player_id is None:
        return dict(BUILTIN)
    async with node.sessionmaker() as db:
        doc = await db.get(Document, player_id)
    if doc is None or doc.kind != "player":
        return dict(BUILTIN)
    return display_settings(doc.data, player_id)
