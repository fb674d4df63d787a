"""Event JSON codec speed: shadowlab's helpers against stdlib json + pydantic, same run.

    python bench/codec.py [--n 20000]

Prints events per second for encode and decode (validation included) and the ratio of
shadowlab's helpers (pydantic-core straight from/to bytes) to the baseline that goes
through Python dicts (``json.dumps(model_dump(mode="json"))`` / ``model_validate(json.loads)``).
"""

from __future__ import annotations

import argparse
import json
import time
from collections.abc import Callable
from typing import Any

from rich.console import Console
from rich.table import Table

from schemas import RequestEvent
from shadowlab.testing import sample_request


def _rate(fn: Callable[[], Any], n: int) -> float:
    fn()  # warm-up
    started = time.perf_counter()
    for _ in range(n):
        fn()
    return n / (time.perf_counter() - started)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=20_000, help="events per measurement")
    n = parser.parse_args().n
    event = sample_request()
    payload = event.to_json()

    rows = [
        (
            "encode",
            _rate(event.to_json, n),
            _rate(lambda: json.dumps(event.model_dump(mode="json")).encode(), n),
        ),
        (
            "decode + validate",
            _rate(lambda: RequestEvent.from_json(payload), n),
            _rate(lambda: RequestEvent.model_validate(json.loads(payload)), n),
        ),
    ]
    table = Table(title=f"RequestEvent JSON codec ({len(payload)} bytes, n={n})")
    for column in ("operation", "shadowlab events/s", "baseline events/s", "ratio"):
        table.add_column(column, justify="right")
    for name, ours, baseline in rows:
        table.add_row(name, f"{ours:,.0f}", f"{baseline:,.0f}", f"{ours / baseline:.2f}x")
    Console().print(table)


if __name__ == "__main__":
    main()
