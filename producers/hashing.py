"""Sticky bucketing: a (salt, key) pair always lands in the same of 10,000 buckets."""

from __future__ import annotations

import hashlib

#: Buckets per route; a canary weight is a number of buckets (basis points).
BUCKETS = 10_000


def bucket(salt: str, key: str) -> int:
    r"""Return the bucket (0–9,999) of ``key`` under ``salt``.

    BLAKE2b keyed by nothing but the text ``salt + "\x1f" + key``: uniform, stable across
    processes, machines and Python versions (unlike ``hash()``), and about 0.4 µs a call.
    """
    digest = hashlib.blake2b(f"{salt}\x1f{key}".encode(), digest_size=8).digest()
    return int.from_bytes(digest, "big") % BUCKETS
