"""HTTP header names on the wire between the shadow role, the evaluation and model servers.

The shadow role and ``shadowlab eval`` send :data:`EVENT_TIME_HEADER`; the model simulator
(:mod:`shadowlab.testing.model_server`) reads it and, when it compresses time, answers with
:data:`LATENCY_HEADER` and :data:`TTFT_HEADER`. Real endpoints ignore the first and never send
the other two.
"""

from __future__ import annotations

#: Request header carrying the event time of a (replayed) request, for drift profiles.
EVENT_TIME_HEADER = "X-Shadowlab-Event-Time"
#: Response headers of a time-compressing simulator (``time_scale`` ≠ 1): the latency and
#: time to first token it simulated, in simulated milliseconds. Clients record these instead
#: of their wall-clock measurements (see :func:`processors.clients.reported_timings`), so a
#: replay compressed 100× still records the model's latencies. Real endpoints never send them.
LATENCY_HEADER = "X-Shadowlab-Simulated-Latency-Ms"
TTFT_HEADER = "X-Shadowlab-Simulated-Ttft-Ms"

__all__ = ["EVENT_TIME_HEADER", "LATENCY_HEADER", "TTFT_HEADER"]
