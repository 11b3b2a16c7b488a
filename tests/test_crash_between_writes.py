"""The process dies between any two writes of a use case: one retry of the
same request (same ids, same Idempotency-Key) must end in exactly the state
of a run that never crashed, and answer the same success.

For each use case (one row of ``USE_CASES``): a clean run on a fresh program
counts the writes and snapshots what it left (every row written since the
program was built, ids numbered, clocks left out: ``tests/crash_points.py``);
then for n = 1, 2, ... another fresh program, built the same way, runs the
use case with the process killed right after its n-th write (on whichever
connection: the ORM session's, the ledger writer's, the app's pool, the
intake's), and the retry's state and answer are compared with the clean
run's, until a run reaches no n-th write.
"""

from __future__ import annotations

import asyncio
import itertools
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any, cast

import asyncpg
import httpx
import pytest
from litestar import Litestar
from sqlalchemy.ext.asyncio import AsyncEngine, async_sessionmaker

from api.app import create_app
from api.settings import Settings
from core.principal import Principal, PrincipalKind, system
from core.programs import get_program
from partners.acceptance import reserve_points
from partners.coalition_schemas import CheckoutHold, IssuanceRequest
from partners.issuance import issue_points
from rewards.expiry import expire_points
from tests.api.conftest import ADMIN_TOKEN, AUTH
from tests.api.test_member_api import SECRET, bearer, token
from tests.crash_points import (
    CrashPoints,
    Snapshot,
    changed_since,
    difference,
    intercepted,
    mark,
)

#: Rules are in force from here on, and the requests' events happen after.
RULES_FROM = "2026-01-01T00:00:00+00:00"
OCCURRED_AT = "2026-06-01T10:00:00+00:00"
#: Expiry is run this far ahead of the clock: every point credited now is due.
EXPIRY_MONTHS = 12
#: A run that goes on past this many crash points is a bug of the test.
MAX_POINTS = 60

_programs = itertools.count(1)


@dataclass
class World:
    """One fresh program and what its setup learned (e.g. a hold's id)."""

    http: httpx.AsyncClient
    app: Litestar
    side: asyncpg.Connection
    slug: str
    found: dict[str, Any] = field(default_factory=dict)

    async def post(
        self,
        path: str,
        body: dict[str, Any] | None = None,
        *,
        member: str | None = None,
        key: str | None = None,
    ) -> httpx.Response:
        headers = dict(AUTH)
        if member is not None:
            headers = bearer(token(self.slug, member))
        if key is not None:
            headers["Idempotency-Key"] = key
        return await self.http.post(path.format(slug=self.slug), json=body, headers=headers)

    async def setup(self, path: str, body: dict[str, Any] | None = None, **kw: Any) -> Any:
        response = await self.post(path, body, **kw)
        assert response.status_code in (200, 201), response.text
        return response.json()


Step = Callable[[World], Awaitable[None]]
Request = Callable[[World], Awaitable[httpx.Response]]


# -- Setups: each builds on the previous one ------------------------------


async def program(w: World, window_days: int = 0) -> None:
    await w.setup(
        "/programs",
        {
            "slug": w.slug,
            "name": "Crash rewards",
            "currency": "ZAR",
            "point_value_minor": "0.5",
            "return_window_days": window_days,
        },
    )


async def rules(w: World) -> None:
    """Version 1 (1 point per unit, 50 a gym visit) in force since RULES_FROM:
    published in the past by hand, since the API publishes from now on."""
    events = {"gym-visit": {"points": 50, "per_member_per_day": 50}}
    await w.setup("/programs/{slug}/rules", {"rules": {"points_per_unit": "1", "events": events}})
    await w.side.execute(
        "UPDATE earn_rule_versions SET status = 'published', effective_from = $2,"
        " published_at = now() WHERE version = 1"
        " AND program_id = (SELECT id FROM programs WHERE slug = $1)",
        w.slug,
        datetime.fromisoformat(RULES_FROM),
    )


async def ann(w: World) -> None:
    await w.setup("/programs/{slug}/members", {"external_id": "ann"})


async def ben(w: World) -> None:
    await w.setup("/programs/{slug}/members", {"external_id": "ben"})


async def funded(w: World) -> None:
    await w.setup(
        "/programs/{slug}/members/ann/adjustments",
        {"adjustment_id": "FUND-1", "points": 1000, "reason": "welcome"},
    )


async def mug(w: World) -> None:
    await w.setup(
        "/programs/{slug}/rewards", {"sku": "MUG", "name": "Mug", "points_price": 40, "stock": 5}
    )


async def bought(w: World) -> None:
    await w.setup("/programs/{slug}/purchases", PURCHASE)


async def held(w: World) -> None:
    hold = await w.setup(
        "/me/holds", {"order_ref": "ORD-1", "amount_minor": 50}, member="ann", key="h-1"
    )
    w.found["hold"] = hold["id"]


async def drafted(w: World) -> None:
    await w.setup("/programs/{slug}/rules", {"rules": {"points_per_unit": "2"}})


async def expiring(w: World) -> None:
    await w.side.execute(
        "UPDATE programs SET expiry_policy = 'fixed', expiry_months = $2 WHERE slug = $1",
        w.slug,
        EXPIRY_MONTHS,
    )


async def timed_out(w: World) -> None:
    """The hold's pending transfer is past its timeout (set back by hand: the
    API's shortest timeout is a second)."""
    await w.side.execute(
        "UPDATE pending_expiries SET expires_at = now() - interval '1 minute'"
        " WHERE transfer_id = (SELECT transfer_id FROM point_holds WHERE id = $1)",
        uuid.UUID(w.found["hold"]),
    )


async def windowed(w: World) -> None:
    await program(w, window_days=14)


# -- Requests ---------------------------------------------------------------

PURCHASE = {
    "member": "ann",
    "order_id": "O-1",
    "amount_minor": 2500,
    "currency": "ZAR",
    "occurred_at": OCCURRED_AT,
}


def operator(path: str, body: dict[str, Any] | None = None) -> Request:
    async def send(w: World) -> httpx.Response:
        return await w.post(path.format(hold=w.found.get("hold"), slug="{slug}"), body)

    return send


def member(path: str, body: dict[str, Any] | None, key: str | None) -> Request:
    async def send(w: World) -> httpx.Response:
        return await w.post(path.format(hold=w.found.get("hold")), body, member="ann", key=key)

    return send


async def open_program(w: World) -> httpx.Response:
    return await w.post(
        "/programs",
        {
            "slug": w.slug,
            "name": "Crash rewards",
            "currency": "ZAR",
            "point_value_minor": "0.5",
            "return_window_days": 0,
        },
    )


async def issue_key(w: World) -> httpx.Response:
    return await w.post("/api-keys", {"name": f"key-{w.slug}", "scopes": ["programs:read"]})


async def expire_due_points(w: World) -> httpx.Response:
    """The expiry job's unit for one program, a term ahead of the clock (the
    job's route runs on the server's clock only)."""
    at = datetime.now(UTC) + timedelta(days=31 * (EXPIRY_MONTHS + 1))
    # The app's engine, under the key its SQLAlchemy plugin chose.
    [engine] = [v for v in w.app.state.dict().values() if isinstance(v, AsyncEngine)]
    sessions = async_sessionmaker(engine, expire_on_commit=False)
    try:
        async with sessions() as session:
            found = await get_program(session, system("expire-points"), w.slug)
            done = await expire_points(session, w.app.state.ledger, found, at)
    except Exception as error:
        return httpx.Response(500, json={"error": repr(error)})
    return httpx.Response(200, json={"done": done})


# -- Coalition points: a partner firm ``p`` and its contract -----------------

CONTRACT = {
    "roles": "both",
    "issue_price_per_point": "1.5",
    "redemption_rate_per_point": "1",
    "funding_model": "prepaid",
}


async def partner_firm(w: World) -> None:
    await w.setup(
        "/programs/{slug}/partners",
        {
            "slug": "p",
            "name": "Fuel",
            "legal_name": "Fuel Ltd",
            "country": "ZA",
            "status": "active",
        },
    )


async def contract_drafted(w: World) -> None:
    await w.setup("/programs/{slug}/partners/p/contracts", CONTRACT)


async def postpaid_drafted(w: World) -> None:
    terms = CONTRACT | {"funding_model": "postpaid", "credit_limit_points": 1000}
    await w.setup("/programs/{slug}/partners/p/contracts", terms)


async def contract_published(w: World) -> None:
    await contract_drafted(w)
    # The first version may start in the past, from the firm's creation on.
    await w.setup(
        "/programs/{slug}/partners/p/contracts/1/publication",
        {"effective_from": datetime.now(UTC).isoformat()},
    )


async def partner_funded(w: World) -> None:
    await w.setup(
        "/programs/{slug}/partners/p/funding",
        {"reference": "INV-1", "points": 1000, "amount_minor": 1500},
    )


async def partner_client(w: World) -> Principal:
    """A client of the firm ``p`` (the partner API's token stands for one)."""
    row = await w.side.fetchrow(
        "SELECT p.id, p.program_id FROM partners p JOIN programs g ON g.id = p.program_id"
        " WHERE g.slug = $1 AND p.slug = 'p'",
        w.slug,
    )
    assert row is not None
    return Principal(
        kind=PrincipalKind.PARTNER,
        actor="partner:crash",
        scopes=frozenset({"points:issue", "points:redeem"}),
        program_id=row["program_id"],
        partner_id=row["id"],
        partner_ids=frozenset({row["id"]}),
    )


async def partner_issuance(w: World) -> httpx.Response:
    """What ``POST /partner/issuances`` runs (on the app's pool)."""
    request = IssuanceRequest(transaction_id="T-1", member="ann", points=40)
    principal = await partner_client(w)
    try:
        view = await issue_points(
            w.app.state.pool, w.app.state.ledger, request, datetime.now(UTC), principal=principal
        )
    except Exception as error:
        return httpx.Response(500, json={"error": repr(error)})
    return httpx.Response(200 if view.replayed else 201, json={"id": view.id})


async def partner_hold(w: World) -> httpx.Response:
    """What ``POST /partner/holds`` runs (in the request's session)."""
    request = CheckoutHold(checkout_id="C-1", member="ann", points=30)
    principal = await partner_client(w)
    [engine] = [v for v in w.app.state.dict().values() if isinstance(v, AsyncEngine)]
    try:
        async with async_sessionmaker(engine, expire_on_commit=False)() as session:
            view = await reserve_points(
                session, w.app.state.ledger, request, datetime.now(UTC), principal=principal
            )
            await session.commit()
    except Exception as error:
        return httpx.Response(500, json={"error": repr(error)})
    return httpx.Response(200 if view.replayed else 201, json={"id": view.id})


async def partner_issued(w: World) -> None:
    response = await partner_issuance(w)
    assert response.status_code == 201, response.text


@dataclass(frozen=True)
class UseCase:
    name: str
    setup: tuple[Step, ...]
    request: Request
    #: Why the use case does not converge at HEAD (an expected failure).
    broken: str | None = None
    #: A job over the whole database: run once first, so that only this
    #: program's work is due.
    drain: Request | None = None
    #: A job: its ``job.run`` audit line records a run, not a change, and a
    #: second run is audited as one (with what it found still due).
    job: bool = False


def job(name: str) -> Request:
    return operator(f"/jobs/{name}/runs")


USE_CASES = [
    UseCase("open program", (), open_program),
    UseCase(
        "enrol member", (program,), operator("/programs/{slug}/members", {"external_id": "ann"})
    ),
    UseCase(
        "record purchase", (program, rules, ann), operator("/programs/{slug}/purchases", PURCHASE)
    ),
    UseCase(
        "return",
        (program, rules, ann, bought),
        operator(
            "/programs/{slug}/purchases/O-1/returns", {"return_id": "R-1", "amount_minor": 1000}
        ),
    ),
    UseCase(
        "manual adjustment",
        (program, ann),
        operator(
            "/programs/{slug}/members/ann/adjustments",
            {"adjustment_id": "A-1", "points": 40, "reason": "a late delivery"},
        ),
    ),
    UseCase(
        "behaviour event",
        (program, rules, ann),
        operator(
            "/programs/{slug}/events",
            {"event_id": "E-1", "member": "ann", "event": "gym-visit", "occurred_at": OCCURRED_AT},
        ),
    ),
    UseCase(
        "catalog add",
        (program,),
        operator(
            "/programs/{slug}/rewards",
            {"sku": "MUG", "name": "Mug", "points_price": 40, "stock": 5},
        ),
    ),
    UseCase(
        "tier define",
        (program,),
        operator(
            "/programs/{slug}/tiers", {"code": "gold", "name": "Gold", "rank": 2, "threshold": 1000}
        ),
    ),
    UseCase(
        "threshold define",
        (program,),
        operator(
            "/programs/{slug}/thresholds",
            {"code": "big-spender", "amount_minor": 1000, "bonus_points": 50},
        ),
    ),
    UseCase(
        "rules draft",
        (program,),
        operator("/programs/{slug}/rules", {"rules": {"points_per_unit": "1"}, "note": "launch"}),
    ),
    UseCase(
        "rules publish",
        (program, drafted),
        operator(
            "/programs/{slug}/rules/1/publish", {"effective_from": "2030-01-01T00:00:00+00:00"}
        ),
    ),
    UseCase(
        "hold",
        (program, ann, funded),
        member("/me/holds", {"order_ref": "ORD-1", "amount_minor": 50}, "h-1"),
    ),
    UseCase(
        "capture",
        (program, ann, funded, held),
        operator("/programs/{slug}/holds/{hold}/capture", {}),
    ),
    UseCase(
        "release (operator)",
        (program, ann, funded, held),
        operator("/programs/{slug}/holds/{hold}/release"),
    ),
    UseCase(
        "release (member)",
        (program, ann, funded, held),
        member("/me/holds/{hold}/release", None, None),
    ),
    UseCase(
        "redeem",
        (program, ann, funded, mug),
        member("/me/redemptions", {"sku": "MUG"}, "r-1"),
    ),
    UseCase(
        "gift",
        (program, ann, ben, funded),
        member("/me/gifts", {"to": "ben", "points": 25}, "g-1"),
    ),
    UseCase(
        "erase",
        (program, ann, funded),
        operator("/programs/{slug}/members/ann/erase"),
    ),
    UseCase(
        "API key issue",
        (),
        issue_key,
    ),
    UseCase(
        "settle job",
        (windowed, rules, ann, bought),
        job("settle-due-earnings"),
        drain=job("settle-due-earnings"),
        job=True,
    ),
    UseCase(
        "expire pending transfers job",
        (program, ann, funded, held, timed_out),
        job("expire-pending-transfers"),
        drain=job("expire-pending-transfers"),
        job=True,
    ),
    UseCase("expire points job", (program, expiring, ann, funded), expire_due_points, job=True),
    UseCase(
        "partner contract draft",
        (program, partner_firm),
        operator("/programs/{slug}/partners/p/contracts", CONTRACT),
    ),
    UseCase(
        "partner contract publish (postpaid: opens accounts, grants a credit line)",
        (program, partner_firm, postpaid_drafted),
        operator(
            "/programs/{slug}/partners/p/contracts/1/publication",
            {"effective_from": "2030-01-01T00:00:00+00:00"},
        ),
    ),
    UseCase(
        "partner funding",
        (program, partner_firm, contract_published),
        operator(
            "/programs/{slug}/partners/p/funding",
            {"reference": "INV-2", "points": 500, "amount_minor": 750},
        ),
    ),
    UseCase(
        "partner issuance",
        (program, ann, partner_firm, contract_published, partner_funded),
        partner_issuance,
    ),
    UseCase(
        "partner hold",
        (program, ann, partner_firm, contract_published, partner_funded, partner_issued),
        partner_hold,
    ),
]


@asynccontextmanager
async def serving(database_url: str) -> AsyncIterator[tuple[Litestar, httpx.AsyncClient]]:
    """The app in the test's own task and event loop, where the crash
    points run too (Litestar's test client runs the app in another thread)."""
    settings = Settings(
        admin_token=ADMIN_TOKEN,
        member_jwt_secret=SECRET,
        member_rate_limit=100_000,
        sweep_interval=0,
    )
    app = create_app(settings, database_url=database_url)
    # Errors the app lets through answer 500, as a server would.
    transport = httpx.ASGITransport(app=cast(Any, app), raise_app_exceptions=False)
    async with (
        app.lifespan(),
        httpx.AsyncClient(transport=transport, base_url="http://testserver") as client,
    ):
        yield app, client


def succeeded(clean: httpx.Response, retry: httpx.Response) -> bool:
    """The retry's answer is the clean run's success (a 201 may come back as
    a 200 replay)."""
    if retry.status_code == clean.status_code:
        return True
    return clean.status_code == 201 and retry.status_code == 200


@pytest.mark.parametrize(
    "case",
    [
        pytest.param(
            case,
            id=case.name,
            marks=[pytest.mark.xfail(strict=True, reason=case.broken)] if case.broken else [],
        )
        for case in USE_CASES
    ],
)
async def test_a_retry_after_a_crash_converges(database_url: str, case: UseCase) -> None:
    side = await asyncpg.connect(database_url)
    points = CrashPoints(side)
    try:
        async with serving(database_url) as (app, http):
            with intercepted(points):
                failures = await crash_everywhere(case, app, http, side, points)
    finally:
        await side.close()
    assert not failures, f"{case.name}: " + "\n".join(failures)


async def crash_everywhere(
    case: UseCase,
    app: Litestar,
    http: httpx.AsyncClient,
    side: asyncpg.Connection,
    points: CrashPoints,
) -> list[str]:
    async def snapshot(world: World, marker: int) -> Snapshot:
        found = await changed_since(side, marker, world.slug)
        if case.job:
            found["audit_events"] = [
                line for line in found.get("audit_events", []) if '"action": "job.run"' not in line
            ]
        return found

    async def fresh() -> tuple[World, int]:
        world = World(http, app, side, f"crash-{next(_programs)}")
        if case.drain is not None:
            drained = await case.drain(world)
            assert drained.status_code == 200, drained.text
        marker = await mark(side)
        for step in case.setup:
            await step(world)
        return world, marker

    world, marker = await fresh()
    with points.arm(None):
        clean = await case.request(world)
    assert clean.status_code in (200, 201), clean.text
    writes = points.writes
    assert writes > 0, "the use case wrote nothing: the crash points do not see it"
    expected = await snapshot(world, marker)

    failures: list[str] = []
    for n in itertools.count(1):
        assert n <= MAX_POINTS, f"more than {MAX_POINTS} writes: {points.log}"
        world, marker = await fresh()
        with points.arm(n):
            crashed = await case.request(world)
        if not points.crashed:
            assert crashed.status_code == clean.status_code, crashed.text
            break
        where = points.log[-1]
        # Let the event loop see the terminated connections closed.
        await asyncio.sleep(0.02)
        left = await snapshot(world, marker)
        retry = await case.request(world)
        state = await snapshot(world, marker)
        if not succeeded(clean, retry):
            failures.append(
                f"crash after write {n} ({where}): the retry answered"
                f" {retry.status_code} {retry.text[:300]}; left:\n{difference(expected, left)}"
            )
        elif state != expected:
            failures.append(
                f"crash after write {n} ({where}): after the retry\n"
                f"{difference(expected, state)}\nleft by the crash:\n{difference(expected, left)}"
            )
    return failures
