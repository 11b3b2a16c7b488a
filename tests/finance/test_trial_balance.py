"""The trial balance of a program's points and money ledgers as of a day:
one line per account code, posted movements only, debits equal to credits."""

from __future__ import annotations

import uuid
from datetime import UTC, date, datetime

from sqlalchemy.ext.asyncio import AsyncSession

from core.codes import AccountCode, TransferCode, money_account_id
from finance.trial_balance import TrialBalance, TrialBalanceLedger, trial_balance
from ledger import Ledger, Transfer, TransferFlags
from partners.money_ledger import money_ledger, open_money_accounts
from tests.conftest import NewProgram
from tests.finance.liability_helpers import PRINCIPAL, open_book, post
from tests.partners.conftest import NewPartner
from tests.partners.conftest import new_partner as new_partner

START = datetime(2025, 1, 1, tzinfo=UTC)


def _lines(report: TrialBalance) -> dict[int, tuple[int, int, int]]:
    return {line.account_code: (line.debits, line.credits, line.balance) for line in report.lines}


async def test_points_ledger_by_account_code_through_the_day(
    session: AsyncSession, ledger: Ledger, new_program: NewProgram, new_partner: NewPartner
) -> None:
    program = await new_program(started_at=START)
    partner = await new_partner(program)
    book = await open_book(session, ledger, program, ("alice", "bob"), partner)
    alice, bob = book.wallet("alice"), book.wallet("bob")
    jan, feb = datetime(2025, 1, 20, tzinfo=UTC), datetime(2025, 2, 5, tzinfo=UTC)
    await post(ledger, program, program.issuance_account_id, alice, 800,
               TransferCode.PURCHASE_EARN, jan)  # fmt: skip
    await post(ledger, program, book.partner_issuance, bob, 300,
               TransferCode.PARTNER_ISSUANCE, jan)  # fmt: skip
    await post(ledger, program, alice, program.redemption_account_id, 250,
               TransferCode.CATALOG_REDEMPTION, feb)  # fmt: skip
    # A pending transfer moves nothing posted; its posting does, on its own day.
    pending = await post(ledger, program, alice, program.redemption_account_id, 100,
                         TransferCode.POINTS_PAYMENT, feb, flags=TransferFlags.PENDING)  # fmt: skip
    (posted,) = await ledger.create_transfers(
        [
            Transfer(
                id=uuid.uuid4(),
                pending_id=pending,
                amount=60,
                flags=TransferFlags.POST_PENDING,
                ledger=program.ledger_id,
                code=TransferCode.POINTS_PAYMENT,
            )
        ]
    )
    assert posted.result == "ok"

    january = await trial_balance(session, ledger, program, date(2025, 1, 31), principal=PRINCIPAL)
    assert _lines(january) == {
        AccountCode.ISSUANCE: (800, 0, 800),
        AccountCode.MEMBER_WALLET: (0, 1100, -1100),
        AccountCode.PARTNER_ISSUANCE: (300, 0, 300),
    }
    assert (january.debits, january.credits, january.difference) == (1100, 1100, 0)
    assert january.balanced and january.unit == "points"
    assert {line.account_code: line.gl_account for line in january.lines} == {
        AccountCode.ISSUANCE: "issuance",
        AccountCode.MEMBER_WALLET: "member_wallet",
        AccountCode.PARTNER_ISSUANCE: "partner_issuance",
    }

    today = datetime.now(UTC).date()
    now = await trial_balance(session, ledger, program, today, principal=PRINCIPAL)
    assert _lines(now) == {
        AccountCode.ISSUANCE: (800, 0, 800),
        AccountCode.REDEMPTION: (0, 250 + 60, -310),
        AccountCode.MEMBER_WALLET: (250 + 60, 1100, 250 + 60 - 1100),
        AccountCode.PARTNER_ISSUANCE: (300, 0, 300),
    }
    assert now.balanced and now.debits == now.credits == 1410


async def test_money_ledger_lines_carry_their_general_ledger_accounts(
    session: AsyncSession, ledger: Ledger, new_program: NewProgram, new_partner: NewPartner
) -> None:
    program = await new_program(started_at=START, currency="ZAR")
    partner = await new_partner(program)
    money = await money_ledger(session, ledger, program, "ZAR")
    await session.commit()
    await open_money_accounts(ledger, program, "ZAR", money, partner.id)
    revenue = money_account_id(program.id, "ZAR", AccountCode.PARTNER_REVENUE)
    receivable = money_account_id(program.id, "ZAR", AccountCode.PARTNER_RECEIVABLE, partner.id)
    cash = money_account_id(program.id, "ZAR", AccountCode.PARTNER_CASH)
    for debit, credit, amount, code in (
        (receivable, revenue, 12_345, TransferCode.PARTNER_SETTLEMENT),
        (cash, receivable, 10_000, TransferCode.PARTNER_PAYMENT),
    ):
        (outcome,) = await ledger.create_transfers(
            [
                Transfer(
                    id=uuid.uuid4(),
                    debit_account_id=debit,
                    credit_account_id=credit,
                    amount=amount,
                    ledger=money,
                    code=code,
                    effective_at=datetime(2025, 3, 1, tzinfo=UTC),
                )
            ]
        )
        assert outcome.result == "ok", outcome

    report = await trial_balance(
        session, ledger, program, date(2025, 3, 31), TrialBalanceLedger.MONEY, principal=PRINCIPAL
    )

    assert (report.ledger_id, report.unit) == (money, "ZAR")
    assert {line.gl_account: (line.debits, line.credits) for line in report.lines} == {
        "1200 Partner receivables": (12_345, 10_000),
        "4200 Points sold to partners": (0, 12_345),
        "1000 Cash": (10_000, 0),
    }
    assert report.balanced and report.debits == report.credits == 22_345
    before = await trial_balance(
        session, ledger, program, date(2025, 2, 28), TrialBalanceLedger.MONEY, principal=PRINCIPAL
    )
    assert (before.lines, before.balanced) == ([], True)
    # No money ledger in that currency yet: nothing to balance.
    other = await trial_balance(
        session,
        ledger,
        program,
        date(2025, 3, 31),
        TrialBalanceLedger.MONEY,
        currency="USD",
        principal=PRINCIPAL,
    )
    assert (other.ledger_id, other.lines, other.balanced) == (None, [], True)
