"""A server we did not write: the LiteLLM proxy in mock mode, in its own virtual environment.

:func:`litellm_proxy` makes (once, cached under ``~/.cache/shadowlab``) a virtual environment
with a pinned ``litellm[proxy]``, starts the proxy on a free loopback port with mock models
and stops it afterwards. Its models answer without any upstream (``mock_response``,
``mock_tool_calls``, ``mock_delay``), so the tests need no network once installed:

=============  ==============================================================
``mock-ok``    "The warranty lasts two years."
``mock-429``   HTTP 429 (LiteLLM's mock rate limit)
``mock-500``   HTTP 500 (LiteLLM's mock internal server error)
``mock-slow``  the answer after 3 s
``mock-tools`` a call to ``lookup`` with ``{"question": "warranty"}``
=============  ==============================================================
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
import urllib.request
from collections.abc import Iterable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from shadowlab.embedded.broker import free_port
from shadowlab.testing.helpers import wait_until

#: The LiteLLM version the tests run against.
LITELLM_VERSION = "1.108.7"
#: The proxy's admin key (a test value: the proxy refuses to start without one).
MASTER_KEY = "sk-shadowlab-test-master-key"
MODELS: dict[str, dict[str, object]] = {
    "mock-ok": {"mock_response": "The warranty lasts two years."},
    "mock-429": {"mock_response": "litellm.RateLimitError"},
    "mock-500": {"mock_response": "litellm.InternalServerError"},
    "mock-slow": {"mock_response": "A slow answer.", "mock_delay": 3},
    "mock-tools": {
        "mock_tool_calls": [
            {"id": "call_1", "type": "function",
             "function": {"name": "lookup", "arguments": '{"question": "warranty"}'}}
        ]
    },
}  # fmt: skip


@dataclass(frozen=True)
class LiteLLMProxy:
    """A running proxy: its OpenAI-compatible base URL and the key it wants."""

    base_url: str
    api_key: str = MASTER_KEY


def litellm_binary() -> Path:
    """The ``litellm`` executable of the cached virtual environment (made if missing).

    Raises:
        subprocess.CalledProcessError: the environment could not be made (no network?).
    """
    home = Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache"))
    venv = home / "shadowlab" / f"litellm-{LITELLM_VERSION}"
    binary = venv / "bin" / "litellm"
    if not binary.exists():
        subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
        subprocess.run(
            [str(venv / "bin" / "pip"), "install", "-q", f"litellm[proxy]=={LITELLM_VERSION}"],
            check=True,
        )
    return binary


def upstream_models(base_url: str, names: Iterable[str]) -> dict[str, dict[str, object]]:
    """Proxy models ``<name>`` that forward to the OpenAI-compatible server at ``base_url``.

    LiteLLM then streams what that server streams (tool-call deltas too) and passes its
    errors on, as it does in front of a real provider.
    """
    return {name: {"model": f"openai/{name}", "api_base": base_url, "api_key": "sk-upstream"}
            for name in names}  # fmt: skip


def _config(upstream: Mapping[str, Mapping[str, object]]) -> str:
    lines = ["model_list:"]
    mocks = {name: {"model": "openai/gpt-4o", "api_key": "sk-none", **params}
             for name, params in MODELS.items()}  # fmt: skip
    for name, params in {**mocks, **upstream}.items():
        lines += [f"  - model_name: {name}", "    litellm_params:"]
        lines += [f"      {key}: {_yaml(value)}" for key, value in params.items()]
    lines += ["litellm_settings:", "  num_retries: 0"]
    return "\n".join(lines) + "\n"


def _yaml(value: object) -> str:
    return json.dumps(value)  # JSON is YAML


def _up(base: str) -> bool:
    try:
        with urllib.request.urlopen(f"{base}/health/liveliness", timeout=2):  # noqa: S310
            return True
    except OSError:
        return False


@contextmanager
def litellm_proxy(
    *, upstream: Mapping[str, Mapping[str, object]] | None = None, start_timeout_s: float = 120.0
) -> Iterator[LiteLLMProxy]:
    """Run the LiteLLM proxy with :data:`MODELS` (and ``upstream`` ones) until the block ends."""
    binary = litellm_binary()
    with tempfile.TemporaryDirectory(prefix="litellm-") as tmp:
        config = Path(tmp) / "config.yaml"
        config.write_text(_config(upstream or {}))
        port = free_port()
        env = {**os.environ, "LITELLM_LOCAL_MODEL_COST_MAP": "True",
               "LITELLM_MASTER_KEY": MASTER_KEY, "LITELLM_LOG": "ERROR"}  # fmt: skip
        log = (Path(tmp) / "proxy.log").open("w")
        process = subprocess.Popen(
            [str(binary), "--config", str(config), "--host", "127.0.0.1", "--port", str(port)],
            stdout=log, stderr=subprocess.STDOUT, env=env,
        )  # fmt: skip
        base = f"http://127.0.0.1:{port}"
        try:
            wait_until(lambda: _up(base) or process.poll() is not None, start_timeout_s,
                       what="the LiteLLM proxy to answer")  # fmt: skip
            if process.poll() is not None:
                tail = (Path(tmp) / "proxy.log").read_text()[-2000:]
                raise RuntimeError(f"the LiteLLM proxy exited at start: {tail}")
            yield LiteLLMProxy(f"{base}/v1")
        finally:
            process.terminate()
            try:
                process.wait(10)
            except subprocess.TimeoutExpired:
                process.kill()
            log.close()
