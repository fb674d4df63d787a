"""A small Sink interface, apart from its implementations (after quix-streams' sinks).

Events are buffered per (topic, partition) with :meth:`Sink.add`; :meth:`Sink.flush` writes
them all and clears the buffer in ``finally`` (a failed write is retried from Kafka, not from
memory: the caller did not commit the offsets). Offsets are committed by the caller only after
``flush`` returned, so delivery is at-least-once and :meth:`Sink.write` must be idempotent.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections import defaultdict

from schemas import Event

TopicPartition = tuple[str, int]


class Sink(ABC):
    """Buffers events per (topic, partition); writes them on :meth:`flush`."""

    def __init__(self) -> None:
        self._batches: defaultdict[TopicPartition, list[Event]] = defaultdict(list)

    def add(self, topic: str, partition: int, event: Event) -> None:
        """Buffer one decoded, valid event."""
        self._batches[(topic, partition)].append(event)

    def pending(self) -> int:
        """Events buffered and not yet written."""
        return sum(len(batch) for batch in self._batches.values())

    def flush(self) -> int:
        """Write every buffered event; the buffer is cleared whether or not it succeeded.

        Returns:
            The number of events written.
        """
        try:
            if not self._batches:
                return 0
            self.write(dict(self._batches))
            return sum(len(batch) for batch in self._batches.values())
        finally:
            self._batches.clear()

    @abstractmethod
    def write(self, batches: dict[TopicPartition, list[Event]]) -> None:
        """Write the batches (idempotently: the same events may come again)."""
