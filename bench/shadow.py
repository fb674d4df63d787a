"""Shadow replay throughput against the ideal (concurrency ÷ latency), same run.

    python bench/shadow.py [--n 4000] [--concurrency 200] [--latency-ms 1000] [--batch 2000]

Starts an embedded broker and the model simulator in its own process at a fixed latency
(median = p95), produces N requests, runs the shadow role and times it from its first
consumed batch to its N-th result. Goal: efficiency >= 0.8 at concurrency 200.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import yaml
from rich.console import Console
from rich.progress import Progress
from rich.table import Table

from processors.shadow import ShadowRole
from shadowlab.core.kafka import ensure_topics
from shadowlab.core.settings import load_settings
from shadowlab.embedded.broker import EmbeddedBroker, free_port
from shadowlab.testing import produce, sample_request, wait_for_http


def _start_simulator(tmp: Path, latency_ms: float) -> tuple[subprocess.Popen[bytes], str]:
    config = tmp / "models.yaml"
    config.write_text(
        yaml.safe_dump(
            {
                "seed": 1,
                "models": [
                    {
                        "name": "cand",
                        "latency_median_ms": latency_ms,
                        "latency_p95_ms": latency_ms,
                        "ttft_fraction": 0.5,
                    }
                ],
            }
        )
    )
    port = free_port()
    process = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "shadowlab",
            "simulate",
            "--config",
            str(config),
            "--port",
            str(port),
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    base = f"http://127.0.0.1:{port}/v1"
    wait_for_http(f"{base}/models")
    return process, base


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=4000)
    parser.add_argument("--concurrency", type=int, default=200)
    parser.add_argument("--latency-ms", type=float, default=1000.0)
    parser.add_argument("--batch", type=int, default=2000, help="the role's batch_size")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp_dir, EmbeddedBroker() as broker:
        tmp = Path(tmp_dir)
        simulator, base_url = _start_simulator(tmp, args.latency_ms)
        try:
            conn = {"bootstrap.servers": broker.bootstrap_servers}
            settings = load_settings(
                data_dir=tmp,
                models=[
                    {"name": "prim", "base_url": base_url},
                    {"name": "cand", "base_url": base_url},
                ],
                routes=[
                    {
                        "name": "support-answer",
                        "primary": "prim",
                        # the engine's capacity: the candidate may use all of it
                        "candidates": [{"model": "cand", "max_concurrency": args.concurrency}],
                    }
                ],
                shadow={"concurrency": args.concurrency, "batch_size": args.batch},
            )
            ensure_topics(conn, settings.topics.partitions_of())
            produce(
                conn,
                settings.topics.requests,
                [sample_request(request_id=f"r{i}", model="prim") for i in range(args.n)],
                key_field="request_id",
            )
            role = ShadowRole(settings, conn, report_every_s=3600)
            thread = threading.Thread(target=role.run)
            thread.start()
            with Progress(console=Console(stderr=True)) as progress:
                task = progress.add_task("replaying", total=args.n)
                while role.counters.consumed == 0:
                    time.sleep(0.005)
                started = time.perf_counter()
                while role.counters.results < args.n:
                    progress.update(task, completed=role.counters.results)
                    time.sleep(0.01)
                elapsed = time.perf_counter() - started
            role.stop()
            thread.join(60)
        finally:
            simulator.terminate()
            simulator.wait(10)
    rate = args.n / elapsed
    ideal = args.concurrency / (args.latency_ms / 1000)
    table = Table(
        title=f"shadow replay (n={args.n}, concurrency {args.concurrency}, "
        f"latency {args.latency_ms:g} ms, {os.cpu_count()} cores)"
    )
    for column in ("replays/s", "ideal (concurrency ÷ latency)", "efficiency", "goal"):
        table.add_column(column, justify="right")
    table.add_row(f"{rate:,.0f}", f"{ideal:,.0f}", f"{rate / ideal:.2f}", "≥ 0.8")
    Console().print(table)


if __name__ == "__main__":
    main()
