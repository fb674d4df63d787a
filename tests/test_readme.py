"""The README's quickstart is what CI runs."""

from __future__ import annotations

import re
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent


def _quickstart_commands() -> list[str]:
    readme = (REPO / "README.md").read_text()
    section = readme.split("## Quickstart", 1)[1].split("\n## ", 1)[0]
    block = re.search(r"```(?:bash|sh)?\n(.*?)```", section, re.DOTALL)
    assert block, "the quickstart has no code block"
    return [line for line in block[1].splitlines() if line and not line.startswith("#")]


def test_quickstart_is_exactly_two_commands() -> None:
    assert len(_quickstart_commands()) == 2


def test_ci_runs_the_second_quickstart_command_verbatim() -> None:
    ci = (REPO / ".ci" / "run").read_text().splitlines()
    assert _quickstart_commands()[1] in ci


def _testing_example() -> str:
    readme = (REPO / "README.md").read_text()
    section = readme.split("## Testing", 1)[1].split("\n## ", 1)[0]
    block = re.search(r"```python\n(.*?)```", section, re.DOTALL)
    assert block, "the Testing section has no python example"
    return block[1]


def test_the_testing_example_runs_as_written(kafka: dict[str, str], tmp_path: Path) -> None:
    namespace: dict[str, object] = {}
    exec(compile(_testing_example(), "README.md", "exec"), namespace)  # noqa: S102 - our README
    test = namespace["test_a_request_is_replayed"]
    assert callable(test)
    test(kafka, tmp_path)
