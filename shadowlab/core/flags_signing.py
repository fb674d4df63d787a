"""Authentic routing flags: HMAC-SHA256 signatures on ``routing.flags`` messages.

Anyone who can write to ``routing.flags`` could otherwise reroute every request (an
``override``) or, with a huge version, make every later change look stale. With a key
configured, writers (the controller, the CLI, the admin API) sign each message and every
reader (a service's Router, the roles) installs only messages signed with a key it knows;
unsigned or forged ones are counted and logged, never installed.

The signature is the message header :data:`SIGNATURE_HEADER`:
``v1:<key id>:<hex HMAC-SHA256(key, message key + newline + value)>``, where the key id is the
first 8 hex digits of the key's SHA-256 (so readers know which key to check, and rotation
needs no numbering). The MAC comes from the standard library's :mod:`hmac`.
"""

from __future__ import annotations

import hashlib
import hmac
from collections.abc import Iterable
from dataclasses import dataclass

from pydantic import SecretStr

#: The Kafka header that carries a flags message's signature.
SIGNATURE_HEADER = "shadowlab.signature"
_SCHEME = "v1"


def key_id(key: SecretStr) -> str:
    """The key's public name: the first 8 hex digits of its SHA-256."""
    return hashlib.sha256(key.get_secret_value().encode()).hexdigest()[:8]


def _mac(key: SecretStr, message_key: bytes, value: bytes) -> str:
    return hmac.new(
        key.get_secret_value().encode(), message_key + b"\n" + value, hashlib.sha256
    ).hexdigest()


@dataclass(frozen=True)
class FlagsKeys:
    """The key writers sign with and every key readers accept.

    Args:
        signing: the key new messages are signed with (also accepted); ``None``: no signing.
        accepted: further keys whose signatures are accepted (a rotation's old key).
    """

    signing: SecretStr | None = None
    accepted: tuple[SecretStr, ...] = ()

    @classmethod
    def of(cls, signing: SecretStr | None, accepted: Iterable[SecretStr] = ()) -> FlagsKeys:
        """Keys from settings values."""
        return cls(signing, tuple(accepted))

    @property
    def required(self) -> bool:
        """Whether readers refuse unsigned messages (any key is configured)."""
        return self.signing is not None or bool(self.accepted)

    def sign(self, message_key: bytes, value: bytes) -> list[tuple[str, bytes]]:
        """The headers to send with a flags message (none without a signing key)."""
        if self.signing is None:
            return []
        mac = _mac(self.signing, message_key, value)
        return [(SIGNATURE_HEADER, f"{_SCHEME}:{key_id(self.signing)}:{mac}".encode())]

    def refusal(
        self, message_key: bytes, value: bytes, headers: Iterable[tuple[str, str | bytes | None]]
    ) -> str | None:
        """Why a message is not authentic, or ``None`` when it is (or nothing is required)."""
        if not self.required:
            return None
        signatures = [v for k, v in headers if k == SIGNATURE_HEADER and v is not None]
        if not signatures:
            return "unsigned"
        signature = signatures[-1]
        text = signature if isinstance(signature, str) else signature.decode("ascii", "replace")
        scheme, _, rest = text.partition(":")
        name, _, mac = rest.partition(":")
        if scheme != _SCHEME:
            return f"unknown signature scheme {scheme[:16]!r}"
        keys = {key_id(k): k for k in (self.signing, *self.accepted) if k is not None}
        key = keys.get(name)
        if key is None:
            return f"signed with an unknown key {name[:16]!r}"
        if not hmac.compare_digest(mac, _mac(key, message_key, value)):
            return "bad signature"
        return None


__all__ = ["SIGNATURE_HEADER", "FlagsKeys", "key_id"]
