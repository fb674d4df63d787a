"""Bounded outputs: a text a role writes is cut to a configured size, and says so.

Kafka refuses a message over its limit (1 MB by default), and a role that cannot write its
output stops; so every large text a role produces (a candidate's answer) is cut to a size
that fits, keeping its head and appending a marker with the original length.
"""

from __future__ import annotations

#: Appended to a cut text; ``{length}`` is the original length in characters.
CUT_MARKER = "\n…[cut by shadowlab: {length} characters in all]"


def cut_text(text: str | None, max_chars: int) -> str | None:
    """``text`` if it has at most ``max_chars`` characters, else its head and the marker."""
    if text is None or len(text) <= max_chars:
        return text
    return text[:max_chars] + CUT_MARKER.format(length=len(text))


__all__ = ["CUT_MARKER", "cut_text"]
