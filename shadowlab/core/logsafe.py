r"""Log lines that input cannot forge: control characters are escaped in every message.

A reason, a route or an error text that came from a request or a topic may hold a newline or
an ANSI escape; written raw, it would start a fake log line or repaint the terminal.
:class:`EscapeControlCharacters` is a logging filter that renders each record's message with
every control character (C0, DEL, C1, and the Unicode line and paragraph separators) written
as a visible escape (``\n``, ``\x1b``, ``\u2028``).
"""

from __future__ import annotations

import logging
import re

_CONTROL = re.compile("[\x00-\x1f\x7f-\x9f\u2028\u2029]")


def escape_controls(text: str) -> str:
    """``text`` with every control character replaced by its Python escape."""
    return _CONTROL.sub(lambda m: repr(m.group())[1:-1], text)


class EscapeControlCharacters(logging.Filter):
    """Renders each record's message once, with its control characters escaped."""

    def filter(self, record: logging.LogRecord) -> bool:
        """Escape the message in place; never drops a record."""
        message = record.getMessage()
        escaped = escape_controls(message)
        if escaped != message or record.args:
            record.msg, record.args = escaped, None
        return True


__all__ = ["EscapeControlCharacters", "escape_controls"]
