"""The operator API of a partner leaving: recording its departure (201,
the same again 200), bad days refused with a problem and nothing written,
its report, and its final statement (409 until due, then 201, then 200)."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta
from typing import Any

import asyncpg
from sqlalchemy.ext.asyncio import AsyncSession

from core.models import Program
from ledger import Ledger
from partners.models import Partner
from partners.statement_schemas import StatementRequest
from partners.statements import issue_statement
from tests.api.conftest import Client, assert_problem
from tests.conftest import NewProgram
from tests.partners.coalition_helpers import OPERATOR, contract, fund
from tests.partners.conftest import NewPartner
from tests.partners.settlement_helpers import label
from tests.partners.test_departures import departed_partner


def days(first: int, second: int, third: int) -> dict[str, Any]:
    today = datetime.now(UTC).date()

    def on(offset: int) -> str:
        return (today + timedelta(days=offset)).isoformat()

    return {
        "last_issuing_day": on(first),
        "last_accepting_day": on(second),
        "valuation_date": on(third),
    }


async def state(pool: asyncpg.Pool, program: Program) -> tuple[Any, ...]:
    """What a refused request must leave as it was."""
    departures = await pool.fetch(
        "SELECT to_jsonb(d)::text FROM partner_departures d WHERE program_id = $1 ORDER BY 1",
        program.id,
    )
    lines = await pool.fetchval(
        "SELECT count(*) FROM audit_events WHERE subject LIKE $1", f"program:{program.slug}:%"
    )
    statements = await pool.fetchval(
        "SELECT count(*) FROM partner_statements WHERE program_id = $1", program.id
    )
    return tuple(departures), lines, statements


async def holder(
    session: AsyncSession, ledger: Ledger, program: Program, new_partner: NewPartner
) -> Partner:
    partner = await new_partner(program)
    await contract(session, ledger, program, partner)
    await fund(session, ledger, program, partner, 1_000)
    return partner


async def test_a_departure_is_recorded_read_and_reported(
    client: Client,
    session: AsyncSession,
    ledger: Ledger,
    pool: asyncpg.Pool,
    new_program: NewProgram,
    new_partner: NewPartner,
) -> None:
    program = await new_program()
    partner = await holder(session, ledger, program, new_partner)
    base = f"/programs/{program.slug}/partners/{partner.slug}/departure"
    missing = await client.get(base)
    assert_problem(missing, 404, "not-found")

    made = await client.put(base, json=days(1, 2, 3) | {"reason": "sold"})
    assert made.status_code == 201, made.text
    body = made.json()
    assert (body["status"], body["reason"], body["final_statement"]) == ("leaving", "sold", None)
    assert body["valuation_date"] == days(1, 2, 3)["valuation_date"]
    again = await client.put(base, json=days(1, 2, 3) | {"reason": "sold"})
    assert (again.status_code, again.json()) == (200, body)
    changed = await client.put(base, json=days(1, 2, 9) | {"reason": "sold"})
    assert changed.status_code == 200, changed.text
    assert changed.json()["valuation_date"] == days(1, 2, 9)["valuation_date"]
    shown = await client.get(base)
    assert (shown.status_code, shown.json()) == (200, changed.json())

    report = await client.get(f"{base}/report")
    assert report.status_code == 200, report.text
    figures = report.json()
    assert figures["basis"] == "now" and figures["points_issued"] == 0
    assert figures["program_points_outstanding"] == 0 and figures["liability_minor"] is None
    not_due = await client.post(f"{base}/final-statement")
    assert_problem(not_due, 409, "departure-not-due")


async def test_bad_departures_are_problems_and_write_nothing(
    client: Client,
    session: AsyncSession,
    ledger: Ledger,
    pool: asyncpg.Pool,
    new_program: NewProgram,
    new_partner: NewPartner,
) -> None:
    program = await new_program()
    partner = await holder(session, ledger, program, new_partner)
    store = await new_partner(program, parent=partner)
    base = f"/programs/{program.slug}/partners/{partner.slug}/departure"
    before = await state(pool, program)
    refused = [
        (await client.put(base, json=days(3, 1, 2)), 422, "invalid-departure"),
        (await client.put(base, json=days(-1, 0, 0)), 422, "invalid-departure"),
        (await client.put(base, json=days(0, 0, 0) | {"extra": 1}), 400, "validation-error"),
        (
            await client.put(base, json=days(0, 0, 0) | {"reason": "a\x00b"}),
            400,
            "validation-error",
        ),
        (
            await client.put(base, json=days(0, 0, 0) | {"valuation_date": "2026-02-30"}),
            400,
            "validation-error",
        ),
        (
            await client.put(base, json=days(0, 0, 0) | {"valuation_date": "9999-12-31"}),
            400,
            "validation-error",
        ),
        (await client.put(base, json={"last_issuing_day": "2030-01-01"}), 400, "validation-error"),
        (
            await client.put(
                f"/programs/{program.slug}/partners/{store.slug}/departure", json=days(1, 1, 1)
            ),
            409,
            "not-a-contract-holder",
        ),
        (await client.post(f"{base}/final-statement"), 404, "not-found"),
        (await client.get(f"{base}/report"), 404, "not-found"),
    ]
    for response, status, slug in refused:
        assert_problem(response, status, slug)
    assert await state(pool, program) == before


async def test_the_final_statement_over_http(
    client: Client,
    session: AsyncSession,
    ledger: Ledger,
    pool: asyncpg.Pool,
    new_program: NewProgram,
    new_partner: NewPartner,
) -> None:
    program = await new_program()
    partner, _, _, _ = await departed_partner(session, ledger, program, new_partner)
    base = f"/programs/{program.slug}/partners/{partner.slug}/departure"
    early = await client.post(f"{base}/final-statement")
    assert_problem(early, 409, "departure-not-due")
    await issue_statement(
        session,
        ledger,
        program,
        partner,
        StatementRequest(period=label(2)),
        datetime.now(UTC),
        principal=OPERATOR,
    )
    await session.commit()
    # Its days have ended: they can no longer move.
    shown = (await client.get(base)).json()
    earlier = date.fromisoformat(shown["last_issuing_day"]) - timedelta(days=1)
    moved = await client.put(base, json=shown_days(shown) | {"last_issuing_day": str(earlier)})
    assert_problem(moved, 409, "departure-change-refused")

    issued = await client.post(f"{base}/final-statement")
    assert issued.status_code == 201, issued.text
    final = issued.json()
    assert (final["kind"], final["number"], final["replayed"]) == ("final", 2, False)
    [line] = [x for x in final["lines"] if x["kind"] == "liability_transferred"]
    assert (line["points"], line["amount_minor"]) == (10_921, 6_553)
    again = await client.post(f"{base}/final-statement")
    assert again.status_code == 200, again.text
    assert again.json() | {"replayed": False} == final
    assert again.json()["replayed"]
    left = (await client.get(base)).json()
    assert (left["status"], left["final_statement"]) == ("left", 2)
    firm = (await client.get(f"/programs/{program.slug}/partners/{partner.slug}")).json()
    assert firm["status"] == "offboarded"
    report = (await client.get(f"{base}/report")).json()
    assert (report["basis"], report["liability_minor"], report["final_statement"]) == (
        "final_statement",
        6_553,
        2,
    )
    # The final statement reads as any other, and recomputes the same.
    stored = await client.get(f"/programs/{program.slug}/partners/{partner.slug}/statements/2")
    assert stored.json()["total_minor"] == final["total_minor"]
    recomputed = await client.get(
        f"/programs/{program.slug}/partners/{partner.slug}/statements/2/recomputation"
    )
    assert recomputed.json()["matches"] is True
    # The same departure again answers it; another is refused: it is final.
    same = await client.put(base, json=shown_days(shown) | {"reason": shown["reason"]})
    assert same.status_code == 200, same.text
    other = await client.put(base, json=shown_days(shown) | {"reason": "another"})
    assert_problem(other, 409, "departure-change-refused")


def shown_days(view: dict[str, Any]) -> dict[str, Any]:
    return {
        name: view[name] for name in ("last_issuing_day", "last_accepting_day", "valuation_date")
    }
