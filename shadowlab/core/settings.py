"""shadowlab's settings: pydantic-settings models, frozen, from env, ``.env`` and YAML.

Sources, highest priority first: keyword arguments, environment variables
(``SHADOWLAB_`` prefix, ``__`` between nested names, e.g.
``SHADOWLAB_KAFKA__BOOTSTRAP_SERVERS``), a ``.env`` file in the working directory, then the
YAML file given with ``--config`` (or ``SHADOWLAB_CONFIG``). Secrets are ``SecretStr``: they
print as ``**********`` and reach a client library only through :meth:`KafkaSettings.librdkafka`
or :meth:`ClickHouseSettings.dsn_value`.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Annotated, Any, Literal, Self
from urllib.parse import urlsplit, urlunsplit

import yaml
from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    SecretStr,
    ValidationError,
    model_validator,
)
from pydantic_settings import (
    BaseSettings,
    PydanticBaseSettingsSource,
    SettingsConfigDict,
    YamlConfigSettingsSource,
)

from schemas._base import ModelName, RouteName
from schemas.rollout import Stage
from shadowlab.core.admission import EventTimeBand
from shadowlab.core.errors import ConfigError
from shadowlab.core.flags_signing import FlagsKeys
from shadowlab.core.plan import GateOverride, RolloutSettings, route_gates

ENV_PREFIX = "SHADOWLAB_"
NESTED_DELIMITER = "__"


class _Section(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid", populate_by_name=True)


class KafkaSettings(_Section):
    """Kafka connection. Fields with a dotted alias are passed through to librdkafka as is.

    ``bootstrap_servers`` empty means: start the embedded broker (Tansu) on a free port.
    """

    bootstrap_servers: str | None = Field(None, serialization_alias="bootstrap.servers")
    client_id: str = Field("shadowlab", serialization_alias="client.id")
    security_protocol: Literal["PLAINTEXT", "SSL", "SASL_PLAINTEXT", "SASL_SSL"] = Field(
        "PLAINTEXT", serialization_alias="security.protocol"
    )
    sasl_mechanism: Literal["PLAIN", "SCRAM-SHA-256", "SCRAM-SHA-512", "OAUTHBEARER"] | None = (
        Field(None, serialization_alias="sasl.mechanism")
    )
    sasl_username: str | None = Field(None, serialization_alias="sasl.username")
    sasl_password: SecretStr | None = Field(None, serialization_alias="sasl.password")
    ssl_ca_location: str | None = Field(None, serialization_alias="ssl.ca.location")
    ssl_certificate_location: str | None = Field(
        None, serialization_alias="ssl.certificate.location"
    )
    ssl_key_location: str | None = Field(None, serialization_alias="ssl.key.location")
    ssl_key_password: SecretStr | None = Field(None, serialization_alias="ssl.key.password")
    #: Any other librdkafka property, e.g. ``{"socket.keepalive.enable": "true"}``.
    extra: dict[str, str] = Field(default_factory=dict, exclude=True)

    def librdkafka(self, bootstrap_servers: str | None = None) -> dict[str, str]:
        """Return the librdkafka config dict (secrets revealed: pass it only to the client).

        Args:
            bootstrap_servers: the broker address to use when the setting is empty
                (the embedded broker's address).

        Raises:
            ConfigError: when no broker address is known.
        """
        servers = self.bootstrap_servers or bootstrap_servers
        if not servers:
            raise ConfigError(
                "no Kafka broker address: set SHADOWLAB_KAFKA__BOOTSTRAP_SERVERS "
                "(host:port[,host:port]) or start the embedded stack"
            )
        conf: dict[str, str] = {}
        for key, value in self.model_dump(by_alias=True, exclude_none=True).items():
            if isinstance(value, SecretStr):
                conf[key] = value.get_secret_value()
            else:
                conf[key] = str(value)
        conf["bootstrap.servers"] = servers
        conf.update(self.extra)
        return conf

    def aiokafka(self, bootstrap_servers: str | None = None) -> dict[str, Any]:
        """Return the same connection as keyword arguments for aiokafka (and so faust)."""
        conf = self.librdkafka(bootstrap_servers)
        kwargs: dict[str, Any] = {
            "bootstrap_servers": conf["bootstrap.servers"].split(","),
            "client_id": self.client_id,
            "security_protocol": self.security_protocol,
        }
        if self.sasl_mechanism:
            kwargs["sasl_mechanism"] = self.sasl_mechanism
            kwargs["sasl_plain_username"] = self.sasl_username
            if self.sasl_password is not None:
                kwargs["sasl_plain_password"] = self.sasl_password.get_secret_value()
        return kwargs


class TopicSettings(_Section):
    """Topic names and partition counts (partitions cannot be added later: choose up front)."""

    requests: str = "llm.requests"
    shadow: str = "llm.shadow"
    comparisons: str = "llm.comparisons"
    judgements: str = "llm.judgements"
    feedback: str = "llm.feedback"
    flags: str = "routing.flags"
    decisions: str = "gate.decisions"
    alerts: str = "gate.alerts"
    #: Partitions of every event topic (requests, shadow, comparisons, ...).
    partitions: Annotated[int, Field(ge=1, le=1024)] = 4
    #: routing.flags is read whole by every Router: one partition keeps it ordered.
    flags_partitions: Annotated[int, Field(ge=1, le=64)] = 1
    dlq_partitions: Annotated[int, Field(ge=1, le=64)] = 1
    #: Replicas of each topic shadowlab creates; empty: the broker's
    #: ``default.replication.factor`` (3 on a production cluster, 1 on one node).
    replication_factor: Annotated[int, Field(ge=1, le=16)] | None = None
    #: ``retention.ms`` of the event topics and DLQs shadowlab creates; empty: the broker's
    #: default (7 days on Apache Kafka). ``routing.flags`` is compacted instead, never expired.
    retention_ms: Annotated[int, Field(ge=60_000)] | None = None
    #: ``<topic><dlq_suffix>`` holds what could not be decoded or validated.
    dlq_suffix: str = ".dlq"

    def replication(self) -> int:
        """The replication factor to create topics with (-1: the broker's default)."""
        return self.replication_factor or -1

    def configs_of(self) -> dict[str, dict[str, str]]:
        """Topic configs at creation, by topic name.

        ``routing.flags`` compacted (the latest flags of every route are kept, older
        versions go), the others with ``retention_ms`` when set.
        """
        out: dict[str, dict[str, str]] = {}
        for name in self.partitions_of():
            if name == self.flags:
                out[name] = {"cleanup.policy": "compact", "min.cleanable.dirty.ratio": "0.1"}
            elif self.retention_ms is not None:
                out[name] = {"retention.ms": str(self.retention_ms)}
        return out

    def event_topics(self) -> dict[str, str]:
        """Return ``{key: topic name}`` for every event topic, e.g. ``{"requests": ...}``."""
        return {
            "requests": self.requests,
            "shadow": self.shadow,
            "comparisons": self.comparisons,
            "judgements": self.judgements,
            "feedback": self.feedback,
            "flags": self.flags,
            "decisions": self.decisions,
            "alerts": self.alerts,
        }

    def partitions_of(self) -> dict[str, int]:
        """Return ``{topic name: partitions}`` for every topic shadowlab creates, DLQs included."""
        out: dict[str, int] = {}
        for key, name in self.event_topics().items():
            out[name] = self.flags_partitions if key == "flags" else self.partitions
            out[name + self.dlq_suffix] = self.dlq_partitions
        return out


class ClickHouseSettings(_Section):
    """ClickHouse connection: empty ``dsn`` means the in-process engine under the data dir.

    ``dsn`` is ``chdb:///path`` (embedded) or ``http(s)://user:password@host:8123/db``.
    """

    dsn: SecretStr | None = None
    database: Annotated[str, Field(pattern=r"^[A-Za-z_][A-Za-z0-9_]*$")] = "shadowlab"

    def dsn_value(self, data_dir: Path) -> str:
        """Return the DSN to connect with (secret revealed: pass it only to the client)."""
        if self.dsn is None:
            return f"chdb://{(data_dir / 'clickhouse').resolve()}"
        return self.dsn.get_secret_value()

    def redacted_dsn(self, data_dir: Path) -> str:
        """Return the DSN with any password replaced by ``***``, fit for logs."""
        dsn = self.dsn_value(data_dir)
        parts = urlsplit(dsn)
        if parts.password is None:
            return dsn
        host = parts.hostname or ""
        port = f":{parts.port}" if parts.port else ""
        netloc = f"{parts.username}:***@{host}{port}"
        return urlunsplit(parts._replace(netloc=netloc))


class ModelEndpoint(_Section):
    """An OpenAI-compatible model endpoint and its price."""

    name: ModelName
    base_url: Annotated[str, Field(pattern=r"^https?://")]
    #: The name of the environment variable holding the API key (never the key itself).
    api_key_env: str | None = None
    #: The model name the endpoint expects, when it differs from ``name``.
    upstream_name: str | None = None
    price_input_per_1k: Annotated[float, Field(ge=0)] = 0.0
    price_output_per_1k: Annotated[float, Field(ge=0)] = 0.0
    #: A deadline for the whole call (first byte to last chunk), not only between reads.
    timeout_s: Annotated[float, Field(gt=0, le=600)] = 30.0
    #: The provider's limits, as the shadow role paces its replays to them (it waits, it
    #: does not drop): requests and tokens (prompt estimate + completion limit) per minute.
    max_rpm: Annotated[float, Field(gt=0)] | None = None
    max_tpm: Annotated[float, Field(gt=0)] | None = None
    #: The most tokens a call may produce when the request sets no limit: a call whose
    #: usage the server did not report is counted in budgets at this worst case.
    max_output_tokens: Annotated[int, Field(ge=1, le=10_000_000)] = 4096

    def cost(self, prompt_tokens: float, completion_tokens: float) -> float:
        """US dollars for a call with these token counts."""
        return (
            prompt_tokens * self.price_input_per_1k + completion_tokens * self.price_output_per_1k
        ) / 1000

    def worst_case_cost(self, prompt_tokens: float, completion_limit: int | None) -> float:
        """US dollars a call of unknown usage is counted at: its whole completion limit."""
        return self.cost(prompt_tokens, completion_limit or self.max_output_tokens)

    def api_key(self) -> SecretStr | None:
        """Read the API key from the environment variable named by ``api_key_env``.

        Raises:
            ConfigError: when ``api_key_env`` is set but the variable is not.
        """
        if self.api_key_env is None:
            return None
        value = os.environ.get(self.api_key_env)
        if not value:
            raise ConfigError(
                f"model {self.name!r}: environment variable {self.api_key_env} is not set; "
                "export it with the endpoint's API key"
            )
        return SecretStr(value)


class CandidateConfig(_Section):
    """A candidate model shadowed on a route, the share replayed to it, and its budgets."""

    model: ModelName
    sample_rate: Annotated[float, Field(ge=0, le=1)] = 1.0
    #: Spend cap over the last hour; past it the candidate is sampled down (and logged).
    max_usd_per_hour: Annotated[float, Field(gt=0)] | None = None
    #: Replays per second cap (token bucket).
    max_rps: Annotated[float, Field(gt=0)] | None = None
    #: Replays in flight to this candidate at once: a backlog is not replayed as a burst
    #: that the primary never saw (its latency would be measured under that load).
    max_concurrency: Annotated[int, Field(ge=1, le=10_000)] = 8


class ShadowSettings(_Section):
    """The shadow replay role."""

    group_id: str = "shadowlab-shadow"
    #: Replays in flight at once (all candidates together).
    concurrency: Annotated[int, Field(ge=1, le=10_000)] = 64
    #: Replay live traffic at the pace it arrived: within a batch whose newest request was
    #: produced less than this many seconds ago, each replay starts at its request's
    #: arrival offset (Kafka timestamps) instead of all at once; 0 turns it off. An older
    #: backlog is replayed as fast as ``max_concurrency`` and the endpoints' limits allow.
    pace_window_s: Annotated[float, Field(ge=0, le=3600)] = 30.0
    #: Requests consumed per batch; offsets are committed after a batch's results are out.
    batch_size: Annotated[int, Field(ge=1, le=100_000)] = 500
    max_attempts: Annotated[int, Field(ge=1, le=10)] = 3
    backoff_base_s: Annotated[float, Field(ge=0)] = 0.2
    #: Longest Retry-After honoured before giving up on a 429.
    max_retry_after_s: Annotated[float, Field(ge=0)] = 30.0
    #: Count a final 429 as a model error (default: recorded as ``rate_limited``, skipped).
    rate_limit_is_error: bool = False
    #: (request_id, candidate) pairs remembered so a redelivered request is not paid twice.
    dedupe_window: Annotated[int, Field(ge=0)] = 200_000
    #: A candidate's answer longer than this (characters) is stored cut, with a marker and
    #: its length, so every result fits Kafka's 1 MB message limit (4 bytes a character).
    max_answer_chars: Annotated[int, Field(ge=1_000, le=200_000)] = 100_000


class JudgeSettings(_Section):
    """The online judge role (``shadowlab run judge``): what is judged, how often, at what cost."""

    #: The judge model: one of ``models`` (configured like any other model). Required by
    #: ``shadowlab run judge``.
    model: ModelName | None = None
    group_id: str = "shadowlab-judge"
    #: Share of canary- and primary-arm requests whose faithfulness is judged (by request id).
    sample_rate: Annotated[float, Field(ge=0, le=1)] = 0.1
    #: Share of requests whose shadow results are judged against the primary answer.
    pairwise_sample_rate: Annotated[float, Field(ge=0, le=1)] = 0.1
    #: Judge spend cap over the last hour; past it judging is sampled down (and logged).
    max_usd_per_hour: Annotated[float, Field(gt=0)] | None = None
    #: Judgements in progress at once (a pairwise one makes two calls at once).
    concurrency: Annotated[int, Field(ge=1, le=10_000)] = 16
    #: Events consumed per batch; offsets are committed after a batch's judgements are out.
    batch_size: Annotated[int, Field(ge=1, le=100_000)] = 200
    #: Retries of a failed judge call (the ``openai`` client's, with backoff and Retry-After).
    max_retries: Annotated[int, Field(ge=0, le=10)] = 2
    #: How long a sampled request waits for its shadow results (and a result for its
    #: request), and how many may wait at once.
    pending_ttl_s: Annotated[float, Field(gt=0, le=86_400)] = 600.0
    pending_limit: Annotated[int, Field(ge=1, le=10_000_000)] = 100_000
    #: Events per partition re-read at start (before the committed offset) to rebuild the
    #: pairs that were waiting when the role stopped (0: start with none waiting).
    rebuild_tail: Annotated[int, Field(ge=0, le=1_000_000)] = 5_000
    #: Answers at or above this token F1 are a pairwise tie without asking the judge.
    near_identical_f1: Annotated[float, Field(ge=0, le=1)] = 0.95
    #: Rollout stages in which each kind is judged (a route without flags: always).
    faithfulness_stages: tuple[Stage, ...] = ("canary",)
    pairwise_stages: tuple[Stage, ...] = ("shadow", "canary")
    #: Judgements remembered so a redelivered event is not paid for twice.
    dedupe_window: Annotated[int, Field(ge=0)] = 200_000


class RouteConfig(_Section):
    """A route: one logical use of an LLM in the service (e.g. ``support-answer``)."""

    name: RouteName
    primary: ModelName
    candidates: list[CandidateConfig] = Field(default_factory=list)
    #: Changes to the rollout's default gates, by ``stage.name`` or name, e.g.
    #: ``{"canary.p95_latency": {"threshold": 1.2}}``.
    gates: dict[str, GateOverride] = Field(default_factory=dict)


class SinkSettings(_Section):
    """The ClickHouse sink role."""

    group_id: str = "shadowlab-sink"
    #: Flush when this many events are buffered ...
    batch_size: Annotated[int, Field(ge=1, le=1_000_000)] = 5000
    #: ... or when the oldest buffered event has waited this long.
    max_wait_s: Annotated[float, Field(gt=0, le=600)] = 1.0
    #: Backoff while ClickHouse refuses writes (doubles up to the max).
    retry_base_s: Annotated[float, Field(gt=0)] = 0.5
    retry_max_s: Annotated[float, Field(gt=0)] = 30.0


class JoinSettings(_Section):
    """The join role (faust): requests ⋈ shadow results → comparisons."""

    #: The faust app id, which is also its consumer group and the prefix of its changelog.
    group_id: str = "shadowlab-join"
    #: Wall-clock seconds a request waits for its candidates before they count as missing.
    window_s: Annotated[float, Field(gt=0, le=86_400)] = 60.0
    #: A result whose request has not arrived after this long is dropped as an orphan.
    orphan_window_s: Annotated[float, Field(gt=0, le=7 * 86_400)] = 600.0
    #: How long a finished request is remembered, so a redelivered event changes nothing.
    retention_s: Annotated[float, Field(gt=0, le=7 * 86_400)] = 600.0
    #: How often open requests are checked against the window.
    tick_s: Annotated[float, Field(gt=0, le=60)] = 1.0
    #: Messages per producer batch (faust's ``producer_max_batch_size``). Empty: 1 on the
    #: embedded broker (its offset bug breaks table recovery otherwise), faust's default on
    #: Apache Kafka.
    producer_max_batch_size: Annotated[int, Field(ge=1)] | None = None


class AdminSettings(_Section):
    """The admin HTTP API of ``shadowlab up``: flags, rollout commands, gates, health, metrics.

    Reads (``GET``) are open to whoever reaches ``host:port``; changes (``POST``) need
    ``Authorization: Bearer <token>``. Without a token, changes are refused (403).
    """

    #: The address to bind; the loopback by default (put a proxy in front to expose it).
    host: str = "127.0.0.1"
    #: The port to listen on (0: a free one, printed in the banner).
    port: Annotated[int, Field(ge=0, le=65_535)] = 8790
    #: The bearer token that changes need (``SHADOWLAB_ADMIN__TOKEN``), at least 16
    #: characters; never logged.
    token: SecretStr | None = None


class AdmissionSettings(_Section):
    """The event times every role admits (:mod:`shadowlab.core.admission`)."""

    #: How far ahead of a role's wall clock an event time may be.
    max_ahead_s: Annotated[float, Field(ge=0, le=86_400)] = 300.0
    #: How old an event time may be (None: any age; set it to the data's retention).
    max_age_s: Annotated[float, Field(gt=0)] | None = None

    def band(self) -> EventTimeBand:
        """The band as the roles check it."""
        return EventTimeBand(self.max_ahead_s, self.max_age_s)


class FlagsSettings(_Section):
    """Authentic routing flags (:mod:`shadowlab.core.flags_signing`).

    With a key, writers sign every flags message and readers install only signed ones.
    """

    #: The HMAC key writers sign with (``SHADOWLAB_FLAGS__SIGNING_KEY``); readers accept it.
    signing_key: Annotated[SecretStr, Field(min_length=16)] | None = None
    #: Other keys whose signatures readers accept: the old key during a rotation
    #: (``SHADOWLAB_FLAGS__ACCEPTED_KEYS``, a JSON list).
    accepted_keys: list[Annotated[SecretStr, Field(min_length=16)]] = Field(default_factory=list)
    #: The largest version step a reader installs past the route's installed version.
    max_version_step: Annotated[int, Field(ge=1)] = 1000

    def keys(self) -> FlagsKeys:
        """The keys to sign and check flags with."""
        return FlagsKeys.of(self.signing_key, self.accepted_keys)


class Settings(BaseSettings):
    """Every shadowlab setting. Build with :func:`load_settings` to honour ``--config``."""

    model_config = SettingsConfigDict(
        env_prefix=ENV_PREFIX,
        env_nested_delimiter=NESTED_DELIMITER,
        env_file=".env",
        extra="forbid",
        frozen=True,
        yaml_file=None,
    )

    #: Where embedded state lives: the chDB database, broker logs, caches and journals.
    data_dir: Path = Path(".shadowlab")
    log_level: Literal["DEBUG", "INFO", "WARNING", "ERROR"] = "INFO"
    kafka: KafkaSettings = KafkaSettings()
    topics: TopicSettings = TopicSettings()
    clickhouse: ClickHouseSettings = ClickHouseSettings()
    models: list[ModelEndpoint] = Field(default_factory=list)
    routes: list[RouteConfig] = Field(default_factory=list)
    shadow: ShadowSettings = ShadowSettings()
    sink: SinkSettings = SinkSettings()
    join: JoinSettings = JoinSettings()
    judge: JudgeSettings = JudgeSettings()
    rollout: RolloutSettings = RolloutSettings()
    admin: AdminSettings = AdminSettings()
    flags: FlagsSettings = FlagsSettings()
    admission: AdmissionSettings = AdmissionSettings()

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        """Add the YAML file (lowest priority) to pydantic-settings' default sources."""
        return (
            init_settings,
            env_settings,
            dotenv_settings,
            YamlConfigSettingsSource(settings_cls),
            file_secret_settings,
        )

    @model_validator(mode="after")
    def _route_gates_exist(self) -> Self:
        for route in self.routes:
            try:
                route_gates(self.rollout, route.gates)
            except ValueError as exc:
                raise ValueError(f"route {route.name!r}: {exc}") from None
        return self

    @model_validator(mode="after")
    def _routes_use_known_models(self) -> Self:
        known = {m.name for m in self.models}
        if not known:
            return self
        for route in self.routes:
            for model in [route.primary, *(c.model for c in route.candidates)]:
                if model not in known:
                    raise ValueError(
                        f"route {route.name!r} uses model {model!r}, which is not in `models` "
                        f"(known: {', '.join(sorted(known))}); add it to `models` or fix the name"
                    )
        if self.judge.model is not None and self.judge.model not in known:
            raise ValueError(
                f"judge.model {self.judge.model!r} is not in `models` "
                f"(known: {', '.join(sorted(known))}); add it to `models` or fix the name"
            )
        return self

    def model(self, name: str) -> ModelEndpoint:
        """Return the endpoint of model ``name``.

        Raises:
            ConfigError: naming the known models when ``name`` is not one.
        """
        for endpoint in self.models:
            if endpoint.name == name:
                return endpoint
        known = ", ".join(sorted(m.name for m in self.models)) or "none configured"
        raise ConfigError(f"unknown model {name!r} (known: {known}); add it under `models`")

    def route(self, name: str) -> RouteConfig:
        """Return route ``name``.

        Raises:
            ConfigError: naming the known routes when ``name`` is not one.
        """
        for route in self.routes:
            if route.name == name:
                return route
        known = ", ".join(sorted(r.name for r in self.routes)) or "none configured"
        raise ConfigError(f"unknown route {name!r} (known: {known}); add it under `routes`")


def load_settings(config_file: Path | None = None, **overrides: Any) -> Settings:
    """Build :class:`Settings` from the environment, ``.env`` and an optional YAML file.

    Args:
        config_file: a YAML file; defaults to ``$SHADOWLAB_CONFIG`` when set.
        overrides: values that win over every source (as keyword arguments).

    Raises:
        ConfigError: the file is missing or not YAML, or a value is invalid (the message
            names each bad setting and its environment variable).
    """
    if config_file is None and os.environ.get(f"{ENV_PREFIX}CONFIG"):
        config_file = Path(os.environ[f"{ENV_PREFIX}CONFIG"])
    cls: type[Settings] = Settings
    if config_file is not None:
        if not config_file.is_file():
            raise ConfigError(f"config file {config_file} does not exist; check the --config path")
        try:
            yaml.safe_load(config_file.read_text(encoding="utf-8"))
        except yaml.YAMLError as exc:
            raise ConfigError(f"config file {config_file} is not valid YAML: {exc}") from None
        config = SettingsConfigDict(**{**Settings.model_config, "yaml_file": config_file})
        cls = type("Settings", (Settings,), {"__module__": __name__, "model_config": config})
    try:
        return cls(**overrides)
    except ValidationError as exc:
        problems = "\n".join(
            f"  {_setting_name(e['loc'])} (env {_env_name(e['loc'])}): {e['msg']}"
            for e in exc.errors(include_url=False)
        )
        raise ConfigError(f"invalid settings:\n{problems}") from None


def _setting_name(loc: tuple[int | str, ...]) -> str:
    return ".".join(str(p) for p in loc) or "(settings)"


def _env_name(loc: tuple[int | str, ...]) -> str:
    return ENV_PREFIX + NESTED_DELIMITER.join(str(p).upper() for p in loc)


def env_var_names() -> set[str]:
    """Return every environment variable name a setting can be read from.

    Nested sections expand to ``SHADOWLAB_SECTION__FIELD``; list and dict settings are
    read whole, as JSON, from their own variable.
    """
    names = {f"{ENV_PREFIX}CONFIG"}
    for field_name, info in Settings.model_fields.items():
        annotation = info.annotation
        if isinstance(annotation, type) and issubclass(annotation, BaseModel):
            for sub in annotation.model_fields:
                names.add(f"{ENV_PREFIX}{field_name.upper()}{NESTED_DELIMITER}{sub.upper()}")
        names.add(f"{ENV_PREFIX}{field_name.upper()}")
    return names


__all__ = [
    "ENV_PREFIX",
    "NESTED_DELIMITER",
    "AdminSettings",
    "AdmissionSettings",
    "CandidateConfig",
    "ClickHouseSettings",
    "FlagsSettings",
    "GateOverride",
    "JoinSettings",
    "JudgeSettings",
    "KafkaSettings",
    "ModelEndpoint",
    "RolloutSettings",
    "RouteConfig",
    "Settings",
    "ShadowSettings",
    "SinkSettings",
    "TopicSettings",
    "env_var_names",
    "load_settings",
    "route_gates",
]
