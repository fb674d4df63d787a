r"""What services embed: the canary Router (live flags) and the never-blocking EventProducer.

::

    from producers import EventProducer, LiveRouter

    with LiveRouter(conf, "routing.flags", cache_path=cache) as router, \\
         EventProducer(conf, journal_path=journal) as events:
        assignment = router.choose("support-answer", key=user_id)
        ...
        events.emit_request(request_event)
"""

from producers.emitter import EventProducer, ProducerStats
from producers.hashing import BUCKETS, bucket
from producers.journal import Journal
from producers.live_router import LiveRouter
from producers.responses import TrackedResponse, track_response
from producers.router import Assignment, Router
from producers.tracking import Price, TrackedCall, track_request
from shadowlab.core.flags import clear_override, rollback, set_flags, weight_bp
from shadowlab.core.flags_io import FlagsClient, FlagsReader, load_cache, save_cache

__all__ = [
    "BUCKETS",
    "Assignment",
    "EventProducer",
    "FlagsClient",
    "FlagsReader",
    "Journal",
    "LiveRouter",
    "Price",
    "ProducerStats",
    "Router",
    "TrackedCall",
    "TrackedResponse",
    "bucket",
    "clear_override",
    "load_cache",
    "rollback",
    "save_cache",
    "set_flags",
    "track_request",
    "track_response",
    "weight_bp",
]
