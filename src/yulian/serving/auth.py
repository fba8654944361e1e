"""API keys: stored hashed (sha256 or scrypt), compared in constant time, scoped to models; deny by default.

    key, line = new_key("alice")     # "yl-...", and the YAML line `sha256: ...` to put in serve.yaml
    store = KeyStore(config.keys)
    store.authenticate("yl-...")     # -> Principal(id="alice", ...) or None
    principal.allows("support-bot")

Only hashes are kept in memory and in configuration files. A presented key is hashed with sha256 and compared to
every stored sha256 hash with `hmac.compare_digest` (no early exit, so timing says nothing about which key or how
much of it matched). scrypt hashes are verified once per presented key and process, then remembered by the key's
sha256, so a request pays for scrypt only the first time.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
import threading
from collections.abc import Sequence
from dataclasses import dataclass

from yulian.serving.config import KeyConfig

__all__ = ["KeyStore", "Principal", "hash_key", "new_key", "verify_scrypt"]

_SCRYPT_N, _SCRYPT_R, _SCRYPT_P = 2**14, 8, 1


def hash_key(key: str, method: str = "sha256") -> str:
    """The stored form of `key`: hex sha256, or `"scrypt$n$r$p$salt_hex$hash_hex"` with `method="scrypt"`."""
    if method == "sha256":
        return hashlib.sha256(key.encode()).hexdigest()
    if method == "scrypt":
        salt = secrets.token_bytes(16)
        digest = hashlib.scrypt(key.encode(), salt=salt, n=_SCRYPT_N, r=_SCRYPT_R, p=_SCRYPT_P, dklen=32)
        return f"scrypt${_SCRYPT_N}${_SCRYPT_R}${_SCRYPT_P}${salt.hex()}${digest.hex()}"
    raise ValueError(f"hash method must be 'sha256' or 'scrypt', got {method!r}")


def verify_scrypt(key: str, stored: str) -> bool:
    """Whether `key` matches a `"scrypt$n$r$p$salt_hex$hash_hex"` hash (constant-time comparison)."""
    try:
        _, n, r, p, salt, digest = stored.split("$")
        expected = bytes.fromhex(digest)
        actual = hashlib.scrypt(
            key.encode(), salt=bytes.fromhex(salt), n=int(n), r=int(r), p=int(p), dklen=len(expected)
        )
    except (ValueError, MemoryError):
        return False
    return hmac.compare_digest(actual, expected)


def new_key(key_id: str, method: str = "sha256") -> tuple[str, str]:
    """A fresh random API key (`yl-` + 43 url-safe characters) and the YAML snippet that declares it."""
    key = "yl-" + secrets.token_urlsafe(32)
    field = "sha256" if method == "sha256" else "scrypt"
    return key, f'- id: {key_id}\n  {field}: "{hash_key(key, method)}"\n  models: ["*"]'


@dataclass(frozen=True, slots=True)
class Principal:
    """Who made a request: the key's id and what it may do (never the key itself)."""

    id: str
    models: frozenset[str]
    metrics: bool
    config: KeyConfig

    def allows(self, name: str) -> bool:
        """Whether this key may use the model or chain `name`."""
        return "*" in self.models or name in self.models


class KeyStore:
    """The configured keys, by hash. `authenticate(key)` returns the `Principal` or None."""

    def __init__(self, keys: Sequence[KeyConfig]) -> None:
        self._sha = [(bytes.fromhex(k.sha256), _principal(k)) for k in keys if k.sha256]
        self._scrypt = [(k.scrypt, _principal(k)) for k in keys if k.scrypt]
        self._verified: dict[bytes, Principal | None] = {}
        self._lock = threading.Lock()

    def __len__(self) -> int:
        return len(self._sha) + len(self._scrypt)

    def authenticate(self, key: str) -> Principal | None:
        """The principal whose hash matches `key`, or None. Every stored sha256 hash is compared."""
        if not key or len(key) > 512:
            return None
        digest = hashlib.sha256(key.encode()).digest()
        found: Principal | None = None
        for stored, principal in self._sha:
            if hmac.compare_digest(stored, digest):  # constant time per hash; no early exit over hashes
                found = principal
        if found is not None or not self._scrypt:
            return found
        with self._lock:
            if digest in self._verified:
                return self._verified[digest]
        match = next((p for stored_s, p in self._scrypt if stored_s and verify_scrypt(key, stored_s)), None)
        with self._lock:
            if len(self._verified) > 10_000:  # bounded: unknown keys must not grow memory without end
                self._verified.clear()
            self._verified[digest] = match
        return match


def _principal(key: KeyConfig) -> Principal:
    return Principal(key.id, frozenset(key.models), key.metrics, key)


def bearer_token(authorization: str | None, api_key_header: str | None = None) -> str | None:
    """The key of a request: `Authorization: Bearer KEY` (what the openai client sends) or `x-api-key: KEY`."""
    if authorization:
        scheme, _, token = authorization.partition(" ")
        if scheme.lower() == "bearer" and token.strip():
            return token.strip()
    if api_key_header:
        return api_key_header.strip() or None
    return None
