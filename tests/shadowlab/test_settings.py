"""Settings: env prefix, nested env names, YAML file, .env, secrets never shown."""

from __future__ import annotations

import logging
from pathlib import Path

import pytest

from shadowlab.core.errors import ConfigError
from shadowlab.core.settings import Settings, env_var_names, load_settings


@pytest.fixture(autouse=True)
def _clean_env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    import os

    for name in list(os.environ):
        if name.startswith("SHADOWLAB_"):
            monkeypatch.delenv(name)
    monkeypatch.chdir(tmp_path)  # no stray .env


def test_defaults_use_the_embedded_stack() -> None:
    settings = load_settings()
    assert settings.kafka.bootstrap_servers is None
    assert settings.topics.requests == "llm.requests"
    assert settings.clickhouse.dsn_value(Path("/data")) == "chdb:///data/clickhouse"


def test_nested_env_var_sets_a_setting(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SHADOWLAB_KAFKA__BOOTSTRAP_SERVERS", "kafka:9092")
    monkeypatch.setenv("SHADOWLAB_TOPICS__PARTITIONS", "12")
    settings = load_settings()
    assert settings.kafka.librdkafka()["bootstrap.servers"] == "kafka:9092"
    assert settings.topics.partitions_of()["llm.requests"] == 12
    assert settings.topics.partitions_of()["routing.flags"] == 1


def test_yaml_file_is_read_and_env_wins_over_it(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    config = tmp_path / "shadowlab.yaml"
    config.write_text(
        "kafka:\n  bootstrap_servers: from-yaml:9092\n"
        "models:\n  - {name: gpt-4, base_url: 'http://sim:8000/v1', price_input_per_1k: 0.03}\n"
        "routes:\n  - {name: faq, primary: gpt-4}\n"
    )
    settings = load_settings(config)
    assert settings.kafka.bootstrap_servers == "from-yaml:9092"
    assert settings.model("gpt-4").price_input_per_1k == 0.03
    assert settings.route("faq").primary == "gpt-4"
    monkeypatch.setenv("SHADOWLAB_KAFKA__BOOTSTRAP_SERVERS", "from-env:9092")
    assert load_settings(config).kafka.bootstrap_servers == "from-env:9092"


def test_dotenv_file_is_read(tmp_path: Path) -> None:
    (tmp_path / ".env").write_text("SHADOWLAB_CLICKHOUSE__DATABASE=analytics\n")
    assert load_settings().clickhouse.database == "analytics"


def test_config_file_from_env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    config = tmp_path / "c.yaml"
    config.write_text("log_level: DEBUG\n")
    monkeypatch.setenv("SHADOWLAB_CONFIG", str(config))
    assert load_settings().log_level == "DEBUG"


def test_invalid_value_names_setting_and_env_var(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SHADOWLAB_TOPICS__PARTITIONS", "0")
    with pytest.raises(
        ConfigError, match=r"topics\.partitions \(env SHADOWLAB_TOPICS__PARTITIONS\)"
    ):
        load_settings()


def test_missing_and_broken_config_files_are_clear(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="does not exist"):
        load_settings(tmp_path / "nope.yaml")
    broken = tmp_path / "broken.yaml"
    broken.write_text("kafka: [unclosed\n")
    with pytest.raises(ConfigError, match="not valid YAML"):
        load_settings(broken)


def test_route_with_unknown_model_is_refused() -> None:
    with pytest.raises(ConfigError, match="uses model 'gpt-5', which is not in `models`"):
        load_settings(
            models=[{"name": "gpt-4", "base_url": "http://x/v1"}],
            routes=[{"name": "faq", "primary": "gpt-4", "candidates": [{"model": "gpt-5"}]}],
        )


def test_unknown_model_and_route_lookups_say_what_exists() -> None:
    settings = load_settings(models=[{"name": "gpt-4", "base_url": "http://x/v1"}])
    with pytest.raises(ConfigError, match=r"unknown model 'gpt-5' \(known: gpt-4\)"):
        settings.model("gpt-5")
    with pytest.raises(ConfigError, match="unknown route 'faq'"):
        settings.route("faq")


def test_secrets_never_appear_in_repr_dump_or_logs(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    monkeypatch.setenv("SHADOWLAB_KAFKA__SASL_PASSWORD", "kafka-s3cret")
    monkeypatch.setenv("SHADOWLAB_CLICKHOUSE__DSN", "http://app:ch-s3cret@ch:8123/db")
    settings = load_settings()
    shown = [
        repr(settings),
        str(settings),
        settings.model_dump_json(),
        settings.clickhouse.redacted_dsn(Path(".")),
    ]
    with caplog.at_level(logging.INFO):
        logging.getLogger("test").info("settings: %s", settings)
    shown.append(caplog.text)
    for text in shown:
        assert "kafka-s3cret" not in text
        assert "ch-s3cret" not in text
    assert settings.clickhouse.redacted_dsn(Path(".")) == "http://app:***@ch:8123/db"
    # the real value reaches the client library only through the explicit accessors
    assert settings.kafka.librdkafka("b:9092")["sasl.password"] == "kafka-s3cret"


def test_librdkafka_dict_uses_librdkafka_names(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SHADOWLAB_KAFKA__SECURITY_PROTOCOL", "SASL_SSL")
    monkeypatch.setenv("SHADOWLAB_KAFKA__SASL_MECHANISM", "SCRAM-SHA-512")
    monkeypatch.setenv("SHADOWLAB_KAFKA__SASL_USERNAME", "svc")
    monkeypatch.setenv("SHADOWLAB_KAFKA__SASL_PASSWORD", "pw")
    monkeypatch.setenv("SHADOWLAB_KAFKA__EXTRA", '{"socket.keepalive.enable": "true"}')
    conf = load_settings().kafka.librdkafka("broker:9093")
    assert conf == {
        "bootstrap.servers": "broker:9093",
        "client.id": "shadowlab",
        "security.protocol": "SASL_SSL",
        "sasl.mechanism": "SCRAM-SHA-512",
        "sasl.username": "svc",
        "sasl.password": "pw",
        "socket.keepalive.enable": "true",
    }
    kwargs = load_settings().kafka.aiokafka("broker:9093")
    assert kwargs["sasl_plain_password"] == "pw"
    assert kwargs["bootstrap_servers"] == ["broker:9093"]


def test_no_broker_address_is_a_clear_error() -> None:
    with pytest.raises(ConfigError, match="SHADOWLAB_KAFKA__BOOTSTRAP_SERVERS"):
        load_settings().kafka.librdkafka()


def test_model_api_key_comes_from_the_named_env_var(monkeypatch: pytest.MonkeyPatch) -> None:
    settings = load_settings(
        models=[{"name": "gpt-4", "base_url": "https://api.example/v1", "api_key_env": "OAI_KEY"}]
    )
    with pytest.raises(ConfigError, match="OAI_KEY is not set"):
        settings.model("gpt-4").api_key()
    monkeypatch.setenv("OAI_KEY", "sk-abc")
    key = settings.model("gpt-4").api_key()
    assert key is not None
    assert key.get_secret_value() == "sk-abc"
    assert "sk-abc" not in repr(key)


def test_settings_are_frozen() -> None:
    settings = load_settings()
    with pytest.raises(ValueError, match="frozen"):
        settings.log_level = "DEBUG"  # type: ignore[misc]


def test_env_var_names_cover_every_field() -> None:
    names = env_var_names()
    assert "SHADOWLAB_KAFKA__BOOTSTRAP_SERVERS" in names
    assert "SHADOWLAB_CLICKHOUSE__DSN" in names
    assert "SHADOWLAB_DATA_DIR" in names
    for section in ("kafka", "topics", "clickhouse"):
        model = Settings.model_fields[section].annotation
        assert model is not None
        for field in model.model_fields:  # type: ignore[union-attr]
            assert f"SHADOWLAB_{section.upper()}__{field.upper()}" in names
