"""The join's guards against events faust loses around a rebalance.

faust-streaming loses source events in two ways when a worker starts or a rebalance ends
(``tables/recovery.py``, faust-streaming/faust#216, #606); here they lost one request in forty
after a restart under CPU load, about one run in eight:

- It resumes the flow of events, and the source partitions, *before* it seeks them to their
  committed offsets, then resumes the flow once more. Each resume clears the streams' queues
  (``clear_on_resume``) although the consumer has already moved past what they held: those
  events are never delivered in this run. :class:`KeptTopic` is a source topic whose queue is
  not cleared; its events are delivered, at worst twice, and handling is idempotent
  (:mod:`processors.pairing`).
- An event that reaches a stream while the flow is suspended, or that carries an older
  consumer generation, is skipped; faust's pure-Python stream acks it, so the commit moves
  past it, and with its compiled stream the commit jumps a one-offset gap (#606) or stops
  for that partition (a wider one). :class:`OffsetGuard` keeps, per partition, the next
  offset the join must see: the committed offset at the first event of a consumer
  generation (or, for a partition the join handled in the generation just before, where it
  stopped), then the offset after each event handled. An event past it means faust skipped
  the ones in between; :func:`read_range` reads them straight from Kafka (a confluent-kafka
  consumer assigned to the partition, outside the group), the join handles them, in order,
  before that event, and acks them to faust so its commits go on.

What is left: a skipped event is found when a later event of its partition arrives (with no
further traffic on that partition it waits for the next one), and one the commit moved past
is forgotten if the partition then moves to another worker before a later event arrives.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import faust
from faust.types import tuples as faust_tuples
from mode.utils.queues import ThrowableQueue

from processors.offsets import RawEvent, committed_offsets, read_range

TP = tuple[str, int]


class KeptTopic(faust.Topic):
    """A faust source topic whose queued events survive the end of a rebalance."""

    @property
    def queue(self) -> ThrowableQueue[Any]:
        """The stream's queue, created without ``clear_on_resume`` (see the module doc)."""
        if self._queue is None:
            maxsize = self.maxsize
            if maxsize is None:
                maxsize = self.app.conf.stream_buffer_maxsize
            self._queue = self.app.FlowControlQueue(maxsize=maxsize, clear_on_resume=False)
        return self._queue


@dataclass
class OffsetGuard:
    """Per partition, the next offset the join must process (pure; no I/O).

    ``generation`` is the consumer generation the positions belong to: a rebalance starts a
    new one, and the positions are taken again from the committed offsets.
    """

    generation: int | None = None
    positions: dict[TP, int] = field(default_factory=dict)
    #: Partitions with an event handled in this generation: still this worker's in the next.
    handled: set[TP] = field(default_factory=set)

    def needs_start(self, generation: int) -> bool:
        """Whether ``generation`` is new: the committed offsets must be read again."""
        return generation != self.generation

    def start(self, generation: int, committed: Mapping[TP, int]) -> None:
        """Begin ``generation`` at the ``committed`` offsets (the next offset to read).

        A partition handled in the generation just before stays where the join stopped: no
        other worker owned it in between, so a commit past that point skipped events.
        """
        kept: dict[TP, int] = {}
        if self.generation is not None and generation == self.generation + 1:
            kept = {tp: self.positions[tp] for tp in self.handled}
        self.generation = generation
        self.positions = {**committed, **kept}
        self.handled = set()

    def skipped(self, tp: TP, offset: int) -> range:
        """The offsets before ``offset`` in ``tp`` the join has not seen (empty: none)."""
        position = self.positions.get(tp)
        if position is None or offset <= position:
            return range(0)
        return range(position, offset)

    def processed(self, tp: TP, offset: int) -> None:
        """``offset`` in ``tp`` was processed: the next one to expect is after it."""
        self.positions[tp] = max(self.positions.get(tp, 0), offset + 1)
        self.handled.add(tp)


def as_faust_message(raw: RawEvent, generation_id: int) -> faust_tuples.Message:
    """``raw`` as a faust message of ``generation_id`` (to ack it to faust's consumer)."""
    tp = faust_tuples.TP(raw.topic, raw.partition)
    return faust_tuples.Message(
        *tp,
        raw.offset,
        0.0,
        0,
        None,
        raw.key,
        raw.value,
        None,
        tp=tp,
        generation_id=generation_id,
    )


__all__ = [
    "KeptTopic",
    "OffsetGuard",
    "RawEvent",
    "as_faust_message",
    "committed_offsets",
    "read_range",
]
