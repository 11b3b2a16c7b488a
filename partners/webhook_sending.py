"""Sending deliveries: claim due ones, call their endpoints concurrently with
one HTTP client, record every outcome in a few set-based statements.

- A claim takes due deliveries (an update conditioned on their being due,
  so several senders share the work, none sending what another took) and
  leases them: ``next_attempt_at`` moves to the
  lease's end and ``lease`` names the claim. The claim commits before any
  call, so no transaction stays open across HTTP; a sender that dies
  mid-call leaves its deliveries to be claimed again when the lease ends,
  and sent again with the same ``webhook-id`` (at least once).
- Each endpoint gets a few calls at a time (``endpoint_slots``), one that is
  failing or timing out fewer (``failing_slots``), and a claim skips the
  endpoints whose slots are taken: a slow endpoint holds its own slots,
  never another's, nor the sender (outcomes are recorded as they come).
  A sender winding down (``claim(winding_down=...)``) goes on serving the
  other endpoints while a slow one's last calls hang.
- Each attempt is signed afresh (``webhook-timestamp`` now, in UTC) with
  the endpoint's secret, and with the previous one too during a rotation's
  overlap. Success is a 2xx answer within ``timeout``; redirects are not
  followed.
- Outcomes, recorded by ``partners.webhook_outcomes``, move each delivery
  along the retry schedule (``RETRY_DELAYS``) and keep the log.
"""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any, Protocol

import aiohttp
from sqlalchemy import bindparam, text
from sqlalchemy.dialects.postgresql import ARRAY, UUID
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker
from standardwebhooks import Webhook

from partners.webhook_outcomes import Outcome, record_outcomes
from partners.webhook_schemas import message_id
from partners.webhook_targets import TargetPolicy, refused_target

#: Characters of an answer's body kept in the log.
RESPONSE_HEAD = 1000


#: Seconds an attempt may take by default (the setting ``WEBHOOK_TIMEOUT_SECONDS``).
TIMEOUT = 15.0


@dataclass(frozen=True, kw_only=True)
class SendingOptions:
    #: Seconds an attempt may take in all (connect, send, answer).
    timeout: float = TIMEOUT
    #: Calls in flight at once, all endpoints together.
    in_flight_max: int = 500
    #: Calls in flight at once to one endpoint...
    endpoint_slots: int = 16
    #: ...and to one that is failing (``failing_since``) or timed out.
    failing_slots: int = 2
    #: How long a claim holds its deliveries: longer than any attempt.
    lease: timedelta = timedelta(seconds=4 * TIMEOUT)
    #: Seconds between two recordings of outcomes while calls are in flight.
    record_every: float = 0.1

    @classmethod
    def within(cls, timeout: float) -> SendingOptions:
        """Attempts of ``timeout`` seconds at most, and a lease to match:
        four times as long, for the outcome to be recorded well before it
        ends (a sender that dies mid-call is the only one to outlive it)."""
        return cls(timeout=timeout, lease=timedelta(seconds=4 * timeout))


class Transport(Protocol):
    """How an attempt reaches its endpoint (``HttpClients``: aiohttp)."""

    async def post(
        self, endpoint: uuid.UUID, url: str, body: bytes, headers: dict[str, str]
    ) -> tuple[int, bytes]: ...


@dataclass(frozen=True, kw_only=True)
class Claimed:
    id: uuid.UUID
    endpoint_id: uuid.UUID
    body: str
    #: This attempt's number (1 for the first).
    number: int
    retries_left: int
    url: str
    #: The secrets to sign with: the endpoint's, and its previous one
    #: during a rotation's overlap.
    secrets: tuple[str, ...]


def signature_header(secrets: tuple[str, ...], msg_id: str, at: datetime, body: str) -> str:
    """``webhook-signature``: a ``v1,<base64>`` entry per secret, space
    separated. ``at`` must be in UTC: the package reads any datetime's
    wall-clock digits as UTC."""
    if at.utcoffset() != timedelta(0):
        raise ValueError("webhook timestamps are signed in UTC")
    return " ".join(Webhook(secret).sign(msg_id, at, body) for secret in secrets)


_UUIDS = ARRAY(UUID(as_uuid=True))

# Fair between endpoints: up to ``per_endpoint`` due deliveries of each
# endpoint with deliveries pending (found by a skip scan of the index of
# pending deliveries, one probe per endpoint), so that an endpoint with a
# long backlog never fills the candidates. Read without locks: the sender
# leases those within each endpoint's free slots, and the lease's own
# condition (still due) settles a race with another sender, which
# re-evaluates it once the winner commits.
_CANDIDATES = text(
    "WITH RECURSIVE pending AS ("
    " (SELECT endpoint_id FROM webhook_deliveries WHERE status = 'pending'"
    " ORDER BY endpoint_id LIMIT 1)"
    " UNION ALL"
    " SELECT (SELECT d.endpoint_id FROM webhook_deliveries d WHERE d.status = 'pending'"
    " AND d.endpoint_id > p.endpoint_id ORDER BY d.endpoint_id LIMIT 1)"
    " FROM pending p WHERE p.endpoint_id IS NOT NULL)"
    " SELECT c.id, c.endpoint_id, e.failing_since IS NOT NULL AS failing"
    " FROM pending p JOIN webhook_endpoints e ON e.id = p.endpoint_id AND e.status = 'enabled'"
    " CROSS JOIN LATERAL (SELECT d.id, d.endpoint_id, d.next_attempt_at"
    " FROM webhook_deliveries d WHERE d.endpoint_id = p.endpoint_id AND d.status = 'pending'"
    " AND d.next_attempt_at <= :now ORDER BY d.next_attempt_at LIMIT :per_endpoint) c"
    " WHERE p.endpoint_id <> ALL(:saturated)"
    " ORDER BY c.next_attempt_at LIMIT :size"
).bindparams(bindparam("saturated", type_=_UUIDS))

_LEASE = text(
    "UPDATE webhook_deliveries d SET lease = :lease, next_attempt_at = :until,"
    " attempts = d.attempts + 1"
    " FROM webhook_endpoints e WHERE d.id = ANY(:ids) AND e.id = d.endpoint_id"
    " AND d.status = 'pending' AND d.next_attempt_at <= :now AND e.status = 'enabled'"
    " RETURNING d.id, d.endpoint_id, d.body, d.attempts, d.retries_left, e.url, e.secret,"
    " CASE WHEN e.previous_secret_expires_at > :now THEN e.previous_secret END AS previous"
).bindparams(bindparam("ids", type_=_UUIDS))


class Sender:
    """One sending run's state: its lease, its calls in flight per
    endpoint, the outcomes not yet recorded."""

    def __init__(
        self,
        sessions: async_sessionmaker[AsyncSession],
        clients: Transport,
        *,
        options: SendingOptions,
        policy: TargetPolicy,
        started: datetime,
        signing_clock: Callable[[], datetime] = lambda: datetime.now(UTC),
    ) -> None:
        self.sessions = sessions
        #: The real time, in UTC, that signatures are stamped with (a
        #: receiver compares it with its own clock).
        self.signing_clock = signing_clock
        self.clients = clients
        self.options = options
        self.policy = policy
        self.lease = uuid.uuid4()
        self._started = (started, time.monotonic())
        self._tasks: set[asyncio.Task[None]] = set()
        #: Each call's endpoint and the monotonic time it started.
        self._calls: dict[asyncio.Task[None], tuple[uuid.UUID, float]] = {}
        self._in_flight: dict[uuid.UUID, int] = {}
        self._slow: set[uuid.UUID] = set()
        self._outcomes: list[Outcome] = []
        self._recorded_at = time.monotonic()
        self.sent = 0

    def now(self) -> datetime:
        """The run's clock: its start (the job's ``now``) and the time since."""
        at, started = self._started
        return at + timedelta(seconds=time.monotonic() - started)

    @property
    def in_flight(self) -> int:
        return len(self._tasks)

    def lingering(self, since: float) -> bool:
        """Whether a call started before ``since`` (monotonic) is in flight."""
        return any(started < since for _, started in self._calls.values())

    def _slots(self, endpoint: uuid.UUID, failing: bool) -> int:
        if failing or endpoint in self._slow:
            return self.options.failing_slots
        return self.options.endpoint_slots

    async def claim(self, *, winding_down: float | None = None) -> int:
        """Lease due deliveries within the free slots and start their calls;
        answers how many. A sender winding down since ``winding_down``
        (monotonic) starts none to an endpoint that is failing, has timed
        out, or still has a call from before then: it serves the others
        while those calls end, and starts no new slow one."""
        free = self.options.in_flight_max - len(self._tasks)
        if free <= 0:
            return 0
        now = self.now()
        saturated = [
            endpoint
            for endpoint, count in self._in_flight.items()
            if count >= self._slots(endpoint, False)
        ]
        if winding_down is not None:
            saturated.extend(self._slow)
            saturated.extend(e for e, started in self._calls.values() if started < winding_down)
        async with self.sessions() as session, session.begin():
            candidates = (
                await session.execute(
                    _CANDIDATES,
                    {
                        "now": now,
                        "saturated": saturated,
                        "size": free,
                        "per_endpoint": self.options.endpoint_slots,
                    },
                )
            ).all()
            taken: list[uuid.UUID] = []
            counts = dict(self._in_flight)
            for row in candidates:
                if winding_down is not None and row.failing:
                    continue
                if counts.get(row.endpoint_id, 0) < self._slots(row.endpoint_id, row.failing):
                    counts[row.endpoint_id] = counts.get(row.endpoint_id, 0) + 1
                    taken.append(row.id)
            if not taken:
                return 0
            rows = (
                await session.execute(
                    _LEASE,
                    {
                        "lease": self.lease,
                        "until": now + self.options.lease,
                        "ids": taken,
                        "now": now,
                    },
                )
            ).all()
        for row in rows:
            claimed = Claimed(
                id=row.id,
                endpoint_id=row.endpoint_id,
                body=row.body,
                number=row.attempts,
                retries_left=row.retries_left,
                url=row.url,
                secrets=(row.secret, row.previous) if row.previous else (row.secret,),
            )
            self._in_flight[claimed.endpoint_id] = self._in_flight.get(claimed.endpoint_id, 0) + 1
            task = asyncio.create_task(self._attempt(claimed))
            self._tasks.add(task)
            self._calls[task] = (claimed.endpoint_id, time.monotonic())
            task.add_done_callback(self._call_ended)
        return len(rows)

    def _call_ended(self, task: asyncio.Task[None]) -> None:
        self._tasks.discard(task)
        self._calls.pop(task, None)

    async def _attempt(self, claimed: Claimed) -> None:
        attempted_at = self.now()
        started = time.monotonic()
        status: int | None = None
        head: str | None = None
        error: str | None = None
        try:
            refused = await refused_target(claimed.url, self.policy)
            if refused:
                error = f"not sent: {refused}"
            else:
                code, head = await asyncio.wait_for(self._post(claimed), self.options.timeout)
                status = code
                if not 200 <= code < 300:
                    error = f"answered {code}"
        except TimeoutError:
            self._slow.add(claimed.endpoint_id)
            error = f"no answer within {self.options.timeout:g} s"
        except aiohttp.ServerDisconnectedError as failure:
            error = f"the connection closed without an answer ({failure})"
        except aiohttp.ClientError as failure:
            error = f"{type(failure).__name__}: {failure}"
        except Exception as failure:  # an unforeseen failure is an attempt's outcome too
            error = f"{type(failure).__name__}: {failure}"
        latency = round((time.monotonic() - started) * 1000)
        self._in_flight[claimed.endpoint_id] -= 1
        if not self._in_flight[claimed.endpoint_id]:
            del self._in_flight[claimed.endpoint_id]
        self._outcomes.append(
            Outcome(
                delivery_id=claimed.id,
                endpoint_id=claimed.endpoint_id,
                lease=self.lease,
                number=claimed.number,
                retries_left=claimed.retries_left,
                attempted_at=attempted_at,
                status_code=status,
                latency_ms=latency,
                succeeded=error is None,
                error=(error or "")[:500].replace("\x00", "") or None,
                response_head=head,
            )
        )

    async def _post(self, claimed: Claimed) -> tuple[int, str]:
        msg_id = message_id(claimed.id)
        # Signed now, at each attempt: a receiver refuses old timestamps.
        signed_at = self.signing_clock()
        headers = {
            "content-type": "application/json",
            "user-agent": "Coalition-Webhooks/1",
            "webhook-id": msg_id,
            "webhook-timestamp": str(int(signed_at.timestamp())),
            "webhook-signature": signature_header(claimed.secrets, msg_id, signed_at, claimed.body),
        }
        code, head = await self.clients.post(
            claimed.endpoint_id, claimed.url, claimed.body.encode(), headers
        )
        text_head = head[:RESPONSE_HEAD].decode("utf-8", "replace").replace("\x00", "")
        return code, text_head[:RESPONSE_HEAD]

    async def record(self, *, force: bool = False) -> int:
        """Record the outcomes so far (every ``record_every`` unless forced)."""
        if not self._outcomes:
            return 0
        if not force and time.monotonic() - self._recorded_at < self.options.record_every:
            return 0
        outcomes, self._outcomes = self._outcomes, []
        self._recorded_at = time.monotonic()
        async with self.sessions() as session, session.begin():
            await record_outcomes(session, outcomes, self.now())
        self.sent += len(outcomes)
        return len(outcomes)

    async def wait(self, seconds: float, wake: asyncio.Event | None = None) -> None:
        """Until a call ends (its slot is free), ``wake`` is set (new
        deliveries made, say) or ``seconds`` pass."""
        waiting: set[asyncio.Future[Any]] = set(self._tasks)
        woken = asyncio.ensure_future(wake.wait()) if wake is not None else None
        if woken is not None:
            waiting.add(woken)
        try:
            if waiting:
                await asyncio.wait(waiting, timeout=seconds, return_when="FIRST_COMPLETED")
            else:
                await asyncio.sleep(seconds)
        finally:
            if woken is not None:
                woken.cancel()

    async def finish(self) -> None:
        """Wait for every call in flight and record every outcome."""
        while self._tasks:
            await asyncio.wait(set(self._tasks))
        await self.record(force=True)


async def deliver_due(
    sessions: async_sessionmaker[AsyncSession],
    clients: Transport,
    now: datetime,
    *,
    policy: TargetPolicy,
    options: SendingOptions = SendingOptions(),
) -> int:
    """One claim of due deliveries at ``now``, sent and recorded; answers
    how many were attempted."""
    sender = Sender(sessions, clients, options=options, policy=policy, started=now)
    await sender.claim()
    await sender.finish()
    return sender.sent


class HttpClients:
    """The sender's HTTP client: one aiohttp session whose connections stay
    open between attempts and runs (a TLS handshake per delivery would cost
    more than the delivery). Its pool is unbounded: the sender bounds the
    calls per endpoint itself (its slots). aiohttp rather than httpx: on
    this path httpx's pool cost 1-2 ms of CPU per request, which capped a
    worker near 500 deliveries/s where aiohttp passes 1,400/s."""

    def __init__(self) -> None:
        self._session: aiohttp.ClientSession | None = None

    def _client(self) -> aiohttp.ClientSession:
        if self._session is None or self._session.closed:
            self._session = aiohttp.ClientSession(
                connector=aiohttp.TCPConnector(limit=0, limit_per_host=0),
                # Every bound is the sender's own (``SendingOptions.timeout``).
                timeout=aiohttp.ClientTimeout(total=None),
                # No proxy from the environment: the worker's own egress rules apply.
                trust_env=False,
                auto_decompress=False,
            )
        return self._session

    async def post(
        self, endpoint: uuid.UUID, url: str, body: bytes, headers: dict[str, str]
    ) -> tuple[int, bytes]:
        """The answer's status and the start of its body."""
        async with self._client().post(
            url, data=body, headers=headers, allow_redirects=False
        ) as answer:
            head = await answer.content.read(RESPONSE_HEAD)
            return answer.status, head

    async def aclose(self) -> None:
        session, self._session = self._session, None
        if session is not None:
            await session.close()


_clients: dict[asyncio.AbstractEventLoop, HttpClients] = {}


def http_clients() -> HttpClients:
    """The sender's HTTP clients of this event loop (a worker thread's)."""
    loop = asyncio.get_running_loop()
    for closed in [other for other in _clients if other.is_closed()]:
        del _clients[closed]
    return _clients.setdefault(loop, HttpClients())
