"""Apache Kafka (KRaft) from its Maven Central artifacts, for tests: one node or a cluster.

:func:`kafka_jars` resolves the pinned release (``org.apache.kafka:kafka_2.13``, which pulls
the server, metadata, raft and storage modules) and a log4j2 backend with Maven into
``~/.cache/shadowlab/apache-kafka-<version>/jars`` once (``mvn dependency:copy-dependencies``
of a generated ``pom.xml``; about 45 MB). :class:`ApacheKafka` then formats a KRaft log
directory per node (a static quorum: ``controller.quorum.voters``) and runs each node as
broker and controller on free loopback ports with persistent storage in a temporary
directory: ``ApacheKafka()`` is one node; ``ApacheKafka(nodes=3)`` a cluster with
replication factor 3 and ``min.insync.replicas=2`` whose nodes can be killed and restarted
from their log directories (:meth:`ApacheKafka.kill`, :meth:`ApacheKafka.restart`).

The nodes never outlive the process that started them: stopped on context exit and at
interpreter exit, and started with ``PR_SET_PDEATHSIG`` (as the embedded broker is).
Needs Java 17 or newer and Maven on ``PATH``; without them :func:`kafka_jars` raises
:class:`~shadowlab.core.errors.BrokerBinaryNotFoundError` saying what to install.
"""

from __future__ import annotations

import atexit
import base64
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
import uuid
import weakref
from collections.abc import Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from types import TracebackType
from typing import IO, Self

from confluent_kafka.admin import AdminClient

from shadowlab.core.errors import BrokerBinaryNotFoundError, BrokerStartError
from shadowlab.embedded.broker import die_with_parent, free_port

#: The Apache Kafka release the tests run against (the compose file runs the same).
KAFKA_VERSION = "4.4.0"
_LOG4J_VERSION = "2.25.3"
_SLF4J_VERSION = "2.0.17"
#: A small, quick-starting JVM: tests need a broker, not throughput.
JVM_FLAGS = ("-Xms128m", "-Xmx512m", "-XX:+UseSerialGC", "-XX:TieredStopAtLevel=1",
             "-Xshare:auto", "-XX:-UsePerfData", "-Djava.awt.headless=true")  # fmt: skip
_READY = b"Kafka Server started"
#: A dead node is fenced in 2 s, not 9 s (the defaults), so a failover test sees the new
#: leaders soon: ``acks=all`` writes wait on a dead follower until it is fenced.
_FAST_FAILOVER = {
    "broker.heartbeat.interval.ms": "500",
    "broker.session.timeout.ms": "2000",
    "controller.quorum.fetch.timeout.ms": "1000",
    "controller.quorum.election.timeout.ms": "500",
}
_LIVE: weakref.WeakSet[ApacheKafka] = weakref.WeakSet()

_POM = """<?xml version="1.0" encoding="UTF-8"?>
<project xmlns="http://maven.apache.org/POM/4.0.0">
  <modelVersion>4.0.0</modelVersion>
  <groupId>shadowlab.testing</groupId>
  <artifactId>apache-kafka-runtime</artifactId>
  <version>1</version>
  <packaging>pom</packaging>
  <dependencies>
    <dependency><groupId>org.apache.kafka</groupId><artifactId>kafka_2.13</artifactId>
      <version>{kafka}</version></dependency>
    <dependency><groupId>org.slf4j</groupId><artifactId>slf4j-api</artifactId>
      <version>{slf4j}</version></dependency>
    <dependency><groupId>org.apache.logging.log4j</groupId>
      <artifactId>log4j-slf4j2-impl</artifactId><version>{log4j}</version></dependency>
    <dependency><groupId>org.apache.logging.log4j</groupId><artifactId>log4j-core</artifactId>
      <version>{log4j}</version></dependency>
  </dependencies>
</project>
"""

_LOG4J2 = """<?xml version="1.0" encoding="UTF-8"?>
<Configuration status="WARN">
  <Appenders>
    <File name="file" fileName="${sys:kafka.logs.dir}/server.log" append="true">
      <PatternLayout pattern="[%d] %p %m (%c)%n"/>
    </File>
  </Appenders>
  <Loggers>
    <Logger name="state.change.logger" level="WARN"/>
    <Logger name="kafka.request.logger" level="WARN"/>
    <Root level="INFO"><AppenderRef ref="file"/></Root>
  </Loggers>
</Configuration>
"""


def kafka_home() -> Path:
    """Where the pinned release's jars and logging config are cached."""
    cache = Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache"))
    return cache / "shadowlab" / f"apache-kafka-{KAFKA_VERSION}"


def java_version() -> int | None:
    """The major version of ``java`` on ``PATH`` (``None``: no Java)."""
    java = shutil.which("java")
    if java is None:
        return None
    done = subprocess.run([java, "-version"], capture_output=True, text=True, check=False)
    found = re.search(r'version "(\d+)(?:\.(\d+))?', done.stderr + done.stdout)
    if found is None:
        return None
    major = int(found.group(1))
    return int(found.group(2) or 0) if major == 1 else major


def kafka_jars() -> Path:
    """The directory of the pinned release's jars, resolved with Maven on first use.

    Raises:
        BrokerBinaryNotFoundError: Java 17+ or Maven is missing, or Maven could not resolve
            the artifacts (its output's tail is in the message).
    """
    home = kafka_home()
    jars = home / "jars"
    if (home / "complete").exists():
        return jars
    version = java_version()
    if version is None or version < 17:
        found = "no java on PATH" if version is None else f"java {version} on PATH"
        raise BrokerBinaryNotFoundError(
            f"--broker apache runs Apache Kafka {KAFKA_VERSION}, which needs Java 17 or newer "
            f"({found}): install it (`apt-get install openjdk-17-jre-headless`), or use the "
            "embedded broker (--broker tansu)"
        )
    mvn = shutil.which("mvn")
    if mvn is None:
        raise BrokerBinaryNotFoundError(
            "--broker apache resolves Apache Kafka's jars with Maven, and mvn is not on PATH: "
            "install it (`apt-get install maven`), or use the embedded broker (--broker tansu)"
        )
    home.mkdir(parents=True, exist_ok=True)
    pom = home / "pom.xml"
    pom.write_text(_POM.format(kafka=KAFKA_VERSION, slf4j=_SLF4J_VERSION, log4j=_LOG4J_VERSION))
    (home / "log4j2.xml").write_text(_LOG4J2)
    shutil.rmtree(jars, ignore_errors=True)
    done = subprocess.run(
        [mvn, "-q", "-B", "-f", str(pom), "dependency:copy-dependencies",
         f"-DoutputDirectory={jars}", "-DincludeScope=runtime"],
        capture_output=True, text=True, check=False,
    )  # fmt: skip
    if done.returncode != 0:
        raise BrokerBinaryNotFoundError(
            f"Maven could not resolve Apache Kafka {KAFKA_VERSION} (exit {done.returncode}; is "
            f"Maven Central reachable?): {(done.stdout + done.stderr)[-1500:]}"
        )
    (home / "complete").write_text(KAFKA_VERSION + "\n")
    return jars


def describe(nodes: int) -> str:
    """``Apache Kafka 4.4.0 (KRaft, 3 nodes)``: the release and the cluster's size."""
    return f"Apache Kafka {KAFKA_VERSION} (KRaft, {nodes} node{'s' if nodes > 1 else ''})"


def cluster_id() -> str:
    """A KRaft cluster id as ``kafka-storage random-uuid`` makes it (22 url-safe base64)."""
    while True:
        text = base64.urlsafe_b64encode(uuid.uuid4().bytes).decode().rstrip("=")
        if not text.startswith("-"):  # the storage tool would read it as an option
            return text


@dataclass
class KafkaNode:
    """One node (broker and controller) of an :class:`ApacheKafka`."""

    node_id: int
    host: str
    broker_port: int
    controller_port: int
    workdir: Path
    process: subprocess.Popen[bytes] | None = None
    _log_start: int = field(default=0, repr=False)

    @property
    def address(self) -> str:
        """``host:port`` of its client listener."""
        return f"{self.host}:{self.broker_port}"

    @property
    def server_log(self) -> Path:
        """Its log4j log."""
        return self.workdir / "logs" / "server.log"

    def is_running(self) -> bool:
        """Whether its process is alive."""
        return self.process is not None and self.process.poll() is None

    def started(self) -> bool:
        """Whether this run of the node logged that it started."""
        try:
            with self.server_log.open("rb") as log:
                log.seek(self._log_start)
                return _READY in log.read()
        except FileNotFoundError:
            return False

    def log_tail(self, limit: int = 1500) -> str:
        """The end of its log (for error messages)."""
        text = ""
        for path in (self.server_log, self.workdir / "logs" / "stdout.log"):
            if path.exists():
                text += path.read_text(errors="replace")[-limit:]
        return text.strip() or "(empty log)"


class ApacheKafka:
    """Apache Kafka in KRaft mode on loopback ports: ``nodes`` nodes, each broker+controller.

    Use as a context manager::

        with ApacheKafka(nodes=3) as kafka:
            producer = Producer({"bootstrap.servers": kafka.bootstrap_servers})

    Args:
        nodes: 1, or 3 for a replicated cluster (replication factor 3, min ISR 2).
        host: the loopback address to bind.
        workdir: where the log directories go (a temporary directory when omitted, removed
            at stop).
        start_timeout_s: how long to wait for every node to serve.
        config: extra ``server.properties`` entries for every node.
    """

    def __init__(
        self,
        nodes: int = 1,
        *,
        host: str = "127.0.0.1",
        workdir: Path | None = None,
        start_timeout_s: float = 180.0,
        config: Mapping[str, str] | None = None,
    ) -> None:
        if nodes < 1:
            raise ValueError(f"a Kafka cluster needs at least one node, not {nodes}")
        self.host = host
        self.start_timeout_s = start_timeout_s
        self.config = dict(config or {})
        self._own_workdir = workdir is None
        self.workdir = workdir or Path(tempfile.gettempdir()) / f"apache-kafka-{uuid.uuid4().hex}"
        self.nodes = [
            KafkaNode(i, host, free_port(host), free_port(host), self.workdir / f"node{i}")
            for i in range(1, nodes + 1)
        ]
        self.version = KAFKA_VERSION
        self._jars: Path | None = None
        self._lock = threading.Lock()

    @property
    def bootstrap_servers(self) -> str:
        """Every node's ``host:port``, comma-separated, for Kafka clients."""
        return ",".join(n.address for n in self.nodes)

    def describe(self) -> str:
        """``Apache Kafka 4.4.0 (KRaft, 3 nodes)``."""
        return describe(len(self.nodes))

    def node(self, node_id: int) -> KafkaNode:
        """The node with id ``node_id`` (1-based)."""
        return self.nodes[node_id - 1]

    def _properties(self, node: KafkaNode) -> str:
        replicas = min(3, len(self.nodes))
        min_isr = 2 if replicas >= 3 else 1
        voters = ",".join(f"{n.node_id}@{n.host}:{n.controller_port}" for n in self.nodes)
        entries = {
            "process.roles": "broker,controller",
            "node.id": str(node.node_id),
            "controller.quorum.voters": voters,
            "listeners": f"PLAINTEXT://{node.address},CONTROLLER://{node.host}:{node.controller_port}",
            "advertised.listeners": f"PLAINTEXT://{node.address}",
            "listener.security.protocol.map": "PLAINTEXT:PLAINTEXT,CONTROLLER:PLAINTEXT",
            "inter.broker.listener.name": "PLAINTEXT",
            "controller.listener.names": "CONTROLLER",
            "log.dirs": str(node.workdir / "data"),
            "num.partitions": "1",
            "default.replication.factor": str(replicas),
            "min.insync.replicas": str(min_isr),
            "offsets.topic.replication.factor": str(replicas),
            "offsets.topic.num.partitions": "1",
            "transaction.state.log.replication.factor": str(replicas),
            "transaction.state.log.min.isr": str(min_isr),
            "transaction.state.log.num.partitions": "1",
            "share.coordinator.state.topic.replication.factor": str(replicas),
            "share.coordinator.state.topic.min.isr": str(min_isr),
            "group.initial.rebalance.delay.ms": "0",
            "auto.create.topics.enable": "true",
            "log.cleaner.backoff.ms": "1000",
            **(_FAST_FAILOVER if len(self.nodes) > 1 else {}),
            **self.config,
        }  # fmt: skip
        return "".join(f"{key}={value}\n" for key, value in entries.items())

    def _java(self, node: KafkaNode, main: str, *args: str) -> list[str]:
        assert self._jars is not None  # noqa: S101 - set by start()
        home = self._jars.parent
        return [
            "java", *JVM_FLAGS, f"-Dlog4j2.configurationFile={home / 'log4j2.xml'}",
            f"-Dkafka.logs.dir={node.workdir / 'logs'}", "-cp", f"{self._jars}/*", main, *args,
        ]  # fmt: skip

    def _format(self, node: KafkaNode, cluster: str) -> None:
        (node.workdir / "data").mkdir(parents=True, exist_ok=True)
        (node.workdir / "logs").mkdir(parents=True, exist_ok=True)
        props = node.workdir / "server.properties"
        props.write_text(self._properties(node))
        done = subprocess.run(
            self._java(node, "kafka.tools.StorageTool", "format", "-t", cluster, "-c", str(props)),
            capture_output=True, text=True, check=False,
        )  # fmt: skip
        if done.returncode != 0:
            raise BrokerStartError(
                f"formatting Kafka node {node.node_id} failed: {done.stdout}{done.stderr}"
            )

    def _launch(self, node: KafkaNode) -> None:
        node._log_start = node.server_log.stat().st_size if node.server_log.exists() else 0
        out: IO[bytes]
        with (node.workdir / "logs" / "stdout.log").open("ab") as out:
            node.process = subprocess.Popen(
                self._java(node, "kafka.Kafka", str(node.workdir / "server.properties")),
                stdin=subprocess.DEVNULL, stdout=out, stderr=subprocess.STDOUT,
                start_new_session=True,
                preexec_fn=die_with_parent if sys.platform == "linux" else None,  # noqa: PLW1509
            )  # fmt: skip

    def start(self) -> Self:
        """Resolve the jars, format every node and start them; returns once all serve.

        Raises:
            BrokerBinaryNotFoundError: Java or Maven is missing (what to install).
            BrokerStartError: a node exited or did not serve in time (with its log).
        """
        self._jars = kafka_jars()
        cluster = cluster_id()
        with ThreadPoolExecutor(len(self.nodes)) as pool:  # a JVM each: format in parallel
            list(pool.map(lambda n: self._format(n, cluster), self.nodes))
        _LIVE.add(self)
        try:
            for node in self.nodes:
                self._launch(node)
            self._wait_serving(self.nodes)
            self._warm_up()
        except BaseException:
            self.stop()
            raise
        return self

    def _wait_serving(self, nodes: list[KafkaNode]) -> None:
        deadline = time.monotonic() + self.start_timeout_s
        while not all(n.started() for n in nodes):
            for node in nodes:
                if not node.is_running():
                    raise BrokerStartError(
                        f"Kafka node {node.node_id} exited at start-up: {node.log_tail()}"
                    )
            if time.monotonic() > deadline:
                slow = [n.node_id for n in nodes if not n.started()]
                raise BrokerStartError(
                    f"Kafka nodes {slow} did not start within {self.start_timeout_s:.0f} s: "
                    f"{self.node(slow[0]).log_tail()}"
                )
            time.sleep(0.1)
        admin = AdminClient({"bootstrap.servers": self.bootstrap_servers, "log_level": 2})
        wanted = {n.node_id for n in nodes}
        while time.monotonic() < deadline:
            try:
                if wanted <= set(admin.list_topics(timeout=5).brokers):
                    return
            except Exception:  # noqa: S110 - not serving yet: ask again
                pass
            time.sleep(0.1)
        raise BrokerStartError(f"Kafka nodes {sorted(wanted)} never appeared in the metadata")

    def _warm_up(self) -> None:
        """Load the group coordinator once, so the first consumer does not back off for it.

        Right after start a JoinGroup gets ``COORDINATOR_LOAD_IN_PROGRESS`` and librdkafka
        waits about 3 s before asking again; a describe retried here takes that wait.
        """
        admin = AdminClient({"bootstrap.servers": self.bootstrap_servers, "log_level": 2})
        deadline = time.monotonic() + self.start_timeout_s
        while time.monotonic() < deadline:
            try:
                admin.describe_consumer_groups(["shadowlab-warm-up"])["shadowlab-warm-up"].result(
                    10
                )
                return
            except Exception:  # noqa: S110 - the coordinator is loading: ask again
                pass
            time.sleep(0.1)

    def leader(self, topic: str, partition: int = 0) -> int:
        """The node id leading ``topic``'s ``partition`` now (-1: none)."""
        admin = AdminClient({"bootstrap.servers": self.bootstrap_servers, "log_level": 2})
        metadata = admin.list_topics(topic, timeout=10).topics[topic]
        return int(metadata.partitions[partition].leader)

    def kill(self, node_id: int) -> None:
        """SIGKILL one node (its log directory stays, for :meth:`restart`)."""
        node = self.node(node_id)
        if node.process is not None and node.is_running():
            node.process.send_signal(signal.SIGKILL)
            node.process.wait(timeout=30)

    def restart(self, node_id: int) -> None:
        """Start a killed or stopped node again from its log directory; returns once it serves."""
        node = self.node(node_id)
        if node.is_running():
            return
        self._launch(node)
        self._wait_serving([node])

    def stop(self) -> None:
        """Stop every node: SIGTERM to all at once, SIGKILL after 15 s.

        All at once: one by one, the last node's controlled shutdown can wait for a quorum
        forever.
        """
        with self._lock:
            running = [n for n in self.nodes if n.process is not None and n.is_running()]
            for node in running:
                assert node.process is not None  # noqa: S101 - narrowed above
                node.process.terminate()
            for node in running:
                assert node.process is not None  # noqa: S101
                try:
                    node.process.wait(timeout=15)
                except subprocess.TimeoutExpired:
                    node.process.kill()
                    node.process.wait(timeout=10)
            for node in self.nodes:
                node.process = None
            _LIVE.discard(self)
            if self._own_workdir:
                shutil.rmtree(self.workdir, ignore_errors=True)

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()


@atexit.register
def _stop_all() -> None:
    for kafka in list(_LIVE):
        kafka.stop()
