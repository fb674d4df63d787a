"""``shadowlab run judge`` as a user runs it, and the judge's settings."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pytest

from schemas import Judgement
from shadowlab.core.errors import ConfigError
from shadowlab.core.settings import env_var_names, load_settings
from shadowlab.testing import (
    build_config,
    models_at,
    produce,
    read_events,
    route_config,
    sample_request,
    simulated_models,
    write_config,
)


def _config(
    tmp_path: Path,
    kafka: dict[str, str],
    topics: dict[str, str],
    base_url: str = "http://sim/v1",
    **judge: str,
) -> Path:
    return write_config(
        tmp_path / "shadowlab.yaml",
        build_config(
            tmp_path / "data",
            kafka=kafka,
            topics=topics,
            models=models_at(base_url, "gpt-4", "gpt-4o", "judge"),
            routes=[route_config("gpt-4")],
            judge={"group_id": f"judge-{tmp_path.name}", "sample_rate": 1.0, **judge},
        ),
    )


def test_run_judge_emits_judgements_and_stops_cleanly_on_sigterm(
    tmp_path: Path, kafka: dict[str, str], topic_factory: Callable[..., str]
) -> None:
    with simulated_models([{"name": "judge", "judge": True}], time_scale=0.01) as sim:
        topics = {
            "requests": topic_factory("req", 2),
            "shadow": topic_factory("shadow", 2),
            "judgements": topic_factory("judgements", 2),
            "flags": topic_factory("flags", 1),
        }
        config = _config(tmp_path, kafka, topics, sim.base_url, model="judge")
        events = [sample_request(request_id=f"cli-{i}") for i in range(3)]
        produce(kafka, topics["requests"], events, "request_id")
        env = {k: v for k, v in os.environ.items() if not k.startswith("SHADOWLAB_")}
        with subprocess.Popen(
            [sys.executable, "-m", "shadowlab", "--config", str(config), "run", "judge"],
            cwd=tmp_path,
            env={**env, "COLUMNS": "200"},
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        ) as judge:
            judgements = read_events(kafka, topics["judgements"], Judgement, count=3, timeout_s=60)
            judge.send_signal(signal.SIGTERM)
            out, err = judge.communicate(timeout=60)
    assert judge.returncode == 0, err
    assert "judge role: judge judges faithfulness of 100%" in out
    assert {(j.request_id, j.kind, j.score) for j in judgements} == {
        (e.request_id, "faithfulness", 5.0) for e in events
    }


def test_run_judge_without_a_judge_model_says_what_to_set(
    tmp_path: Path, kafka: dict[str, str], topic_factory: Callable[..., str]
) -> None:
    topics = {"requests": topic_factory("req", 1), "flags": topic_factory("flags", 1)}
    config = _config(tmp_path, kafka, topics)
    env = {k: v for k, v in os.environ.items() if not k.startswith("SHADOWLAB_")}
    done = subprocess.run(
        [sys.executable, "-m", "shadowlab", "--config", str(config), "run", "judge"],
        capture_output=True,
        text=True,
        cwd=tmp_path,
        env={**env, "COLUMNS": "200"},
        timeout=120,
        check=False,
    )
    assert done.returncode == 3
    assert "set judge.model (SHADOWLAB_JUDGE__MODEL)" in done.stderr
    assert "Traceback" not in done.stderr


def test_the_judge_model_must_be_a_configured_model(monkeypatch: pytest.MonkeyPatch) -> None:
    models = [{"name": "gpt-4", "base_url": "http://x/v1"}]
    with pytest.raises(ConfigError, match=r"judge.model 'gpt-5' is not in `models`"):
        load_settings(models=models, judge={"model": "gpt-5"})
    monkeypatch.setenv("SHADOWLAB_JUDGE__SAMPLE_RATE", "0.25")
    monkeypatch.setenv("SHADOWLAB_JUDGE__MODEL", "gpt-4")
    settings = load_settings(models=models)
    assert (settings.judge.model, settings.judge.sample_rate) == ("gpt-4", 0.25)
    for name in ("MODEL", "SAMPLE_RATE", "PAIRWISE_SAMPLE_RATE", "MAX_USD_PER_HOUR"):
        assert f"SHADOWLAB_JUDGE__{name}" in env_var_names()
