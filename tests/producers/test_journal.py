"""The spill journal: FIFO on disk, survives reopen, drops a torn tail, empties when drained."""

from __future__ import annotations

import os
from pathlib import Path

from producers import Journal


def test_records_come_back_in_order_with_keys(tmp_path: Path) -> None:
    journal = Journal(tmp_path / "j")
    for i in range(10):
        journal.append("llm.requests", f"k{i}".encode(), f"v{i}".encode())
    journal.append("llm.feedback", None, b"no-key")
    records = journal.read(limit=100)
    assert [(r.topic, r.key, r.value) for r in records][:2] == [
        ("llm.requests", b"k0", b"v0"),
        ("llm.requests", b"k1", b"v1"),
    ]
    assert records[-1].key is None
    assert len(records) == 11


def test_confirm_moves_the_position_and_empties_when_drained(tmp_path: Path) -> None:
    journal = Journal(tmp_path / "j")
    for i in range(5):
        journal.append("t", b"k", str(i).encode())
    first = journal.read(limit=2)
    assert not journal.confirm(first[-1].end)
    assert [r.value for r in journal.read()] == [b"2", b"3", b"4"]
    assert journal.confirm(journal.read()[-1].end)
    assert journal.pending() == 0
    assert (tmp_path / "j").stat().st_size == 0


def test_unconfirmed_records_survive_a_reopen(tmp_path: Path) -> None:
    journal = Journal(tmp_path / "j", fsync="always")
    for i in range(5):
        journal.append("t", b"k", str(i).encode())
    journal.confirm(journal.read(limit=2)[-1].end)
    # no close(): as after a crash
    reopened = Journal(tmp_path / "j")
    assert [r.value for r in reopened.read()] == [b"2", b"3", b"4"]


def test_a_torn_last_record_is_dropped_on_open(tmp_path: Path) -> None:
    journal = Journal(tmp_path / "j")
    journal.append("t", b"k", b"whole")
    journal.append("t", b"k", b"torn-by-a-crash")
    journal.close()
    size = (tmp_path / "j").stat().st_size
    os.truncate(tmp_path / "j", size - 3)
    reopened = Journal(tmp_path / "j")
    assert [r.value for r in reopened.read()] == [b"whole"]
    reopened.append("t", b"k", b"after")
    assert [r.value for r in reopened.read()] == [b"whole", b"after"]


def test_a_corrupted_record_stops_the_scan(tmp_path: Path) -> None:
    journal = Journal(tmp_path / "j")
    journal.append("t", b"k", b"good")
    journal.append("t", b"k", b"flipped")
    journal.close()
    data = bytearray((tmp_path / "j").read_bytes())
    data[-1] ^= 0xFF
    (tmp_path / "j").write_bytes(bytes(data))
    assert [r.value for r in Journal(tmp_path / "j").read()] == [b"good"]
