"""A small Sink interface, apart from its implementations (after quix-streams' sinks).

The role decodes each batch of a topic with the sink's :meth:`Sink.decoder` (msgspec fast
path, pydantic for the rest; see :mod:`schemas.fast`) and buffers the valid events with
:meth:`Sink.add`. Writing has two steps, so the role can prepare batch N+1 while batch N is
being written: :meth:`Sink.prepare` takes the buffered batches (the buffer is empty
afterwards, whatever happens) and encodes them, :meth:`Sink.write` stores an encoded payload
(it may be called again with the same payload after a failure). :meth:`Sink.flush` does both.
Offsets are committed by the caller only after the write returned, so delivery is
at-least-once and :meth:`Sink.write` must be idempotent.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections import defaultdict
from collections.abc import Sequence
from typing import Any, Generic, Literal, TypeVar

from schemas import Event
from schemas.fast import BatchDecoder, DecodedBatch

P = TypeVar("P")
#: A row's fate against what the sink stored: new, an exact copy (a retry), or a conflict.
Verdict = Literal["new", "retry", "conflict"]


class Sink(ABC, Generic[P]):
    """Buffers decoded batches per topic; :meth:`prepare` encodes them, :meth:`write` stores."""

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
        """Events buffered and not yet prepared."""
        return sum(b.count for batches in self._batches.values() for b in batches)

    def prepare(self) -> P | None:
        """Encode every buffered event for :meth:`write` (``None`` when there is none).

        The buffer is cleared whether or not encoding succeeded (a failed batch is retried
        from Kafka or from the caller's decoded batches, not from this buffer).
        """
        try:
            if not self._batches:
                return None
            return self.encode(dict(self._batches))
        finally:
            self._batches.clear()

    def flush(self) -> int:
        """Prepare and write every buffered event.

        Returns:
            The number of events written.
        """
        count = self.pending()
        prepared = self.prepare()
        if prepared is not None:
            self.write(prepared)
        return count

    def verdicts(self, events: DecodedBatch[Any], digests: Sequence[str]) -> list[Verdict]:
        """Whether each row is new, a retry of a stored event, or a conflicting duplicate.

        ``digests`` are the SHA-256 of each row's message bytes; a row repeating an earlier
        row of the same batch is judged against it. Nothing is remembered until
        :meth:`remember`. A sink that keeps no identities (this default) takes every row as
        new.
        """
        return ["new"] * events.count

    def remember(self, events: DecodedBatch[Any], digests: Sequence[str]) -> None:
        """Note ``events`` (found new by :meth:`verdicts`) as stored: later copies are retries."""

    def conflict(self, events: DecodedBatch[Any], row: int) -> Exception:
        """The dead-letter reason of a conflicting row (see :meth:`verdicts`)."""
        return ValueError(f"conflicting_duplicate: row {row} of {events.event_type.__name__}")

    @abstractmethod
    def encode(self, batches: dict[str, list[DecodedBatch[Any]]]) -> P:
        """Encode the batches for :meth:`write`."""

    @abstractmethod
    def write(self, prepared: P) -> None:
        """Store an encoded payload (idempotently: the same events may come again)."""
