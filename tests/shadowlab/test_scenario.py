"""Demo scenarios and the demo's knowledge base (pure: no broker, no ClickHouse)."""

from __future__ import annotations

from pathlib import Path

import pytest
from typer.testing import CliRunner

from processors.evaluation.golden import is_correct
from processors.evaluation.runner import golden_messages
from shadowlab.cli import app
from shadowlab.core.errors import ConfigError
from shadowlab.demo_service import knowledge_base
from shadowlab.scenario import Scenario, builtin_scenarios, load_scenario
from shadowlab.testing.model_server import WRONG_ANSWER, ModelProfile, decide

EXPECTED = {
    "good": ("promoted", None),
    "latency-regression": ("rolled_back", "p95_latency"),
    "error-spike": ("rolled_back", "error_rate"),
    "unfaithful": ("rolled_back", "faithfulness"),
    "low-csat": ("rolled_back", "csat"),
    "accuracy-drop": ("rejected", "accuracy"),
}


def test_the_built_in_scenarios_are_the_six_the_demo_promises() -> None:
    found = {name: load_scenario(name) for name in builtin_scenarios()}
    assert {n: (s.expect, s.expect_gate) for n, s in found.items()} == EXPECTED
    assert all(s.name == n and s.description for n, s in found.items())


def test_good_yaml_spells_out_exactly_the_defaults() -> None:
    good = load_scenario("good")
    assert good == Scenario(name="good", description=good.description)


def test_each_regression_differs_from_good_only_in_its_candidate() -> None:
    good = load_scenario("good")
    for name in EXPECTED.keys() - {"good"}:
        scenario = load_scenario(name)
        assert scenario.candidate != good.candidate
        same = {"candidate", "name", "description", "expect", "expect_gate"}
        assert scenario.model_dump(exclude=same) == good.model_dump(exclude=same)


def test_a_scenario_file_with_a_bad_field_is_refused_naming_it(tmp_path: Path) -> None:
    path = tmp_path / "mine.yaml"
    path.write_text("name: mine\ntraffic: {requests_per_hour: -5}\n")
    with pytest.raises(ConfigError, match=r"mine\.yaml is invalid: traffic\.requests_per_hour"):
        load_scenario(str(path))


def test_an_unknown_scenario_lists_the_built_in_ones() -> None:
    with pytest.raises(ConfigError, match=r"no scenario 'nope'.*good.*low-csat"):
        load_scenario("nope")


def test_a_user_scenario_states_only_what_differs(tmp_path: Path) -> None:
    path = tmp_path / "slow-night.yaml"
    path.write_text("name: slow-night\ntraffic: {requests_per_hour: 60, diurnal_amplitude: 0}\n")
    scenario = load_scenario(str(path))
    assert scenario.traffic.requests_per_hour == 60
    assert scenario.primary == load_scenario("good").primary


def test_knowledge_base_is_deterministic_and_answerable_from_its_context() -> None:
    items = knowledge_base(40, seed=3)
    assert items == knowledge_base(40, seed=3)
    assert items != knowledge_base(40, seed=4)
    always = ModelProfile(name="m", p_correct=1.0, p_faithful=1.0)
    never = ModelProfile(name="m", p_correct=0.0, p_faithful=1.0)
    for item in items:
        request = {"messages": golden_messages(item)}
        right = decide(always, 0, request).answer
        assert right == item.expected
        assert is_correct(item, right, "keyword")
        assert decide(never, 0, request).answer == WRONG_ANSWER


def test_demo_list_shows_every_built_in_scenario() -> None:
    result = CliRunner().invoke(app, ["demo", "--list"], env={"COLUMNS": "200"})
    assert result.exit_code == 0, result.output
    for name, (outcome, _) in EXPECTED.items():
        assert name in result.output
        assert outcome in result.output
