"""Calls a model on every golden item through the ``openai`` client, concurrently within limits.

The context documents are the system message and the question the user message, as a
retrieval-augmented service would send them. Latency is the wall time of the call; cost
comes from the usage the endpoint reports and the price table of the settings.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable, Sequence

import openai

from processors.clients import reported_timings
from processors.evaluation.golden import GoldenItem, ItemResult, Matcher, is_correct
from shadowlab.core.errors import ConfigError
from shadowlab.core.settings import ModelEndpoint

#: Scores an answer's faithfulness to the context (1–5), or ``None`` when it cannot.
Faithfulness = Callable[[str, str, list[str]], Awaitable[float | None]]


async def check_reachable(client: openai.AsyncOpenAI, endpoint: ModelEndpoint) -> None:
    """Fail fast, naming the URL, when the endpoint cannot be reached at all.

    Raises:
        ConfigError: the connection failed (refused, DNS, TLS, timeout).
    """
    try:
        await client.with_options(
            timeout=min(endpoint.timeout_s, 10.0), max_retries=0
        ).models.list()
    except openai.APIConnectionError as exc:
        cause = exc.__cause__ or exc
        raise ConfigError(
            f"cannot reach model {endpoint.name!r} at {endpoint.base_url}: "
            f"{type(cause).__name__}: {cause}; check `models` in the config and that the "
            "endpoint is up"
        ) from None
    except openai.APIStatusError:
        pass  # it answered: some endpoints do not list models, which is fine


def golden_messages(item: GoldenItem) -> list[dict[str, str]]:
    """The chat messages of a question: each context document a system message, then it."""
    messages = [{"role": "system", "content": doc} for doc in item.context]
    return [*messages, {"role": "user", "content": item.question}]


async def ask(
    client: openai.AsyncOpenAI,
    endpoint: ModelEndpoint,
    item: GoldenItem,
    matcher: Matcher,
    faithfulness: Faithfulness | None = None,
) -> ItemResult:
    """Ask ``endpoint`` one golden item and score the answer (errors are results, not raised)."""
    started = time.perf_counter()
    try:
        raw = await client.chat.completions.with_raw_response.create(
            model=endpoint.upstream_name or endpoint.name,
            messages=golden_messages(item),  # type: ignore[arg-type]
            temperature=0,
        )
        response = raw.parse()
    except openai.APITimeoutError:
        return _failed(item, "timeout", started, "APITimeoutError")
    except openai.APIError as exc:
        return _failed(item, "error", started, type(exc).__name__)
    # a time-compressing simulator reports the latency it simulated; else the wall clock
    latency_ms = reported_timings(raw.headers)[0] or (time.perf_counter() - started) * 1000
    answer = response.choices[0].message.content if response.choices else None
    usage = response.usage  # not reported: unknown (null), not 0
    prompt = usage.prompt_tokens if usage else None
    completion = usage.completion_tokens if usage else None
    score = None
    if faithfulness is not None and item.context and answer:
        score = await faithfulness(item.question, answer, item.context)
    return ItemResult(
        item_id=item.id,
        status="ok",
        answer=answer,
        latency_ms=latency_ms,
        prompt_tokens=prompt,
        completion_tokens=completion,
        cost_usd=endpoint.cost(prompt, completion)
        if prompt is not None and completion is not None
        else None,
        correct=is_correct(item, answer, matcher),
        faithfulness=score,
    )


def _failed(item: GoldenItem, status: str, started: float, error: str) -> ItemResult:
    return ItemResult(
        item_id=item.id,
        status="timeout" if status == "timeout" else "error",
        answer=None,
        latency_ms=(time.perf_counter() - started) * 1000,
        prompt_tokens=0,
        completion_tokens=0,
        cost_usd=0.0,
        correct=False,
        error=error,
    )


async def run_items(
    client: openai.AsyncOpenAI,
    endpoint: ModelEndpoint,
    items: Sequence[GoldenItem],
    matcher: Matcher,
    *,
    concurrency: int,
    faithfulness: Faithfulness | None = None,
    on_done: Callable[[ItemResult], None] | None = None,
) -> list[ItemResult]:
    """Every item through ``endpoint``, at most ``concurrency`` calls at once, in item order."""
    limit = asyncio.Semaphore(concurrency)

    async def ask_limited(item: GoldenItem) -> ItemResult:
        async with limit:
            result = await ask(client, endpoint, item, matcher, faithfulness)
        if on_done is not None:
            on_done(result)
        return result

    return list(await asyncio.gather(*(ask_limited(item) for item in items)))
