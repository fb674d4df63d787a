"""docker-compose.yml: no engine runs here, so check it parses and agrees with the code."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest
import yaml

from shadowlab.core.settings import env_var_names, load_settings
from shadowlab.testing.apache_kafka import KAFKA_VERSION

REPO = Path(__file__).resolve().parent.parent
_DEFAULT = re.compile(r"\$\{(\w+):-([^}]*)\}")


@pytest.fixture(scope="module")
def compose() -> dict[str, Any]:
    data = yaml.safe_load((REPO / "docker-compose.yml").read_text())
    assert isinstance(data, dict)
    return data


def _env(service: dict[str, Any]) -> dict[str, str]:
    env = service.get("environment", {})
    if isinstance(env, list):
        env = dict(item.split("=", 1) for item in env)
    return {k: _DEFAULT.sub(lambda m: m[2], str(v)) for k, v in env.items()}


def _shadowlab_services(compose: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {n: s for n, s in compose["services"].items() if n.startswith("shadowlab")}


def test_services_are_kafka_clickhouse_and_shadowlab(compose: dict[str, Any]) -> None:
    assert {"kafka", "clickhouse"} <= set(compose["services"])
    assert _shadowlab_services(compose), "no shadowlab service"
    assert compose["services"]["kafka"]["image"].startswith("apache/kafka:")
    assert compose["services"]["clickhouse"]["image"].startswith("clickhouse/clickhouse-server:")
    for service in compose["services"].values():
        for volume in service.get("volumes", []):
            source = volume.split(":")[0]
            if source.startswith("./"):
                assert (REPO / source).is_file(), f"{source} is mounted but does not exist"
            else:
                assert source in compose["volumes"]


def test_kafka_runs_in_kraft_mode(compose: dict[str, Any]) -> None:
    env = _env(compose["services"]["kafka"])
    assert set(env["KAFKA_PROCESS_ROLES"].split(",")) == {"broker", "controller"}
    assert "ZOOKEEPER" not in " ".join(env)
    assert env["KAFKA_CONTROLLER_QUORUM_VOTERS"].startswith(env["KAFKA_NODE_ID"] + "@kafka:")


def test_kafka_is_the_release_the_tests_run_on(compose: dict[str, Any]) -> None:
    # --broker apache runs this release from Maven Central: production runs what was tested
    assert compose["services"]["kafka"]["image"] == f"apache/kafka:{KAFKA_VERSION}"


def test_every_shadowlab_variable_is_a_real_setting(compose: dict[str, Any]) -> None:
    known = env_var_names()
    for name, service in _shadowlab_services(compose).items():
        env = _env(service)
        unknown = {k for k in env if k.startswith("SHADOWLAB_")} - known
        assert env["SHADOWLAB_CONFIG"] in {v.split(":")[1] for v in service["volumes"]}
        assert not unknown, f"{name} sets variables no setting reads: {unknown}"


def test_shadowlab_environment_loads_as_settings(
    compose: dict[str, Any], monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.chdir(tmp_path)
    for service in _shadowlab_services(compose).values():
        mounts = {v.split(":")[1]: REPO / v.split(":")[0] for v in service.get("volumes", [])}
        for key, value in _env(service).items():
            monkeypatch.setenv(key, str(mounts.get(value, value)))
        settings = load_settings()
        assert settings.routes, "the mounted config defines no route"
        assert settings.kafka.bootstrap_servers
        assert settings.clickhouse.dsn is not None


def test_ports_agree_between_services_and_settings(compose: dict[str, Any]) -> None:
    services = compose["services"]
    kafka_env = _env(services["kafka"])
    advertised = {
        url.split("://")[0]: url.split("://")[1]
        for url in kafka_env["KAFKA_ADVERTISED_LISTENERS"].split(",")
    }
    listeners = {
        url.split("://")[0]: url.rsplit(":", 1)[1]
        for url in kafka_env["KAFKA_LISTENERS"].split(",")
    }
    published = {p.split(":")[0]: p.split(":")[1] for p in services["kafka"]["ports"]}
    assert advertised["HOST"].endswith(":" + listeners["HOST"])
    assert published[advertised["HOST"].rsplit(":", 1)[1]] == listeners["HOST"]
    ch_ports = {p.split(":")[1] for p in services["clickhouse"]["ports"]}
    ch_env = _env(services["clickhouse"])
    for name, service in _shadowlab_services(compose).items():
        env = _env(service)
        bootstrap = env["SHADOWLAB_KAFKA__BOOTSTRAP_SERVERS"]
        assert bootstrap in advertised.values(), f"{name}: {bootstrap} is not advertised"
        host, port = bootstrap.split(":")
        assert listeners["PLAINTEXT"] == port
        assert host == "kafka"
        dsn = urlsplit(env["SHADOWLAB_CLICKHOUSE__DSN"])
        assert dsn.hostname == "clickhouse"
        assert str(dsn.port) in ch_ports
        assert dsn.username == ch_env["CLICKHOUSE_USER"]
        assert dsn.password == ch_env["CLICKHOUSE_PASSWORD"]
        assert dsn.path.strip("/") == env["SHADOWLAB_CLICKHOUSE__DATABASE"]
        assert env["SHADOWLAB_CLICKHOUSE__DATABASE"] == ch_env["CLICKHOUSE_DB"]
        assert set(service["depends_on"]) == {"kafka", "clickhouse"}
        for dep in service["depends_on"].values():
            assert dep["condition"] == "service_healthy"
    for dep in ("kafka", "clickhouse"):
        assert "healthcheck" in services[dep]
    assert "8123" in " ".join(services["clickhouse"]["healthcheck"]["test"])


def test_shadowlab_image_is_built_from_the_dockerfile(compose: dict[str, Any]) -> None:
    dockerfile = (REPO / "Dockerfile").read_text()
    assert 'ENTRYPOINT ["shadowlab"]' in dockerfile
    for package in ("schemas", "producers", "processors", "sinks", "shadowlab"):
        assert f"COPY {package} ./{package}" in dockerfile
    for service in _shadowlab_services(compose).values():
        assert service["build"] == "."
        assert service["command"][0] in {"init", "run", "up", "db"}


def test_every_role_has_a_service_and_every_service_a_known_command(
    compose: dict[str, Any],
) -> None:
    from shadowlab.cli import ROLES

    commands = [s["command"] for s in _shadowlab_services(compose).values()]
    roles = [c[1] for c in commands if c[0] == "run"]
    assert sorted(roles) == sorted(ROLES)
    assert all(c[0] in ("run", "init", "up") for c in commands)
