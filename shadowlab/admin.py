"""The admin HTTP API of ``shadowlab up``: health, metrics, flags, gates and rollout commands.

Endpoints (JSON unless said otherwise; every error is ``{"error": "..."}`` saying what was
wrong and what to do):

=======  ==============================  ====================================================
GET      ``/health``                     each role's state; 503 when one failed or stopped
GET      ``/metrics``                    Prometheus text format: role counters, flags
GET      ``/flags``                      every route's flags (as ``flags show --json``)
GET      ``/flags/{route}``              one route's flags; 404 when it has none
GET      ``/gates/{route}``              each gate's latest decision (``gates status --json``)
POST     ``/rollout/{route}/{command}``  start, pause, resume, promote, rollback (as the CLI)
=======  ==============================  ====================================================

Reads are open to whoever reaches the address (the loopback by default); a change needs
``Authorization: Bearer <admin.token>``: 403 when no token is configured, 401 when the header
is missing or wrong. The token is compared in constant time and never logged or echoed.

The server runs in a background thread with its own event loop (:class:`AdminServer`);
blocking work (Kafka writes, ClickHouse queries) runs in worker threads, and flags changes
are made one at a time.
"""

from __future__ import annotations

import asyncio
import dataclasses
import hmac
import json
import logging
import threading
from collections.abc import Awaitable, Callable, Iterable, Mapping
from typing import TYPE_CHECKING, Any, Literal, Self, get_args
from urllib.parse import urlsplit

from aiohttp import web
from confluent_kafka import Producer
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.exposition import CONTENT_TYPE_PLAIN_0_0_4, generate_latest
from prometheus_client.registry import Collector, CollectorRegistry

from schemas import RoutingFlags, Stage
from shadowlab.core.errors import (
    ConfigError,
    FlagsConflictError,
    InvalidFlagsChangeError,
    UnknownRouteError,
)
from shadowlab.core.flags_io import FlagsClient, flags_options
from shadowlab.core.kafka import producer_config
from shadowlab.rollout_ops import COMMANDS, Command, apply_manual, latest_decisions

if TYPE_CHECKING:
    from clickhouse_connect.driver.client import Client

    from shadowlab.core.settings import Settings
    from shadowlab.roles import RoleSet

log = logging.getLogger(__name__)

#: The shortest admin token accepted (a guessable token is worse than none).
MIN_TOKEN_LENGTH = 16
#: The longest value of each rollout-command field (the flags' own limits; others 200).
FIELD_LIMITS: dict[str, int] = {"reason": 2000, "actor": 200}
#: Who a change is recorded as when the request names no ``actor``.
DEFAULT_ACTOR = "admin-api"
#: The rollout stages, for ``shadowlab_stage{route, stage}``.
STAGES: tuple[Stage, ...] = get_args(Stage)

# ---------------------------------------------------------------------------------------------
# Metrics: pure functions from counters and flags to samples, then the text format.
# ---------------------------------------------------------------------------------------------

#: The label that names the key of a dict-valued counter, by field name (else ``key``).
LABEL_NAMES: dict[str, str] = {
    "by_status": "status",  # shadow: replays by outcome
    "skipped": "reason",  # shadow, judge: what was not replayed or judged, and why
    "spend_usd": "candidate",  # shadow: spend per candidate (judge: a plain float)
    "outcomes": "outcome",  # join
    "comparisons": "status",  # join
    "written": "topic",  # sink
    "dead_lettered": "topic",  # sink
    "retries": "topic",  # sink: exact copies of stored events dropped
    "actions": "action",  # gates
    "judgements": "kind",  # judge
    "verdicts": "kind",  # judge
    "no_score": "reason",  # judge
    "preferences": "preference",  # judge
    "peak_in_flight": "candidate",  # shadow
    "usage_unknown": "candidate",  # shadow: results whose usage the endpoint did not report
}
#: Counters that go up and down (everything else only goes up).
GAUGES: frozenset[str] = frozenset(
    {"in_flight", "open_entries", "stalled_seconds", "peak_in_flight"}
)
#: Fields that are not measurements (gates: monotonic clock readings for latency checks).
SKIPPED: frozenset[str] = frozenset({"decided_at"})


@dataclasses.dataclass(frozen=True)
class Sample:
    """One Prometheus sample: counters are exposed with a ``_total`` suffix."""

    name: str
    kind: Literal["counter", "gauge"]
    value: float
    labels: tuple[tuple[str, str], ...] = ()
    help: str = ""


def _snapshot(value: Mapping[Any, Any]) -> list[tuple[Any, Any]]:
    """Copy a dict another thread may be changing (retried if it changed mid-copy)."""
    for _ in range(10):
        try:
            return list(dict(value).items())
        except RuntimeError:  # "dictionary changed size during iteration"
            continue
    return []


def counter_samples(
    role: str,
    counters: object,
    *,
    label_names: Mapping[str, str] = LABEL_NAMES,
    gauges: frozenset[str] = GAUGES,
    skip: frozenset[str] = SKIPPED,
) -> list[Sample]:
    """Turn a role's counters dataclass into samples named ``shadowlab_<role>_<field>``.

    ints and floats become one sample each; a dict (``Counter``, ``defaultdict``…) becomes
    one sample per key, labelled ``label_names[field]`` (default ``key``). bools are 0/1.
    Other fields (lists, strings…) and ``skip`` are left out. Fields in ``gauges`` are
    gauges, the rest counters. Anything but a dataclass instance gives no samples.
    """
    if not dataclasses.is_dataclass(counters) or isinstance(counters, type):
        return []
    samples: list[Sample] = []
    for field in dataclasses.fields(counters):
        if field.name in skip:
            continue
        name = f"shadowlab_{role}_{field.name}"
        kind: Literal["counter", "gauge"] = "gauge" if field.name in gauges else "counter"
        doc = f"{field.name} of the {role} role"
        value = getattr(counters, field.name)
        if isinstance(value, int | float):  # bool is an int
            samples.append(Sample(name, kind, float(value), help=doc))
        elif isinstance(value, Mapping):
            label = label_names.get(field.name, "key")
            for key, item in sorted(_snapshot(value), key=lambda kv: str(kv[0])):
                if isinstance(item, int | float):
                    samples.append(Sample(name, kind, float(item), ((label, str(key)),), doc))
    return samples


def is_running(state: str) -> bool:
    """Whether a role's state (:func:`role_states`) is a running loop, degraded or not."""
    return state == "running" or state.startswith("degraded")


def role_samples(states: Mapping[str, str]) -> list[Sample]:
    """``shadowlab_role_up{role}``: 1 while a role runs, else 0."""
    return [
        Sample(
            "shadowlab_role_up",
            "gauge",
            1.0 if is_running(state) else 0.0,
            (("role", role),),
            "1 while the role's loop runs, 0 once it stopped or failed",
        )
        for role, state in sorted(states.items())
    ]


def lag_samples(lags: Mapping[str, Mapping[tuple[str, int], int]]) -> list[Sample]:
    """``shadowlab_consumer_lag{role, topic, partition}``: messages not yet consumed."""
    return [
        Sample("shadowlab_consumer_lag", "gauge", float(lag),
               (("role", role), ("topic", topic), ("partition", str(partition))),
               "messages not yet consumed, from the high watermark of the last fetch "
               "(exact on Apache Kafka; indicative on the embedded broker)")
        for role, by_partition in sorted(lags.items())
        for (topic, partition), lag in sorted(by_partition.items())
    ]  # fmt: skip


def flag_samples(flags: Mapping[str, RoutingFlags]) -> list[Sample]:
    """Per route: canary weight, flags version, paused, and the stage (1 for the current)."""
    samples: list[Sample] = []
    for route, f in sorted(flags.items()):
        at = (("route", route),)
        samples += [
            Sample("shadowlab_canary_weight_bp", "gauge", f.canary_weight_bp, at,
                   "canary share of the route in basis points (10000 = 100%)"),
            Sample("shadowlab_flags_version", "gauge", f.version, at,
                   "version of the route's routing flags in force"),
            Sample("shadowlab_rollout_paused", "gauge", float(f.paused), at,
                   "1 while the route's rollout is paused by hand"),
        ]  # fmt: skip
        samples += [
            Sample("shadowlab_stage", "gauge", float(stage == f.stage),
                   (("route", route), ("stage", stage)), "1 for the route's current stage")
            for stage in STAGES
        ]  # fmt: skip
    return samples


def families(samples: Iterable[Sample]) -> list[Metric]:
    """Group samples into metric families (one per name, in first-seen order).

    Raises:
        ValueError: one name with two kinds or two label sets (a naming clash).
    """
    out: dict[str, Metric] = {}
    label_sets: dict[str, tuple[str, ...]] = {}
    for s in samples:
        keys = tuple(k for k, _ in s.labels)
        family = out.get(s.name)
        if family is None:
            factory = CounterMetricFamily if s.kind == "counter" else GaugeMetricFamily
            family = factory(s.name, s.help or s.name, labels=keys)
            out[s.name], label_sets[s.name] = family, keys
        elif family.type != s.kind or label_sets[s.name] != keys:
            raise ValueError(f"metric {s.name} is exposed with two kinds or label sets")
        family.add_metric([v for _, v in s.labels], s.value)  # type: ignore[attr-defined]
    return list(out.values())


class _Families(Collector):
    def __init__(self, metrics: list[Metric]) -> None:
        self._metrics = metrics

    def collect(self) -> Iterable[Metric]:
        return self._metrics


def exposition(samples: Iterable[Sample]) -> bytes:
    """The Prometheus text exposition format (0.0.4) of ``samples``."""
    registry = CollectorRegistry(auto_describe=False)
    registry.register(_Families(families(samples)))
    return generate_latest(registry)


# ---------------------------------------------------------------------------------------------
# Health and secrets
# ---------------------------------------------------------------------------------------------


def role_states(roles: RoleSet, secrets: Iterable[str] = ()) -> dict[str, str]:
    """Each role's state (secrets masked): ``running``, ``degraded: …``, ``stopped``, ``failed: …``.

    ``degraded: <why>`` is a running role that is not doing its work (the sink's writes
    failing); ``failed: <error>`` names the exception that stopped it.
    """
    failures = roles.failures()
    states: dict[str, str] = {}
    for name, alive in roles.alive().items():
        if name in failures:
            exc = failures[name]
            states[name] = redact(f"failed: {type(exc).__name__}: {exc}", secrets)[:500]
        elif not alive:
            states[name] = "stopped"
        else:
            degraded = getattr(roles.roles[name], "degraded", None)
            reason = degraded() if callable(degraded) else None
            states[name] = redact(f"degraded: {reason}", secrets)[:500] if reason else "running"
    return states


def secret_values(settings: Settings) -> list[str]:
    """Every secret in ``settings`` (to mask in anything shown)."""
    values = [
        s.get_secret_value()
        for s in (
            settings.admin.token,
            settings.kafka.sasl_password,
            settings.kafka.ssl_key_password,
            settings.flags.signing_key,
            *settings.flags.accepted_keys,
        )
        if s is not None
    ]
    if settings.clickhouse.dsn is not None:
        password = urlsplit(settings.clickhouse.dsn.get_secret_value()).password
        if password:
            values.append(password)
    return [v for v in values if v]


def redact(text: str, secrets: Iterable[str]) -> str:
    """``text`` with every secret replaced by ``***``."""
    for secret in secrets:
        text = text.replace(secret, "***")
    return text


# ---------------------------------------------------------------------------------------------
# The HTTP app
# ---------------------------------------------------------------------------------------------


def _error(status: int, message: str, headers: Mapping[str, str] | None = None) -> web.Response:
    return web.json_response({"error": message}, status=status, headers=headers)


def _flags_json(flags: RoutingFlags) -> Any:
    return json.loads(flags.to_json())


_Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


class AdminApp:
    """The endpoints, on a running :class:`RoleSet`, a flags client and ClickHouse.

    Args:
        settings: the configuration (``admin.token``, topics, routes, the database name).
        roles: the roles to report on.
        flags: a flags client (entered: caught up) for reads and changes.
        producer: a producer for the audit alerts of changes.
        clickhouse: the ClickHouse client for gate decisions (``None``: /gates answers 503).
    """

    def __init__(
        self,
        settings: Settings,
        roles: RoleSet,
        flags: FlagsClient,
        producer: Producer,
        clickhouse: Client | None,
    ) -> None:
        self.settings = settings
        self.roles = roles
        self.flags = flags
        self.producer = producer
        self.clickhouse = clickhouse
        self._secrets = secret_values(settings)
        self._change_lock = threading.Lock()

    def app(self) -> web.Application:
        """The aiohttp application."""
        app = web.Application(middlewares=[self._errors])
        app.router.add_get("/health", self.health)
        app.router.add_get("/metrics", self.metrics)
        app.router.add_get("/flags", self.all_flags)
        app.router.add_get("/flags/{route}", self.route_flags)
        app.router.add_get("/gates/{route}", self.gates)
        app.router.add_post("/rollout/{route}/{command}", self.rollout)
        return app

    @web.middleware
    async def _errors(self, request: web.Request, handler: _Handler) -> web.StreamResponse:
        """Every error as JSON ``{"error": ...}``; an unexpected one is logged, not shown."""
        try:
            return await handler(request)
        except web.HTTPNotFound:
            return _error(
                404,
                f"no endpoint {request.method} {request.path}; endpoints: GET /health, "
                "/metrics, /flags, /flags/{route}, /gates/{route}; "
                "POST /rollout/{route}/{" + "|".join(COMMANDS) + "}",
            )
        except web.HTTPMethodNotAllowed as exc:
            return _error(
                405,
                f"{request.method} is not allowed on {request.path}; "
                f"use {', '.join(sorted(exc.allowed_methods))}",
            )
        except web.HTTPException as exc:
            return _error(exc.status, exc.reason)
        except Exception as exc:
            log.exception("admin API: %s %s failed", request.method, request.path)
            return _error(500, f"internal error ({type(exc).__name__}); the server log has more")

    def states(self) -> dict[str, str]:
        """Each role's state (see :func:`role_states`)."""
        return role_states(self.roles, self._secrets)

    async def health(self, _request: web.Request) -> web.Response:
        """200 while every role runs (``degraded`` when one is not doing its work), else 503."""
        states = self.states()
        running = all(is_running(s) for s in states.values())
        status = "failing" if not running else "ok"
        if running and any(s.startswith("degraded") for s in states.values()):
            status = "degraded"
        return web.json_response(
            {"status": status, "roles": states}, status=200 if running else 503
        )

    async def metrics(self, _request: web.Request) -> web.Response:
        """Prometheus text format: every role's counters, role_up and per-route flags."""
        samples = role_samples(self.states())
        for role, counters in self.roles.counters().items():
            samples += counter_samples(role, counters)
        samples += lag_samples(self.roles.partition_lags())
        samples += flag_samples(self.flags.all())
        return web.Response(
            body=exposition(samples), headers={"Content-Type": CONTENT_TYPE_PLAIN_0_0_4}
        )

    async def all_flags(self, _request: web.Request) -> web.Response:
        """Every route's flags, sorted by route (the JSON of ``shadowlab flags show --json``)."""
        flags = self.flags.all()
        return web.json_response([_flags_json(flags[r]) for r in sorted(flags)])

    async def route_flags(self, request: web.Request) -> web.Response:
        """One route's flags; 404 naming the routes that have flags."""
        route = request.match_info["route"]
        flags = self.flags.current(route)
        if flags is None:
            known = ", ".join(sorted(self.flags.all())) or "none"
            return _error(
                404,
                f"route {route!r} has no flags (routes with flags: {known}); start a rollout "
                f"with POST /rollout/{route}/start",
            )
        return web.json_response(_flags_json(flags))

    async def gates(self, request: web.Request) -> web.Response:
        """Each gate's latest decision (the JSON of ``shadowlab gates status --json``).

        A route that is configured or has flags but no decisions yet gives ``[]``; any other
        route gives 404.
        """
        route = request.match_info["route"]
        if self.clickhouse is None:
            return _error(503, "no ClickHouse client: gate decisions cannot be read")
        rows = await asyncio.to_thread(
            latest_decisions, self.clickhouse, self.settings.clickhouse.database, route
        )
        known = {r.name for r in self.settings.routes} | set(self.flags.all())
        if not rows and route not in known:
            return _error(
                404,
                f"no gate decisions for route {route!r}, which is neither configured nor has "
                f"flags (known: {', '.join(sorted(known)) or 'none'}); check the name",
            )
        return web.Response(text=json.dumps(rows, default=str), content_type="application/json")

    def _refusal(self, request: web.Request) -> web.Response | None:
        """Why this change request is refused (no token configured, wrong token), or None."""
        token = self.settings.admin.token
        if token is None:
            return _error(
                403,
                "changes are disabled: no admin token is configured; set "
                "SHADOWLAB_ADMIN__TOKEN (or admin.token in the config file) and restart",
            )
        scheme, _, given = request.headers.get("Authorization", "").partition(" ")
        expected = token.get_secret_value().encode()
        # surrogatepass: a header aiohttp could not decode still compares (and never matches)
        presented = given.strip().encode("utf-8", "surrogatepass")
        if scheme.lower() != "bearer" or not hmac.compare_digest(presented, expected):
            log.warning(
                "admin API: refused %s %s from %s: missing or wrong bearer token",
                request.method,
                request.path,
                request.remote,
            )
            return _error(
                401,
                "missing or wrong bearer token: send the header "
                "'Authorization: Bearer <admin.token>'",
                headers={"WWW-Authenticate": 'Bearer realm="shadowlab"'},
            )
        return None

    async def rollout(self, request: web.Request) -> web.Response:
        """Apply a rollout command exactly as ``shadowlab rollout COMMAND`` does."""
        refusal = self._refusal(request)
        if refusal is not None:
            return refusal
        route, command = request.match_info["route"], request.match_info["command"]
        if command not in COMMANDS:
            return _error(
                404, f"unknown rollout command {command!r}; use one of {', '.join(COMMANDS)}"
            )
        body = await _json_object(request)
        if isinstance(body, web.Response):
            return body
        allowed = {"reason", "actor"} | ({"candidate", "primary"} if command == "start" else set())
        problem = _body_problem(body, allowed, command)
        if problem is not None:
            return _error(400, problem)
        return await asyncio.to_thread(self._apply, route, command, body)

    def _apply(self, route: str, command: Command, body: Mapping[str, str]) -> web.Response:
        actor = body.get("actor") or DEFAULT_ACTOR
        with self._change_lock:
            try:
                done = apply_manual(
                    self.flags,
                    self.producer,
                    self.settings.topics.alerts,
                    command,
                    route,
                    reason=body["reason"],
                    actor=actor,
                    candidate=body.get("candidate"),
                    primary=body.get("primary"),
                    configured=self.settings,
                )
            except UnknownRouteError as exc:
                return _error(404, str(exc))
            except (InvalidFlagsChangeError, FlagsConflictError) as exc:
                return _error(409, str(exc))
            except TimeoutError as exc:
                return _error(503, f"{exc}; check that Kafka is reachable, then retry")
        log.info("admin API: %s %s by %s: %s", done.verb, route, actor, body["reason"])
        warnings = [] if done.audit_delivered else ["the audit alert was not delivered"]
        return web.json_response(
            {"action": done.verb, "flags": _flags_json(done.flags), "warnings": warnings}
        )


async def _json_object(request: web.Request) -> dict[str, Any] | web.Response:
    """The request body as a JSON object, or a 400 response saying what is wrong with it."""
    try:
        body = await request.json()
    except (ValueError, RecursionError):  # RecursionError: nested deeper than JSON may be
        return _error(400, 'the body must be a JSON object, e.g. {"reason": "why"}')
    if not isinstance(body, dict):
        return _error(400, 'the body must be a JSON object, e.g. {"reason": "why"}')
    return body


def _body_problem(body: Mapping[str, Any], allowed: set[str], command: str) -> str | None:
    """What is wrong with a rollout command's body, or None."""
    unknown = set(body) - allowed
    if unknown:
        return (
            f"unknown field(s) {', '.join(sorted(unknown))} for {command}; "
            f"allowed: {', '.join(sorted(allowed))}"
        )
    for key, value in body.items():
        if value is not None and not isinstance(value, str):
            return f"field {key!r} must be a string"
        limit = FIELD_LIMITS.get(key, 200)
        if value is not None and len(value) > limit:
            return f"field {key!r} is {len(value)} characters long; the most is {limit}"
    if not str(body.get("reason") or "").strip():
        return f'a {command} needs a reason: send {{"reason": "why"}} (it is recorded)'
    if command == "start" and not body.get("candidate"):
        return 'a start needs the model to roll out: send {"candidate": "MODEL", ...}'
    return None


# ---------------------------------------------------------------------------------------------
# The server in a background thread
# ---------------------------------------------------------------------------------------------


def check_token(settings: Settings) -> None:
    """Refuse an admin token shorter than :data:`MIN_TOKEN_LENGTH` (no token is fine).

    Raises:
        ConfigError: saying how to generate a token (never showing the one configured).
    """
    token = settings.admin.token
    if token is not None and len(token.get_secret_value().strip()) < MIN_TOKEN_LENGTH:
        raise ConfigError(
            f"the admin token must have at least {MIN_TOKEN_LENGTH} characters; generate one "
            "with `python -c 'import secrets; print(secrets.token_urlsafe())'` and set "
            "SHADOWLAB_ADMIN__TOKEN"
        )


class AdminServer:
    """The admin API on ``admin.host:admin.port``, served from a background thread.

    Opens its own flags client (on ``connection``) and audit producer; ``stop()`` closes
    them. Use as a context manager, or ``start()`` / ``stop()``.

    Args:
        settings: the configuration (``admin``, topics, routes).
        connection: the librdkafka connection config.
        roles: the roles to report on.
        clickhouse: the ClickHouse client for ``/gates`` (``None``: it answers 503).
        port: overrides ``admin.port`` (0: a free port; see :attr:`port` once started).

    Raises:
        ConfigError: (on start) the token is shorter than :data:`MIN_TOKEN_LENGTH`, or the
            address cannot be bound.
    """

    def __init__(
        self,
        settings: Settings,
        connection: Mapping[str, str],
        roles: RoleSet,
        *,
        clickhouse: Client | None = None,
        port: int | None = None,
    ) -> None:
        self.settings = settings
        self.host = settings.admin.host
        self.port = settings.admin.port if port is None else port
        self._connection = dict(connection)
        self._roles = roles
        self._clickhouse = clickhouse
        self._flags: FlagsClient | None = None
        self._producer: Producer | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        self._runner: web.AppRunner | None = None

    @property
    def url(self) -> str:
        """``http://host:port``."""
        return f"http://{self.host}:{self.port}"

    def start(self) -> Self:
        """Read the flags topic to its end, then serve; returns once the port is bound."""
        check_token(self.settings)
        self._flags = FlagsClient(
            self._connection, self.settings.topics.flags, **flags_options(self.settings)
        ).__enter__()
        try:
            self._producer = Producer(producer_config(self._connection, **{"linger.ms": "0"}))
            admin = AdminApp(
                self.settings, self._roles, self._flags, self._producer, self._clickhouse
            )
            self._loop = loop = asyncio.new_event_loop()
            self._thread = threading.Thread(target=loop.run_forever, name="admin", daemon=True)
            self._thread.start()
            asyncio.run_coroutine_threadsafe(self._serve(admin.app()), loop).result(10)
        except OSError as exc:
            self.stop()
            raise ConfigError(
                f"cannot serve the admin API on {self.host}:{self.port}: {exc.strerror}; set "
                "SHADOWLAB_ADMIN__PORT to a free port (0 picks one)"
            ) from None
        except BaseException:
            self.stop()
            raise
        log.info("admin API on %s", self.url)
        return self

    async def _serve(self, app: web.Application) -> None:
        self._runner = web.AppRunner(app, access_log=None, shutdown_timeout=1.0)
        await self._runner.setup()
        await web.TCPSite(self._runner, self.host, self.port).start()
        if self.port == 0:
            self.port = int(self._runner.addresses[0][1])

    def stop(self) -> None:
        """Stop serving, close the flags client and flush the audit producer (idempotent)."""
        loop, thread, runner = self._loop, self._thread, self._runner
        self._loop = self._thread = self._runner = None
        if loop is not None:
            if runner is not None and thread is not None and thread.is_alive():
                asyncio.run_coroutine_threadsafe(runner.cleanup(), loop).result(10)
            loop.call_soon_threadsafe(loop.stop)
            if thread is not None:
                thread.join(timeout=10)
            if not loop.is_running():
                loop.close()
        if self._flags is not None:
            self._flags.__exit__(None, None, None)
            self._flags = None
        if self._producer is not None:
            self._producer.flush(5)
            self._producer = None

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(self, *_exc: object) -> None:
        self.stop()
