"""The operations on lots, crashed between any two writes (the machinery of
``tests/test_crash_between_writes.py``): one retry of the same request ends
in exactly the state of a run that never crashed."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import asyncpg
import httpx
import pytest

from tests.api.test_member_api import bearer, token
from tests.crash_points import CrashPoints, intercepted
from tests.test_crash_between_writes import (
    UseCase,
    World,
    ann,
    crash_everywhere,
    expire_due_points,
    expiring,
    funded,
    held,
    job,
    mug,
    operator,
    program,
    serving,
)


async def redeemed(w: World) -> None:
    await w.setup("/me/redemptions", {"sku": "MUG"}, member="ann", key="r-1")
    response = await w.http.get("/me/transactions", headers=bearer(token(w.slug, "ann")))
    [spent] = [m["id"] for m in response.json()["movements"] if m["kind"] == "redemption"]
    w.found["redemption"] = spent


async def captured(w: World) -> None:
    await w.setup(f"/programs/{w.slug}/holds/{w.found['hold']}/capture", {})


async def expired(w: World) -> None:
    """Ann's points expired (the expiry run a term ahead), and the time
    the reinstatement restores from."""
    w.found["since"] = (datetime.now(UTC) - timedelta(hours=1)).isoformat()
    done = await expire_due_points(w)
    assert done.status_code == 200 and done.json()["done"] == 1000, done.text


async def sunset_due(w: World) -> None:
    at = datetime.now(UTC) + timedelta(days=100)
    await w.setup(
        "/programs/{slug}/sunset",
        {"sunset_at": at.isoformat(), "notice_days": 90, "reason": "the program closes"},
    )
    # Its date come (set back by hand: the API schedules after the notice),
    # and its end of earning with it (never after the date).
    await w.side.execute(
        "UPDATE program_sunsets SET sunset_at = now() - interval '1 minute',"
        " earning_ends_at = now() - interval '1 minute'"
        " WHERE program_id = (SELECT id FROM programs WHERE slug = $1)",
        w.slug,
    )


async def cancel_redemption(w: World) -> httpx.Response:
    return await w.post(
        f"/programs/{{slug}}/members/ann/redemptions/{w.found['redemption']}/cancellation",
        {"cancellation_id": "C-1", "reason": "order cancelled"},
    )


async def reinstate(w: World) -> httpx.Response:
    return await w.post(
        "/programs/{slug}/reinstatements", {"reference": "R-1", "since": w.found["since"]}
    )


USE_CASES = [
    UseCase("cancel redemption", (program, ann, funded, mug, redeemed), cancel_redemption),
    UseCase(
        "cancel points payment",
        (program, ann, funded, held, captured),
        operator(
            "/programs/{slug}/holds/{hold}/cancellation",
            {"cancellation_id": "C-1", "reason": "order cancelled"},
        ),
    ),
    UseCase("reinstatement", (program, expiring, ann, funded, expired), reinstate),
    UseCase(
        "sunset job",
        (program, ann, funded, sunset_due),
        job("sunset-programs"),
        drain=job("sunset-programs"),
        job=True,
    ),
]


@pytest.mark.parametrize("case", USE_CASES, ids=[c.name for c in USE_CASES])
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
