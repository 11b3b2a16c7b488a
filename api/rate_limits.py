"""The member API's rate limit: requests per member per minute, shared by
every worker and process when Redis is configured.

Each member has a window of one minute that opens with their first request
(as Litestar's middleware did): the window's count is taken in one step, and
the answer carries the ``RateLimit-*`` headers; past the limit it is an RFC
9457 ``too-many-requests`` problem with ``Retry-After``, the seconds until the
window closes. As with any fixed window, a member who spends the whole limit
at the end of one window and again at the start of the next makes up to twice
the limit in a minute straddling the two.

Why not the ``limits`` library (measured on this VM): its in-process store
schedules a scan of every key after each hit (3.1 ms a hit with 20,000
members, against 7 us without the scan), and its strategies answer only
"allowed or not", so the ``RateLimit-*`` headers would cost Redis a second
round trip per request. Here Redis gets one script call per batch: the hits
of the requests that arrive while a call is in flight go together in the next
one, since each round trip costs this VM about 200 us of CPU, a quarter of a
member's balance read.
"""

from __future__ import annotations

import asyncio
import logging
import math
import time
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from http import HTTPStatus
from typing import Any

import redis.asyncio
from litestar import Litestar
from litestar.enums import ScopeType
from litestar.types import ASGIApp, Message, Receive, Scope, Send

from api.problems import problem
from api.settings import Settings

log = logging.getLogger(__name__)

#: Seconds of a member's window.
WINDOW = 60
#: Seconds the in-process count stands in for Redis after Redis failed.
REDIS_BACKOFF = 5.0
#: Seconds a Redis call may take before it counts as failed.
REDIS_TIMEOUT = 1.0
KEY_PREFIX = "coalition:rate:"

#: Each key's count in its window and the window's remaining milliseconds,
#: opening the window (with its expiry) at the first hit: one call, any keys.
_HIT_SCRIPT = """
local window = tonumber(ARGV[1])
local out = {}
for i, key in ipairs(KEYS) do
  local count = redis.call('INCR', key)
  local ttl = window
  if count == 1 then
    redis.call('PEXPIRE', key, window)
  else
    ttl = redis.call('PTTL', key)
    if ttl < 0 then
      redis.call('PEXPIRE', key, window)
      ttl = window
    end
  end
  out[2 * i - 1] = count
  out[2 * i] = ttl
end
return out
"""


class LocalCounter:
    """Windows in this process's memory: right for a single process only."""

    def __init__(self, window: float = WINDOW, clock: Callable[[], float] = time.monotonic) -> None:
        self._window = window
        self._clock = clock
        self._windows: dict[str, list[float]] = {}
        self._next_sweep = clock() + window

    async def hit(self, key: str) -> tuple[int, float]:
        """The key's requests in its window, this one included, and the
        seconds until the window closes (as ``RedisCounter.hit``)."""
        now = self._clock()
        if now >= self._next_sweep:
            self._sweep(now)
        entry = self._windows.get(key)
        if entry is None or entry[1] <= now:
            entry = self._windows[key] = [0, now + self._window]
        entry[0] += 1
        # (now + window) - now can exceed the window by a rounding error.
        return int(entry[0]), min(self._window, entry[1] - now)

    def _sweep(self, now: float) -> None:
        # Once a window: forget the closed windows, so members who left do
        # not stay in memory.
        self._windows = {k: v for k, v in self._windows.items() if v[1] > now}
        self._next_sweep = now + self._window


class RedisCounter:
    """Windows in Redis, shared by every process using the same Redis.

    One call in flight at a time; the hits that arrive meanwhile go together
    in the next call. The client is opened on the event loop that uses it.
    """

    def __init__(self, url: str, window: float = WINDOW) -> None:
        self._url = url
        self._window_ms = int(window * 1000)
        self._client: redis.asyncio.Redis | None = None
        self._script: Any = None
        self._queue: list[tuple[str, asyncio.Future[tuple[int, float]]]] = []
        self._flushing: asyncio.Task[None] | None = None

    async def hit(self, key: str) -> tuple[int, float]:
        future: asyncio.Future[tuple[int, float]] = asyncio.get_running_loop().create_future()
        self._queue.append((KEY_PREFIX + key, future))
        if self._flushing is None:
            # Held here: the event loop keeps only a weak reference to a task.
            self._flushing = asyncio.get_running_loop().create_task(self._flush())
        return await future

    async def _flush(self) -> None:
        try:
            while self._queue:
                batch, self._queue = self._queue, []
                try:
                    counts = await self._call([key for key, _ in batch])
                except Exception as error:
                    for _, future in batch:
                        if not future.done():
                            future.set_exception(error)
                    continue
                for i, (_, future) in enumerate(batch):
                    if not future.done():
                        future.set_result((int(counts[2 * i]), int(counts[2 * i + 1]) / 1000))
        finally:
            self._flushing = None

    async def _call(self, keys: list[str]) -> list[int]:
        if self._client is None:
            self._client = redis.asyncio.Redis.from_url(
                self._url, socket_timeout=REDIS_TIMEOUT, socket_connect_timeout=REDIS_TIMEOUT
            )
            self._script = self._client.register_script(_HIT_SCRIPT)
        result: list[int] = await self._script(keys=keys, args=[self._window_ms])
        return result

    async def close(self) -> None:
        if self._client is not None:
            await self._client.aclose()
            self._client = None


class MemberRateLimit:
    """The limit, as a middleware of the member routes."""

    def __init__(self, limit: int, key: Callable[[Scope], str], redis_url: str | None) -> None:
        self.limit = limit
        self._key = key
        self._local = LocalCounter()
        self._redis = RedisCounter(redis_url) if redis_url else None
        self._redis_down_until = 0.0
        self._policy = f"{limit}; w={WINDOW}".encode()
        self._limit_header = str(limit).encode()

    async def count(self, key: str) -> tuple[int, float]:
        if self._redis is None or time.monotonic() < self._redis_down_until:
            return await self._local.hit(key)
        try:
            return await self._redis.hit(key)
        except (redis.RedisError, OSError) as error:
            # Fail open: a member is never refused because the limiter's
            # store is down. For a few seconds this process counts on its own
            # (each process allows the limit) without waiting on Redis.
            now = time.monotonic()
            if now >= self._redis_down_until:
                log.warning(
                    "rate limits: Redis failed (%r); counting in this process for %.0f s",
                    error,
                    REDIS_BACKOFF,
                )
            self._redis_down_until = now + REDIS_BACKOFF
            return await self._local.hit(key)

    def middleware(self, app: ASGIApp) -> ASGIApp:
        async def limited(scope: Scope, receive: Receive, send: Send) -> None:
            if scope["type"] != ScopeType.HTTP:
                await app(scope, receive, send)
                return
            count, closes_in = await self.count(self._key(scope))
            seconds = max(1, math.ceil(closes_in))
            if count > self.limit:
                raise problem(
                    HTTPStatus.TOO_MANY_REQUESTS,
                    "too-many-requests",
                    f"more than {self.limit} requests in {WINDOW} s; retry in {seconds} s",
                    headers={
                        "Retry-After": str(seconds),
                        "RateLimit-Policy": self._policy.decode(),
                        "RateLimit-Limit": str(self.limit),
                        "RateLimit-Remaining": "0",
                        "RateLimit-Reset": str(seconds),
                    },
                )
            extra = [
                (b"ratelimit-policy", self._policy),
                (b"ratelimit-limit", self._limit_header),
                (b"ratelimit-remaining", str(self.limit - count).encode()),
                (b"ratelimit-reset", str(seconds).encode()),
            ]

            async def send_with_headers(message: Message) -> None:
                if message["type"] == "http.response.start":
                    message["headers"] = [*message.get("headers", ()), *extra]
                await send(message)

            await app(scope, receive, send_with_headers)

        return limited

    @asynccontextmanager
    async def lifespan(self, _app: Litestar) -> AsyncIterator[None]:
        try:
            yield
        finally:
            if self._redis is not None:
                await self._redis.close()


def member_rate_limit(settings: Settings, key: Callable[[Scope], str]) -> MemberRateLimit:
    if settings.redis_url is None and settings.workers > 1:
        log.warning(
            "rate limits: %d workers without REDIS_URL count each on their own:"
            " a member may make up to %d requests a minute",
            settings.workers,
            settings.workers * settings.member_rate_limit,
        )
    return MemberRateLimit(settings.member_rate_limit, key, settings.redis_url)
