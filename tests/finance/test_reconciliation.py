"""Reconciliation against real PostgreSQL: a program whose books tie has no
difference; a balance, a statement total, a payment or a lot changed behind
the ledger's back is found, with a drill-down to the transfers behind it;
a run with differences raises its alert once."""

from __future__ import annotations

import logging
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

import asyncpg
import pytest
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker

from core.codes import TransferCode
from core.models import Member, Program
from core.modules import JobContext
from core.principal import Principal, PrincipalKind
from finance.reconciliation import ALERT_TOPIC, get_run, list_runs, run_reconciliation
from finance.reconciliation_job import JOB_NAME, reconcile_ledgers
from finance.reconciliation_schemas import ReconciliationRunDetail, ReconciliationRunRequest
from ledger import Ledger
from ledger.lots import settle_account_lots
from partners.models import Partner
from partners.payouts import record_payment
from partners.statement_schemas import PaymentRequest, StatementRequest
from partners.statements import issue_statement
from tests.conftest import NewProgram
from tests.partners.coalition_helpers import OPERATOR, enrolled
from tests.partners.conftest import NewPartner
from tests.partners.conftest import new_partner as new_partner
from tests.partners.settlement_helpers import label, months_back, move, settled_partner


@dataclass
class Books:
    program: Program
    partner: Partner
    member: Member
    #: The transfers crediting the member's wallet, in order.
    earned: list[uuid.UUID]


@pytest.fixture
async def books(
    session: AsyncSession, ledger: Ledger, new_program: NewProgram, new_partner: NewPartner
) -> Books:
    """A program with a partner that issued and accepted points in the
    month two months back, its statement issued and paid in full."""
    program = await new_program()
    partner = await settled_partner(session, ledger, program, new_partner)
    member = await enrolled(session, ledger, program)
    two_back, _ = months_back(2)
    earned = [
        await move(
            ledger,
            program,
            partner,
            member,
            TransferCode.PARTNER_ISSUANCE,
            points,
            two_back + timedelta(days=day),
        )
        for day, points in ((1, 10_000), (3, 500))
    ]
    await move(
        ledger,
        program,
        partner,
        member,
        TransferCode.PARTNER_ACCEPTANCE,
        2_000,
        two_back + timedelta(days=2),
    )
    statement, _ = await issue_statement(
        session,
        ledger,
        program,
        partner,
        StatementRequest(period=label(2)),
        datetime.now(UTC),
        principal=OPERATOR,
    )
    await session.commit()
    await record_payment(
        session,
        ledger,
        program,
        partner,
        1,
        PaymentRequest(reference="bank-1", amount_minor=statement.total_minor),
        principal=OPERATOR,
    )
    await session.commit()
    return Books(program=program, partner=partner, member=member, earned=earned)


FINANCE = Principal(
    kind=PrincipalKind.OPERATOR,
    actor="key:finance",
    scopes=frozenset({"finance:read", "finance:write"}),
)


async def reconcile(session: AsyncSession, program: Program) -> ReconciliationRunDetail:
    detail = await run_reconciliation(
        session, program, ReconciliationRunRequest(), datetime.now(UTC), principal=FINANCE
    )
    await session.commit()
    return detail


async def alerts(pool: asyncpg.Pool, program: Program) -> list[str]:
    rows = await pool.fetch(
        "SELECT payload ->> 'run_id' AS run FROM outbox_events WHERE topic = $1 AND subject = $2"
        " ORDER BY position",
        ALERT_TOPIC,
        f"program:{program.id}",
    )
    return [row["run"] for row in rows]


@pytest.fixture
async def tampered(pool: asyncpg.Pool) -> AsyncIterator[list[tuple[uuid.UUID, str, int]]]:
    """Balances a test changes behind the ledger's back (account, column,
    by how much), put back afterwards: other tests check every ledger's
    invariants."""
    changes: list[tuple[uuid.UUID, str, int]] = []
    yield changes
    for account, column, by in changes:
        await pool.execute(
            f"UPDATE accounts SET {column} = {column} - $2 WHERE id = $1", account, by
        )


async def test_books_that_tie_reconcile_with_no_difference(
    session: AsyncSession, pool: asyncpg.Pool, books: Books, caplog: pytest.LogCaptureFixture
) -> None:
    with caplog.at_level(logging.WARNING, logger="finance.reconciliation"):
        detail = await reconcile(session, books.program)

    assert detail.differences == [], detail.differences
    assert detail.run.differences == 0
    checks = detail.run.checks
    # The checks compared something: the points ledger's accounts, the
    # money ledger's, the statement and its payment.
    assert len(detail.run.ledgers) == 2 and books.program.ledger_id in detail.run.ledgers
    assert checks["balances"].checked >= 10
    assert checks["statements"].checked == 1
    assert checks["payments"].checked >= 2
    assert all(tally.differences == 0 for tally in checks.values())
    assert await alerts(pool, books.program) == []
    assert not [r for r in caplog.records if r.name == "finance.reconciliation"]


async def test_a_balance_changed_behind_the_ledgers_back_is_found_with_its_drill_down(
    session: AsyncSession,
    pool: asyncpg.Pool,
    books: Books,
    tampered: list[tuple[uuid.UUID, str, int]],
) -> None:
    wallet = books.member.wallet_account_id
    before = await pool.fetchrow("SELECT * FROM accounts WHERE id = $1", wallet)
    assert before is not None
    await pool.execute(
        "UPDATE accounts SET credits_posted = credits_posted + 7 WHERE id = $1", wallet
    )
    tampered.append((wallet, "credits_posted", 7))

    detail = await reconcile(session, books.program)

    balances = [d for d in detail.differences if d.check == "balances"]
    assert len(balances) == 1, detail.differences
    [found] = balances
    assert (found.subject, found.measure) == (f"account:{wallet}", "credits_posted")
    assert (found.expected, found.found, found.difference) == (
        before["credits_posted"],
        before["credits_posted"] + 7,
        7,
    )
    drill = found.drill_down
    assert drill["account_id"] == str(wallet)
    assert drill["ledger"] == books.program.ledger_id
    assert drill["balances"]["credits_posted"] == {
        "expected": before["credits_posted"],
        "found": before["credits_posted"] + 7,
        "difference": 7,
    }
    for column in ("debits_pending", "debits_posted", "credits_pending"):
        assert drill["balances"][column]["difference"] == 0
    # The transfers behind the column: exactly the wallet's credits.
    assert drill["transfers"] == [str(t) for t in books.earned]
    assert drill["transfers_count"] == 2
    assert drill["transfers_query"] == f"GET /ledger/accounts/{wallet}/transfers"
    # The ledger's own invariant sees the books no longer balance.
    invariants = {d.measure for d in detail.differences if d.check == "ledger_invariants"}
    assert "debits_equal_credits" in invariants
    assert detail.run.checks["balances"].differences == 1
    # Stored, and read back the same.
    again = await get_run(
        session,
        books.program,
        uuid.UUID(detail.run.id),
        principal=FINANCE,
        limit=50,
        cursor=None,
    )
    assert again.differences == detail.differences


async def test_a_statement_total_changed_is_found(
    session: AsyncSession, pool: asyncpg.Pool, books: Books
) -> None:
    row = await pool.fetchrow(
        "UPDATE partner_statements SET total_minor = total_minor + 100 WHERE partner_id = $1"
        " AND number = 1 RETURNING id, total_minor, money_ledger_id",
        books.partner.id,
    )
    assert row is not None

    detail = await reconcile(session, books.program)

    statements = {d.measure: d for d in detail.differences if d.check == "statements"}
    assert set(statements) == {"total_minor", "lines_total"}, detail.differences
    total = statements["total_minor"]
    assert total.subject == f"statement:{row['id']}"
    assert (total.expected, total.found, total.difference) == (
        row["total_minor"] - 100,
        row["total_minor"],
        100,
    )
    drill = total.drill_down
    assert (drill["partner"], drill["number"], drill["money_ledger"]) == (
        books.partner.slug,
        1,
        row["money_ledger_id"],
    )
    assert drill["posted_minor"] == row["total_minor"] - 100
    # Each line names its posting, which ties: only the total was changed.
    assert drill["lines"] and all(
        line["posted_minor"] == line["amount_minor"] and line["transfer_id"]
        for line in drill["lines"]
    )
    assert set(drill["transfers"]) >= {line["transfer_id"] for line in drill["lines"]}
    # Nothing else is untied: no balance, no payment.
    assert {d.check for d in detail.differences} == {"statements"}


async def test_a_payment_not_in_the_ledger_and_a_collection_without_payment_are_found(
    session: AsyncSession, pool: asyncpg.Pool, books: Books
) -> None:
    statement = await pool.fetchrow(
        "SELECT id, paid_minor FROM partner_statements WHERE partner_id = $1 AND number = 1",
        books.partner.id,
    )
    assert statement is not None
    await pool.execute(
        "UPDATE partner_statement_payments SET amount_minor = amount_minor - 1"
        " WHERE statement_id = $1",
        statement["id"],
    )
    collection = uuid.uuid4()
    await pool.execute(
        "INSERT INTO partner_collections (id, program_id, partner_id, statement_id, status,"
        " attempts, items_created, payment_intent_id)"
        " SELECT $1, program_id, partner_id, id, 'succeeded', 1, true, 'pi_never_recorded'"
        " FROM partner_statements WHERE id = $2",
        collection,
        statement["id"],
    )

    detail = await reconcile(session, books.program)

    payments = {d.subject: d for d in detail.differences if d.check == "payments"}
    [payment] = [d for s, d in payments.items() if s.startswith("statement-payment:")]
    assert (payment.measure, payment.expected, payment.found) == (
        "amount_minor",
        statement["paid_minor"],
        statement["paid_minor"] - 1,
    )
    assert payment.drill_down["reference"] == "bank-1"
    assert payment.drill_down["transfer_found"] is True
    missing = payments[f"collection:{collection}"]
    assert (missing.measure, missing.expected, missing.found) == ("payments_recorded", 1, 0)
    assert missing.drill_down["payment_intent"] == "pi_never_recorded"
    # The statement's paid amount still ties with the ledger.
    assert f"statement:{statement['id']}" not in payments


async def test_funding_purchases_whose_payment_or_points_do_not_tie_are_found(
    session: AsyncSession, pool: asyncpg.Pool, books: Books
) -> None:
    funding = await pool.fetchrow(
        "SELECT id, reference, points, amount_minor FROM partner_fundings WHERE partner_id = $1",
        books.partner.id,
    )
    assert funding is not None
    # One tied purchase; one paid by another PaymentIntent than the funding
    # recorded; one claiming more points than its funding moved.
    purchases = {
        "tied": (uuid.uuid4(), funding["reference"], funding["points"]),
        "other-payment": (uuid.uuid4(), "pi_other", funding["points"]),
        "more-points": (uuid.uuid4(), funding["reference"], funding["points"] + 5),
    }
    for name, (purchase_id, intent, points) in purchases.items():
        await pool.execute(
            "INSERT INTO partner_funding_purchases (id, program_id, partner_id, purchase_id,"
            " points, amount_minor, currency, contract_version, status, payment_method_id,"
            " payment_intent_id, funding_id, completed_at)"
            " VALUES ($1, $2, $3, $4, $5, $6, 'ZAR', 1, 'succeeded', 'pm_card_visa', $7, $8,"
            " now())",
            purchase_id,
            books.program.id,
            books.partner.id,
            name,
            points,
            funding["amount_minor"],
            intent,
            funding["id"],
        )

    detail = await reconcile(session, books.program)

    found = {
        (d.subject, d.measure): d for d in detail.differences if d.check == "funding_purchases"
    }
    other = f"funding-purchase:{purchases['other-payment'][0]}"
    more = f"funding-purchase:{purchases['more-points'][0]}"
    assert set(found) == {(other, "payments_recorded"), (more, "points")}
    points = found[(more, "points")]
    assert (points.expected, points.found) == (funding["points"], funding["points"] + 5)
    assert points.drill_down["funding_reference"] == funding["reference"]
    assert points.drill_down["transfers"] and points.drill_down["transfers_query"]
    assert detail.run.checks["funding_purchases"].checked == 3


async def test_a_run_with_differences_raises_its_alert_once(
    session: AsyncSession,
    pool: asyncpg.Pool,
    books: Books,
    tampered: list[tuple[uuid.UUID, str, int]],
    caplog: pytest.LogCaptureFixture,
) -> None:
    clean = await reconcile(session, books.program)
    assert clean.run.differences == 0
    account = books.member.wallet_account_id
    await pool.execute(
        "UPDATE accounts SET debits_posted = debits_posted + 3 WHERE id = $1", account
    )
    tampered.append((account, "debits_posted", 3))

    with caplog.at_level(logging.WARNING, logger="finance.reconciliation"):
        first = await reconcile(session, books.program)
        second = await reconcile(session, books.program)

    assert await alerts(pool, books.program) == [first.run.id, second.run.id]
    payload = await pool.fetchval(
        "SELECT payload FROM outbox_events WHERE topic = $1 AND payload ->> 'run_id' = $2",
        ALERT_TOPIC,
        first.run.id,
    )
    assert payload["differences"] == first.run.differences > 0
    assert payload["program"] == books.program.slug
    lines = [r for r in caplog.records if r.name == "finance.reconciliation"]
    assert [r.levelno for r in lines] == [logging.WARNING, logging.WARNING]
    message = lines[0].getMessage()
    assert first.run.id in message and f"found {first.run.differences} differences" in message
    assert "\n" not in message
    # Listed newest first, each with its count.
    page = await list_runs(session, books.program, principal=FINANCE, limit=2, cursor=None)
    assert [r.id for r in page.items] == [second.run.id, first.run.id]
    assert page.next_cursor is not None


async def test_the_differences_page_in_the_order_found(
    session: AsyncSession,
    pool: asyncpg.Pool,
    books: Books,
    tampered: list[tuple[uuid.UUID, str, int]],
) -> None:
    for account in (books.member.wallet_account_id, books.program.issuance_account_id):
        await pool.execute(
            "UPDATE accounts SET credits_posted = credits_posted + 1,"
            " debits_posted = debits_posted + 2 WHERE id = $1",
            account,
        )
        tampered += [(account, "credits_posted", 1), (account, "debits_posted", 2)]
    detail = await reconcile(session, books.program)
    assert detail.run.differences >= 4

    pages, cursor = [], None
    while True:
        page = await get_run(
            session,
            books.program,
            uuid.UUID(detail.run.id),
            principal=FINANCE,
            limit=1,
            cursor=cursor,
        )
        pages += page.differences
        cursor = page.next_cursor
        if cursor is None:
            break
    assert pages == detail.differences


async def test_a_reader_without_the_write_scope_cannot_run_one(
    session: AsyncSession, books: Books
) -> None:
    reader = Principal(
        kind=PrincipalKind.OPERATOR, actor="key:reader", scopes=frozenset({"finance:read"})
    )
    with pytest.raises(Exception, match="finance:write"):
        await run_reconciliation(
            session, books.program, ReconciliationRunRequest(), datetime.now(UTC), principal=reader
        )


async def test_the_scheduled_job_runs_once_a_day_per_program(
    engine: AsyncEngine, ledger: Ledger, pool: asyncpg.Pool, books: Books
) -> None:
    context = JobContext(
        sessions=async_sessionmaker(engine, expire_on_commit=False),
        ledger=ledger,
        now=datetime.now(UTC),
    )

    await reconcile_ledgers(context)
    await reconcile_ledgers(context)

    runs = await pool.fetch(
        "SELECT actor, scheduled_for, differences FROM reconciliation_runs WHERE program_id = $1",
        books.program.id,
    )
    assert [(r["actor"], r["differences"]) for r in runs] == [(f"system:{JOB_NAME}", 0)]
    assert runs[0]["scheduled_for"] == context.now.date()


async def _recording(pool: asyncpg.Pool, statement: str, *args: object) -> None:
    """A write to the tables the posting path maintains, behind its back
    (their guard lets only the posting path write them)."""
    async with pool.acquire() as connection, connection.transaction():
        await connection.execute("SELECT set_config('ledger.recording', 'on', true)")
        await connection.execute(statement, *args)


async def test_a_lot_remaining_changed_is_found(
    session: AsyncSession, pool: asyncpg.Pool, books: Books
) -> None:
    wallet = books.member.wallet_account_id
    posted = await pool.fetchval(
        "SELECT credits_posted - debits_posted FROM accounts WHERE id = $1", wallet
    )
    await settle_account_lots(pool, [wallet])
    lot = await pool.fetchrow(
        "SELECT id, remaining FROM lots WHERE account_id = $1 AND remaining >= 4"
        " ORDER BY earned_at LIMIT 1",
        wallet,
    )
    assert lot is not None
    await _recording(pool, "UPDATE lots SET remaining = remaining - 4 WHERE id = $1", lot["id"])
    try:
        detail = await reconcile(session, books.program)
    finally:
        await _recording(pool, "UPDATE lots SET remaining = remaining + 4 WHERE id = $1", lot["id"])

    [found] = [d for d in detail.differences if d.check == "lots"]
    assert (found.subject, found.measure) == (f"account:{wallet}", "remaining")
    assert (found.expected, found.found, found.difference) == (posted, posted - 4, -4)
    drill = found.drill_down
    assert (drill["posted_balance"], drill["lots_remaining"]) == (posted, posted - 4)
    assert str(lot["id"]) in {x["lot_id"] for x in drill["lots"]}
    assert drill["transfers"] == [str(t) for t in books.earned]
    # The balances themselves still tie.
    assert {d.check for d in detail.differences} == {"lots"}
    assert detail.run.checks["lots"].checked >= 1


async def test_a_daily_aggregate_changed_is_found(
    session: AsyncSession, pool: asyncpg.Pool, books: Books
) -> None:
    ledger_id = books.program.ledger_id
    row = await pool.fetchrow(
        "SELECT day, code, debit_account_code, credit_account_code, amount, transfers"
        " FROM ledger_daily_totals WHERE ledger = $1 AND code = $2 ORDER BY day LIMIT 1",
        ledger_id,
        TransferCode.PARTNER_ISSUANCE,
    )
    assert row is not None
    key = (
        ledger_id,
        row["day"],
        row["code"],
        row["debit_account_code"],
        row["credit_account_code"],
    )
    where = (
        "ledger = $1 AND day = $2 AND code = $3 AND debit_account_code = $4"
        " AND credit_account_code = $5"
    )
    await _recording(
        pool, f"UPDATE ledger_daily_totals SET amount = amount + 9 WHERE {where}", *key
    )
    request = ReconciliationRunRequest(first_day=months_back(2)[0].date())
    try:
        detail = await run_reconciliation(
            session, books.program, request, datetime.now(UTC), principal=FINANCE
        )
        await session.commit()
    finally:
        await _recording(
            pool, f"UPDATE ledger_daily_totals SET amount = amount - 9 WHERE {where}", *key
        )

    [found] = [d for d in detail.differences if d.check == "daily_totals"]
    subject = (
        f"daily-totals:{ledger_id}:{row['code']}:{row['debit_account_code']}"
        f":{row['credit_account_code']}"
    )
    assert (found.subject, found.measure, found.difference) == (subject, "amount", 9)
    # Both issuances sit in the window: the aggregate's line is their sum.
    assert found.expected == 10_500 and found.found == 10_509
    assert found.drill_down["transfers"] == [str(t) for t in books.earned]
    assert found.drill_down["transfers_count"] == 2
    assert {d.check for d in detail.differences} == {"daily_totals"}
