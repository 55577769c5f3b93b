"""HTML page templates: `{{name}}` placeholders filled in a single pass.

One pass matters: with chained `str.replace()` calls, a value holding `{{config}}` (a stream name,
say) got the next placeholder's value spliced into it. `re.sub` never rescans what it inserted.
A leaf module (imports nothing of onair), so the player and the ingest pages can both use it.
"""

from __future__ import annotations

import re
from collections.abc import Mapping

__all__ = ["fill"]

_PLACEHOLDER = re.compile(r"\{\{([A-Za-z_][A-Za-z0-9_]*)\}\}")


def fill(template: str, values: Mapping[str, str]) -> str:
    """``template`` with each `{{name}}` replaced by ``values[name]``; unknown names are left as they are."""
    return _PLACEHOLDER.sub(lambda m: values.get(m[1], m[0]), template)
