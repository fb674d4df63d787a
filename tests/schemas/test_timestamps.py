"""Every event time is inside ClickHouse DateTime64(6)'s range, so it is stored exactly."""

from __future__ import annotations

import datetime as dt
import json

import pytest
from clickhouse_connect.driver.client import Client

from schemas import EventValidationError, RequestEvent
from schemas._base import TIMESTAMP_MAX, TIMESTAMP_MIN
from schemas.fast import BatchDecoder
from shadowlab.testing import sample_request
from sinks.clickhouse import insert_events, query_events

OUTSIDE = ["0001-01-01T00:00:00Z", "1850-06-01T00:00:00Z", "2300-01-01T00:00:00Z",
           "9999-12-31T23:59:59Z", "1899-12-31T23:59:59.999999Z"]  # fmt: skip


def _with_time(text: str) -> bytes:
    data = json.loads(sample_request().to_json())
    data["event_time"] = text
    return json.dumps(data).encode()


@pytest.mark.parametrize("text", OUTSIDE)
def test_an_event_time_outside_datetime64_is_refused_naming_the_field(text: str) -> None:
    with pytest.raises(EventValidationError) as caught:
        RequestEvent.from_json(_with_time(text))
    assert caught.value.fields == ["event_time"]
    decoded = BatchDecoder(RequestEvent).decode([_with_time(text)])
    assert decoded.count == 0
    assert [index for index, _ in decoded.rejected] == [0]


def test_the_edges_of_the_range_are_stored_and_read_back_exactly(
    clickhouse: Client, ch_db: str
) -> None:
    events = [
        sample_request(request_id="earliest", event_time=TIMESTAMP_MIN),
        sample_request(request_id="latest", event_time=TIMESTAMP_MAX),
        sample_request(request_id="offset", event_time="2299-12-31T23:59:59+00:00"),
    ]
    decoded = BatchDecoder(RequestEvent).decode([e.to_json() for e in events])
    assert decoded.count == 3
    insert_events(clickhouse, ch_db, events)
    stored = {e.request_id: e.event_time for e in query_events(clickhouse, ch_db, RequestEvent)}
    assert stored == {
        "earliest": TIMESTAMP_MIN,
        "latest": TIMESTAMP_MAX,
        "offset": dt.datetime(2299, 12, 31, 23, 59, 59, tzinfo=dt.UTC),
    }
