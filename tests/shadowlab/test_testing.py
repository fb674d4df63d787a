"""The test helpers themselves: running a role, waiting on a condition, settings builders."""

from __future__ import annotations

import threading
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import pytest
from confluent_kafka import Consumer, TopicPartition

from shadowlab.core.settings import load_settings
from shadowlab.testing import (
    UNREACHABLE_URL,
    build_config,
    end_offsets,
    group_lag,
    is_running,
    make_settings,
    models_at,
    produce,
    route_config,
    run_until,
    running,
    sample_request,
    simulated_models,
    simulator_config,
    unique_topics,
    wait_until,
    write_config,
)
from shadowlab.testing.model_server import ModelProfile, SimulatorConfig


@dataclass
class Counters:
    loops: int = 0


@dataclass
class FakeRole:
    """Loops until stopped; fails after ``fail_after`` loops when set."""

    fail_after: int | None = None
    counters: Counters = field(default_factory=Counters)
    stopped: threading.Event = field(default_factory=threading.Event)

    def run(self) -> None:
        while not self.stopped.wait(0.01):
            self.counters.loops += 1
            if self.fail_after is not None and self.counters.loops >= self.fail_after:
                raise RuntimeError("the role broke")

    def stop(self) -> None:
        self.stopped.set()


def _until_ended(role: FakeRole) -> None:
    """Poll until the role's thread ended, without looking at its failure."""
    deadline = time.monotonic() + 30
    while is_running(role):
        assert time.monotonic() < deadline
        time.sleep(0.01)


def test_running_runs_the_role_until_the_block_ends() -> None:
    role = FakeRole()
    with running(role) as same:
        assert same is role
        wait_until(lambda: role.counters.loops >= 3, 30)
        assert is_running(role)
    assert role.stopped.is_set()
    assert not is_running(role)


def test_a_failing_role_is_raised_while_waiting_and_on_exit() -> None:
    role = FakeRole(fail_after=2)
    with pytest.raises(RuntimeError, match="the role broke"), running(role):
        wait_until(lambda: False, 60)  # would time out: the failure ends it first
    role = FakeRole(fail_after=2)
    with pytest.raises(RuntimeError, match="the role broke"), running(role):
        _until_ended(role)  # without wait_until: the failure is raised on exit
    with pytest.raises(RuntimeError, match="the role broke"):
        run_until(FakeRole(fail_after=2), lambda: False, timeout_s=60)


def test_the_role_failure_wins_over_the_block_failure() -> None:
    role = FakeRole(fail_after=1)

    def block() -> None:
        with running(role):
            _until_ended(role)
            raise KeyError("the block broke")

    with pytest.raises(RuntimeError, match="the role broke") as raised:
        block()
    assert isinstance(raised.value.__context__, KeyError)


def test_wait_until_times_out_with_what_it_waited_for() -> None:
    with pytest.raises(TimeoutError, match=r"timed out after 0.1 s: the answer"):
        wait_until(lambda: False, 0.1, what=lambda: "the answer")
    role = FakeRole()
    with pytest.raises(TimeoutError, match=r"Counters\(loops="):
        run_until(role, lambda: False, timeout_s=0.1)
    assert role.stopped.is_set()


def test_settings_builders_keep_every_given_value(tmp_path: Path) -> None:
    topics = unique_topics(suffix="abc", partitions=1)
    assert topics["requests"] == "requests-abc"
    assert topics["alerts"] == "alerts-abc"
    assert topics["partitions"] == 1
    assert unique_topics("requests", "shadow").keys() == {"requests", "shadow"}
    assert unique_topics()["requests"] != unique_topics()["requests"]
    data = build_config(
        tmp_path / "data",
        kafka={"bootstrap.servers": "127.0.0.1:9092", "client.id": "x"},
        models=models_at("http://sim/v1", "gpt-4", "gpt-4o", timeout_s=2),
        routes=[route_config("gpt-4", "gpt-4o", {"model": "ft-1", "sample_rate": 0.5})],
        topics=topics,
        shadow={"batch_size": 8},
    )
    assert data["data_dir"] == str(tmp_path / "data")
    assert data["kafka"] == {"bootstrap_servers": "127.0.0.1:9092"}
    assert data["models"][1] == {"name": "gpt-4o", "base_url": "http://sim/v1", "timeout_s": 2}
    assert data["routes"] == [
        {
            "name": "support-answer",
            "primary": "gpt-4",
            "candidates": [{"model": "gpt-4o"}, {"model": "ft-1", "sample_rate": 0.5}],
        }
    ]
    assert build_config(kafka="b:1") == {"kafka": {"bootstrap_servers": "b:1"}}
    data["models"] = models_at(UNREACHABLE_URL, "gpt-4", "gpt-4o", "ft-1")
    from_file = load_settings(write_config(tmp_path / "c" / "shadowlab.yaml", data))
    direct = make_settings(**{**data, "data_dir": tmp_path / "data"})
    assert from_file.model_dump() == direct.model_dump()
    assert direct.shadow.batch_size == 8
    assert direct.route("support-answer").candidates[1].sample_rate == 0.5
    assert direct.kafka.bootstrap_servers == "127.0.0.1:9092"


def test_simulator_config_takes_profiles_or_fields_and_overrides_seed_and_scale() -> None:
    config = simulator_config(
        [ModelProfile(name="a"), {"name": "b", "error_rate": 1.0}], seed=4, time_scale=0.5
    )
    assert (config.seed, config.time_scale) == (4, 0.5)
    assert [m.name for m in config.models] == ["a", "b"]
    assert config.models[1].error_rate == 1.0
    given = SimulatorConfig(seed=9, time_scale=0.1, models=[ModelProfile(name="c")])
    assert simulator_config(given) is given
    assert simulator_config(given, time_scale=0.2).seed == 9
    with simulated_models([{"name": "m"}], time_scale=0.01) as sim:
        assert sim.base_url.startswith("http://127.0.0.1:")
        assert sim.config.profile("m") is not None


def test_end_offsets_and_group_lag_count_every_message_on_the_embedded_broker(
    kafka: dict[str, str], topic_factory: Callable[..., str]
) -> None:
    topic = topic_factory("ends", 2)
    for size in (1, 10, 100, 1, 37):  # batches: ListOffsets on Tansu reports 113, not 149
        produce(kafka, topic, [sample_request() for _ in range(size)], "request_id")
    ends = end_offsets(kafka, [(topic, 0), (topic, 1)])
    assert sum(ends.values()) == 149
    group = f"lag-{uuid.uuid4().hex[:6]}"
    assert group_lag(kafka, group, ends) == 149
    consumer = Consumer({**kafka, "group.id": group, "enable.auto.commit": "false"})
    try:
        consumer.commit(offsets=[TopicPartition(topic, 0, ends[(topic, 0)])], asynchronous=False)
    finally:
        consumer.close()
    assert group_lag(kafka, group, ends) == ends[(topic, 1)]
