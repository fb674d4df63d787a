"""A small Sink interface, apart from its implementations (after quix-streams' sinks).

The role decodes each batch of a topic with the sink's :meth:`Sink.decoder` (msgspec fast
path, pydantic for the rest; see :mod:`schemas.fast`) and buffers the valid events with
:meth:`Sink.add`; :meth:`Sink.flush` writes them all and clears the buffer in ``finally`` (a
failed write is retried from Kafka, not from memory: the caller did not commit the offsets).
Offsets are committed by the caller only after ``flush`` returned, so delivery is
at-least-once and :meth:`Sink.write` must be idempotent.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections import defaultdict
from typing import Any

from schemas import Event
from schemas.fast import BatchDecoder, DecodedBatch


class Sink(ABC):
    """Buffers decoded batches per topic; writes them on :meth:`flush`."""

    def __init__(self) -> None:
        self._batches: defaultdict[str, list[DecodedBatch[Any]]] = defaultdict(list)

    def decoder(self, event_type: type[Event]) -> BatchDecoder[Any]:
        """The decoder for a topic of ``event_type`` (a sink may want some fields as JSON)."""
        return BatchDecoder(event_type)

    def add(self, topic: str, batch: DecodedBatch[Any]) -> None:
        """Buffer the valid events of one decoded batch."""
        if batch.count:
            self._batches[topic].append(batch)

    def pending(self) -> int:
        """Events buffered and not yet written."""
        return sum(b.count for batches in self._batches.values() for b in batches)

    def flush(self) -> int:
        """Write every buffered event; the buffer is cleared whether or not it succeeded.

        Returns:
            The number of events written.
        """
        try:
            if not self._batches:
                return 0
            self.write(dict(self._batches))
            return sum(b.count for batches in self._batches.values() for b in batches)
        finally:
            self._batches.clear()

    @abstractmethod
    def write(self, batches: dict[str, list[DecodedBatch[Any]]]) -> None:
        """Write the batches (idempotently: the same events may come again)."""
