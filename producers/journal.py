"""An append-only spill journal: events that could not go to Kafka wait here, in order.

Record format: ``[u32 length][u32 crc32][u16 topic length][topic][u16 key length][key][value]``
(big-endian; length and crc cover everything after the crc). A record cut short by a crash
fails its length or checksum check and is dropped (with everything after it) on open.

The replay position lives in ``<journal>.pos`` (written atomically after each replayed
batch); a drained journal is truncated to zero. Appends take a short lock and never fsync in
the caller's thread: the fsync policy is applied by :meth:`Journal.sync`, called from a
background thread (``interval``), after every append (``always``) or never (``never``).
"""

from __future__ import annotations

import logging
import os
import struct
import threading
import time
import zlib
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

log = logging.getLogger(__name__)

FsyncPolicy = Literal["always", "interval", "never"]
_HEAD = struct.Struct(">II")
_SHORT = struct.Struct(">H")


@dataclass(frozen=True, slots=True)
class JournalRecord:
    """One spilled message, and where the next record starts."""

    topic: str
    key: bytes | None
    value: bytes
    end: int


def _encode(topic: str, key: bytes | None, value: bytes) -> bytes:
    topic_b = topic.encode()
    key_b = key or b""
    body = _SHORT.pack(len(topic_b)) + topic_b + _SHORT.pack(len(key_b)) + key_b + value
    return _HEAD.pack(len(body), zlib.crc32(body)) + body


def _decode(body: bytes, end: int) -> JournalRecord:
    (topic_len,) = _SHORT.unpack_from(body, 0)
    topic = body[2 : 2 + topic_len].decode()
    at = 2 + topic_len
    (key_len,) = _SHORT.unpack_from(body, at)
    key = body[at + 2 : at + 2 + key_len] or None
    return JournalRecord(topic, key, body[at + 2 + key_len :], end)


class Journal:
    """A crash-safe FIFO of Kafka messages on local disk.

    Args:
        path: the journal file (created with its directory).
        fsync: ``always`` (each append; slow), ``interval`` (call :meth:`sync` from a
            background thread; the default) or ``never``.
    """

    def __init__(self, path: Path | str, fsync: FsyncPolicy = "interval") -> None:
        path = Path(path)
        self.path = path
        self.fsync = fsync
        self._pos_path = path.with_name(path.name + ".pos")
        path.parent.mkdir(parents=True, exist_ok=True)
        self._lock = threading.Lock()
        self._fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_APPEND, 0o600)
        self._size = self._recover()
        self._read_pos = min(self._load_pos(), self._size)
        self._dirty = False

    def _load_pos(self) -> int:
        try:
            return int(self._pos_path.read_text())
        except (FileNotFoundError, ValueError):
            return 0

    def _recover(self) -> int:
        """Find the end of the last whole record; drop a torn tail left by a crash."""
        size = os.fstat(self._fd).st_size
        good = 0
        for record in self._scan(0, size):
            good = record.end
        if good < size:
            log.warning("journal %s: dropping %d bytes of a torn record", self.path, size - good)
            os.ftruncate(self._fd, good)
        return good

    def _scan(self, start: int, stop: int) -> Iterator[JournalRecord]:
        at = start
        while at + _HEAD.size <= stop:
            length, crc = _HEAD.unpack(os.pread(self._fd, _HEAD.size, at))
            end = at + _HEAD.size + length
            if end > stop:
                return
            body = os.pread(self._fd, length, at + _HEAD.size)
            if len(body) != length or zlib.crc32(body) != crc:
                return
            yield _decode(body, end)
            at = end

    def append(self, topic: str, key: bytes | None, value: bytes) -> None:
        """Append one message (one ``write`` call: a torn record is detectable)."""
        record = _encode(topic, key, value)
        with self._lock:
            os.write(self._fd, record)
            self._size += len(record)
            self._dirty = True
        if self.fsync == "always":
            os.fsync(self._fd)

    def sync(self) -> None:
        """Flush appended records to disk (for the ``interval`` policy)."""
        if self._dirty:
            self._dirty = False
            os.fsync(self._fd)

    def pending(self) -> int:
        """Bytes appended but not yet confirmed replayed."""
        return self._size - self._read_pos

    def read(self, limit: int = 1000) -> list[JournalRecord]:
        """Return up to ``limit`` records from the replay position, oldest first."""
        out: list[JournalRecord] = []
        for record in self._scan(self._read_pos, self._size):
            out.append(record)
            if len(out) >= limit:
                break
            if len(out) % 50 == 0:
                time.sleep(0)  # a background reader hands the GIL back to the callers
        return out

    def confirm(self, end: int) -> bool:
        """Mark everything before byte ``end`` as replayed.

        Returns:
            True when the journal is now empty (it was truncated to zero).
        """
        with self._lock:  # appends wait only for the truncate, never for the pos file
            drained = end >= self._size
            if drained:
                os.ftruncate(self._fd, 0)
                self._size = end = 0
            self._read_pos = end
        self._write_pos(end)
        return drained

    def _write_pos(self, pos: int) -> None:
        tmp = self._pos_path.with_name(self._pos_path.name + ".tmp")
        tmp.write_text(str(pos))
        os.replace(tmp, self._pos_path)

    def close(self) -> None:
        """Flush and close the file."""
        self.sync()
        os.close(self._fd)
