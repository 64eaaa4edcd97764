"""Stream owner keys: who may write to a stream (push frames, end it, add or remove its watches).

A stream id is a label (it shows in URLs, logs, a shared page), so it must not also be the key that
lets anyone write: the stream's creator gets a random key once, the stream stores only its SHA-256,
and any gateway can check a key against it (the hash lives with the stream in Redis). Anyone with
the server's token may still watch and ask.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets

KEY_BYTES = 24  # 192 random bits: not guessable, short enough for a URL or a config file


def new_key() -> tuple[str, str]:
    """(key for the creator, hash to store)."""
    key = secrets.token_urlsafe(KEY_BYTES)
    return key, key_hash(key)


def key_hash(key: str) -> str:
    return hashlib.sha256(key.encode()).hexdigest()


def key_matches(stored_hash: str | None, given: str | None) -> bool:
    """True when ``given`` is the key whose hash is stored (constant-time); never for a stream
    without a key (made before streams had owners: read-only over the WebSocket)."""
    if not stored_hash or not given:
        return False
    return hmac.compare_digest(key_hash(given), stored_hash)
