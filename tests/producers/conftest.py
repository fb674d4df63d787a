"""The producers' tests share an EventProducer on a fresh topic of the real broker."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from producers import EventProducer


@pytest.fixture
def events(
    kafka: dict[str, str], topic_factory: Callable[..., str], tmp_path: Path
) -> Iterator[EventProducer]:
    with EventProducer(kafka, tmp_path / "j", requests_topic=topic_factory("req")) as producer:
        yield producer
