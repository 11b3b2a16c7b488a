"""The in-process store of the member rate limiter.

Litestar's ``MemoryStore`` takes an anyio lock around every get and set; on
one asyncio event loop those dictionary operations cannot interleave (nothing
between the read and the write awaits), so the lock only costs time: about a
twentieth of a member read.
"""

from __future__ import annotations

from datetime import timedelta

from litestar.stores.base import StorageObject
from litestar.stores.memory import MemoryStore


class LoopLocalStore(MemoryStore):
    """``MemoryStore`` for one event loop: the same semantics, no lock."""

    async def set(
        self, key: str, value: str | bytes, expires_in: int | timedelta | None = None
    ) -> None:
        if isinstance(value, str):
            value = value.encode("utf-8")
        self._store[key] = StorageObject.new(data=value, expires_in=expires_in)

    async def get(self, key: str, renew_for: int | timedelta | None = None) -> bytes | None:
        stored = self._store.get(key)
        if stored is None:
            return None
        if stored.expired:
            self._store.pop(key)
            return None
        if renew_for and stored.expires_at:
            stored = StorageObject.new(data=stored.data, expires_in=renew_for)
            self._store[key] = stored
        return stored.data
