"""The house is one-way: every import in the packages points down a layer (README, Layout).

1. ``schemas``  2. ``shadowlab.core`` (and the ``shadowlab`` package's ``__init__``)
3. ``producers``, ``sinks``, ``processors`` (each imports only layers 1–2 and itself)
4. ``shadowlab.embedded``, then ``shadowlab.testing`` (which may use the embedded broker)
5. the app: every other ``shadowlab`` module (CLI, admin API, demo, report, rollout ops).

Every import counts: module level, inside functions (lazy) and under ``TYPE_CHECKING``.
"""

from __future__ import annotations

import ast
import subprocess
import sys
import warnings
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PACKAGES = ("schemas", "producers", "processors", "sinks", "shadowlab")
#: The app modules of the command line; the rest of the app never imports them.
CLI_PREFIX = "shadowlab.cli"


def layer(module: str) -> tuple[float, str]:
    """(rank, group) of a first-party module: a lower rank is a lower layer."""
    top = module.split(".", maxsplit=1)[0]
    if top == "schemas":
        return 1, "schemas"
    if module == "shadowlab" or module.startswith("shadowlab.core"):
        return 2, "core"
    if top in ("producers", "sinks", "processors"):
        return 3, top
    if module.startswith("shadowlab.embedded"):
        return 4, "embedded"
    if module.startswith("shadowlab.testing"):
        return 4.5, "testing"
    return 5, "app"


def module_name(path: Path) -> str:
    parts = list(path.relative_to(ROOT).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def imports(path: Path) -> list[tuple[int, str]]:
    """(line, module) of every first-party import in ``path``, wherever it stands."""
    package = module_name(path).split(".")
    if path.name != "__init__.py":
        package = package[:-1]
    found: list[tuple[int, str]] = []
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            found += [(node.lineno, alias.name) for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package[: len(package) - node.level + 1]
                target = ".".join([*base, *([node.module] if node.module else [])])
            else:
                target = node.module or ""
            found.append((node.lineno, target))
            # `from shadowlab import cli` imports the module shadowlab.cli
            found += [(node.lineno, f"{target}.{alias.name}") for alias in node.names]
    return [(line, name) for line, name in found if name.split(".")[0] in PACKAGES]


def sources() -> list[Path]:
    return sorted(p for package in PACKAGES for p in (ROOT / package).rglob("*.py"))


def violation(source: str, target: str) -> str | None:  # noqa: PLR0911 - one return a rule
    """Why ``source`` may not import ``target``, or None when the import points down."""
    if target.split(".", maxsplit=1)[0] not in PACKAGES:
        return None
    (rank, group), (target_rank, target_group) = layer(source), layer(target)
    if source == "shadowlab" and not target.startswith(("shadowlab.core", "schemas")):
        return "the shadowlab package's __init__ may import only shadowlab.core"
    if group == "app" and target_group == "app":
        cli_source = source.startswith(CLI_PREFIX) or source == "shadowlab.__main__"
        if target.startswith(CLI_PREFIX) and not cli_source:
            return "only CLI modules import CLI modules (domain code calls domain functions)"
        if target == "shadowlab.cli" and source != "shadowlab.__main__":
            return "cli_* modules share state through shadowlab.cli_state, not shadowlab.cli"
        return None
    if group == target_group or target_rank < rank:
        return None
    return f"layer {rank:g} ({group}) imports layer {target_rank:g} ({target_group})"


def test_every_import_points_down_a_layer() -> None:
    problems = []
    for path in sources():
        source = module_name(path)
        for line, target in imports(path):
            reason = violation(source, target)
            if reason is not None:
                problems.append(f"{path.relative_to(ROOT)}:{line} imports {target}: {reason}")
    assert not problems, "\n".join(problems)


@pytest.mark.parametrize(
    ("source", "target"),
    [
        ("producers.emitter", "shadowlab.testing.helpers"),
        ("processors.shadow", "shadowlab.testing.model_server"),
        ("processors.gates.role", "producers.router"),
        ("sinks.role", "processors.budget"),
        ("shadowlab.core.settings", "processors.gates.plan"),
        ("schemas.request", "shadowlab.core.errors"),
        ("shadowlab.embedded.stack", "shadowlab.testing"),
        ("shadowlab.demo", "shadowlab.cli_eval"),
        ("shadowlab.cli_eval", "shadowlab.cli"),
        ("shadowlab", "producers"),
    ],
)
def test_an_upward_import_is_refused(source: str, target: str) -> None:
    assert violation(source, target) is not None


@pytest.mark.parametrize(
    ("source", "target"),
    [
        ("producers.router", "shadowlab.core.flags"),
        ("processors.gates.role", "processors.gates.queries"),
        ("shadowlab.testing.pytest_plugin", "shadowlab.embedded.broker"),
        ("shadowlab.demo", "shadowlab.offline_eval"),
        ("shadowlab.cli_eval", "shadowlab.cli_state"),
        ("shadowlab.__main__", "shadowlab.cli"),
    ],
)
def test_a_downward_import_is_allowed(source: str, target: str) -> None:
    assert violation(source, target) is None


def test_lazy_and_type_checking_imports_are_seen() -> None:
    source = ROOT / "shadowlab" / "roles.py"
    names = {name for _line, name in imports(source)}
    assert "shadowlab.core.role" in names  # under TYPE_CHECKING
    assert "processors.join" in names  # inside build_role


def _loaded_after(statement: str) -> list[str]:
    code = f"{statement}; import sys; print('\\n'.join(sorted(sys.modules)))"
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, cwd=ROOT
    )
    return result.stdout.split()


def test_what_a_service_embeds_loads_no_app_or_stream_framework() -> None:
    heavy = {"yaml", "pydantic_settings", "aiohttp", "faust", "typer", "rich", "processors"}
    loaded = _loaded_after("import producers")
    assert sorted(m for m in loaded if m.split(".")[0] in heavy) == []


def test_the_shadow_role_loads_neither_the_simulator_nor_a_web_server() -> None:
    loaded = _loaded_after("import processors.shadow")
    assert "shadowlab.testing.model_server" not in loaded
    assert not [m for m in loaded if m.startswith("aiohttp.web")]


@pytest.mark.parametrize(
    ("old", "new", "name"),
    [
        ("shadowlab.settings", "shadowlab.core.settings", "load_settings"),
        ("shadowlab.exceptions", "shadowlab.core.errors", "ConfigError"),
        ("shadowlab.pytest_plugin", "shadowlab.testing.pytest_plugin", "broker"),
    ],
)
def test_old_import_paths_still_work_and_warn(old: str, new: str, name: str) -> None:
    sys.modules.pop(old, None)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        module = __import__(old, fromlist=[name])
    assert any(issubclass(w.category, DeprecationWarning) and new in str(w.message) for w in caught)
    assert getattr(module, name) is getattr(__import__(new, fromlist=[name]), name)
    sys.modules.pop(old, None)
