"""Each problem type names one kind of failure, and idempotent creates
answer the first outcome or a conflict of their own."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

from sqlalchemy.ext.asyncio import AsyncSession

from core.principal import system
from core.programs import get_program
from ledger import Ledger
from ledger.bounds import BIGINT_MAX
from rewards.holds import HoldRequest, hold_points
from rewards.programs import Enrolment, enrol_member
from tests.api.conftest import Client, assert_problem, fund
from tests.api.test_idempotency import serving
from tests.api.test_member_api import bearer, token
from tests.conftest import NewProgram


def _spec(slug: str, **fields: Any) -> dict[str, Any]:
    return {
        "slug": slug,
        "name": "Idempotent shop",
        "currency": "ZAR",
        "point_value_minor": "0.5",
        **fields,
    }


async def test_opening_a_program_again(client: Client, pool: Any) -> None:
    slug = f"again-{uuid.uuid4().hex[:12]}"
    first = await client.post("/programs", json=_spec(slug))
    assert first.status_code == 201, first.text
    # The same fields: the program, as a replay (and audited once).
    again = await client.post("/programs", json=_spec(slug, point_value_minor="0.50"))
    assert again.status_code == 200, again.text
    assert again.json() == first.json()
    audited = await pool.fetchval(
        "SELECT count(*) FROM audit_events WHERE action = 'program.open' AND subject = $1",
        f"program:{slug}",
    )
    assert audited == 1
    # Another currency and point value under the slug: refused, nothing changed.
    other = await client.post("/programs", json=_spec(slug, currency="USD", point_value_minor="2"))
    body = assert_problem(other, 409, "program-exists-with-different-fields")
    assert "currency" in body["detail"] and "point_value_minor" in body["detail"]
    shown = (await client.get(f"/programs/{slug}")).json()
    assert (shown["currency"], shown["point_value_minor"]) == ("ZAR", "0.500000")


async def test_republishing_at_another_time(client: Client, program: str) -> None:
    at = (datetime.now(UTC) + timedelta(days=1)).isoformat()
    await client.post(f"/programs/{program}/rules", json={"rules": {"points_per_unit": "2"}})
    published = await client.post(
        f"/programs/{program}/rules/2/publish", json={"effective_from": at}
    )
    assert published.status_code == 200, published.text
    same = await client.post(f"/programs/{program}/rules/2/publish", json={"effective_from": at})
    assert same.status_code == 200, same.text
    later = (datetime.now(UTC) + timedelta(days=2)).isoformat()
    moved = await client.post(
        f"/programs/{program}/rules/2/publish", json={"effective_from": later}
    )
    assert_problem(moved, 409, "version-already-published")


async def test_capturing_more_than_the_hold(
    client: Client, program: str, session: AsyncSession, ledger: Ledger
) -> None:
    shop = await get_program(session, system("test"), program)
    member, _ = await enrol_member(
        session, ledger, shop, Enrolment(external_id="payer"), principal=system("test")
    )
    await session.commit()
    await fund(ledger, shop, member, 500)
    # 50 minor units at 0.5 a point: 100 points held.
    held = await hold_points(
        session,
        ledger,
        shop,
        member,
        "h-1",
        HoldRequest(order_ref="O-1", amount_minor=50),
        datetime.now(UTC),
    )
    await session.commit()
    url = f"/programs/{program}/holds/{held.id}/capture"
    too_much = await client.post(url, json={"points": held.points + 1})
    assert_problem(too_much, 422, "capture-exceeds-hold")
    captured = await client.post(url, json={"points": held.points})
    assert (captured.status_code, captured.json()["status"]) == (200, "captured")


async def test_a_hold_worth_more_points_than_a_wallet_can_hold(
    database_url: str, session: AsyncSession, ledger: Ledger, new_program: NewProgram, pool: Any
) -> None:
    """At the smallest point value, an amount of 10^13 minor units is worth
    10^19 points: more than the ledger counts (bigint), so no wallet holds
    them. The member is told so; nothing is held."""
    shop = await new_program(point_value_minor=Decimal("0.000001"))
    member, _ = await enrol_member(
        session, ledger, shop, Enrolment(external_id="ann"), principal=system("test")
    )
    await session.commit()
    await fund(ledger, shop, member, BIGINT_MAX)
    headers = {**bearer(token(shop.slug, "ann")), "Idempotency-Key": "too-large"}
    async with serving(database_url) as client:
        for amount in (10**13, 2**63 - 1):
            body = {"order_ref": "O-1", "amount_minor": amount}
            reply = await client.post("/me/holds", json=body, headers=headers)
            problem = assert_problem(reply, 422, "insufficient-points")
            assert "more than a wallet can hold" in problem["detail"]
        # The largest hold the ledger can count is taken.
        largest = {"order_ref": "O-2", "amount_minor": BIGINT_MAX // 10**6}
        headers["Idempotency-Key"] = "largest"
        taken = await client.post("/me/holds", json=largest, headers=headers)
        assert taken.status_code == 201, taken.text
    held = await pool.fetch("SELECT points FROM point_holds WHERE member_id = $1", member.id)
    assert [h["points"] for h in held] == [BIGINT_MAX // 10**6 * 10**6]
