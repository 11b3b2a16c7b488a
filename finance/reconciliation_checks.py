"""The checks of a reconciliation, each comparing a figure derived from the
ledger's transfers (``expected``) with one kept beside it (``found``): the
accounts' stored balances, the ledgers' other invariants, the partners'
statements and the payments recorded against them, the blocks of points
bought through the payment provider. Each answers every difference it
finds, with a drill-down naming the records behind both figures; none is
netted away or skipped.

They read on the reconciliation's snapshot: ``reader`` (an ORM session) and
``conn`` (its asyncpg connection) in one repeatable-read transaction.
"""

from __future__ import annotations

import uuid
from collections import defaultdict
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from core.codes import AccountCode, TransferCode, derived_id, money_account_id
from core.models import Program
from ledger import reconciliation_reads as reads
from ledger.reconciliation_reads import Connection, RecordedTransfer, TaggedTransfer
from partners.coalition_models import PartnerFunding
from partners.collection_models import CollectionStatus, PartnerCollection
from partners.funding_purchase_models import PartnerFundingPurchase, PurchaseStatus
from partners.models import Partner
from partners.statement_models import (
    PartnerStatement,
    PartnerStatementLine,
    PartnerStatementPayment,
)


@dataclass(frozen=True)
class Difference:
    """A difference as found, before it is stored."""

    check: str
    subject: str
    measure: str
    expected: int
    found: int
    drill_down: dict[str, Any]


@dataclass
class CheckResult:
    #: How many subjects (accounts, statements, payments...) were compared.
    checked: int = 0
    differences: list[Difference] = field(default_factory=list)


def _posted(flags: int) -> bool:
    """A plain or post_pending row: the movements balances are made of."""
    return flags & 10 == 0


def _account_query(account_id: uuid.UUID) -> str:
    return f"GET /ledger/accounts/{account_id}/transfers"


async def check_balances(conn: Connection, ledgers: Iterable[int]) -> CheckResult:
    """Each account's four balances against the sums of its transfers: one
    difference per balance column that does not tie."""
    result = CheckResult()
    for ledger in ledgers:
        result.checked += await reads.account_count(conn, ledger=ledger)
        for account in await reads.balance_differences(conn, ledger=ledger):
            columns = {
                column: {
                    "expected": account.derived[column],
                    "found": account.stored[column],
                    "difference": account.stored[column] - account.derived[column],
                }
                for column in reads.BALANCE_COLUMNS
            }
            for column in reads.BALANCE_COLUMNS:
                if account.stored[column] == account.derived[column]:
                    continue
                behind = await reads.transfers_behind(conn, account.account_id, column)
                result.differences.append(
                    Difference(
                        check="balances",
                        subject=f"account:{account.account_id}",
                        measure=column,
                        expected=account.derived[column],
                        found=account.stored[column],
                        drill_down={
                            "account_id": str(account.account_id),
                            "ledger": account.ledger,
                            "code": account.code,
                            "balances": columns,
                            "transfers": [str(i) for i in behind.ids],
                            "transfers_count": behind.count,
                            "transfers_query": _account_query(account.account_id),
                        },
                    )
                )
    return result


async def check_invariants(conn: Connection, ledgers: Iterable[int]) -> CheckResult:
    """The ledgers' other invariants (``ledger.invariants``): one difference
    per ledger and invariant broken, its breaches listed."""
    result = CheckResult()
    for ledger in ledgers:
        result.checked += len(reads.OTHER_INVARIANTS)
        by_invariant: dict[str, list[str]] = defaultdict(list)
        for breach in await reads.invariant_breaches(conn, ledger=ledger):
            by_invariant[breach.invariant].append(breach.detail)
        for invariant, details in sorted(by_invariant.items()):
            result.differences.append(
                Difference(
                    check="ledger_invariants",
                    subject=f"ledger:{ledger}",
                    measure=invariant,
                    expected=0,
                    found=len(details),
                    drill_down={
                        "ledger": ledger,
                        "invariant": invariant,
                        "breaches": details[: reads.DRILL_DOWN_LIMIT],
                        "breaches_count": len(details),
                        "query": f"coalition ledger check --ledger {ledger}",
                    },
                )
            )
    return result


@dataclass(frozen=True)
class _MoneyAccounts:
    receivable: uuid.UUID
    payable: uuid.UUID
    cash: uuid.UUID

    def effect(self, transfer: TaggedTransfer | RecordedTransfer) -> int:
        """What a transfer adds to what the partner owes (its receivable's
        debit balance less its payable's credit balance): a statement's
        total is the sum of its postings' effects, netting adding nothing."""
        if not _posted(transfer.flags):
            return 0
        amount = transfer.amount
        effect = 0
        for account in (self.receivable, self.payable):
            if transfer.debit_account_id == account:
                effect += amount
            if transfer.credit_account_id == account:
                effect -= amount
        return effect


def _money_accounts(program: Program, currency: str, partner_id: uuid.UUID) -> _MoneyAccounts:
    return _MoneyAccounts(
        receivable=money_account_id(
            program.id, currency, AccountCode.PARTNER_RECEIVABLE, partner_id
        ),
        payable=money_account_id(program.id, currency, AccountCode.PARTNER_PAYABLE, partner_id),
        cash=money_account_id(program.id, currency, AccountCode.PARTNER_CASH),
    )


@dataclass
class StatementBook:
    """The program's statements with what the checks read beside them."""

    rows: list[PartnerStatement]
    slugs: dict[uuid.UUID, str]
    lines: dict[uuid.UUID, list[PartnerStatementLine]]
    payments: dict[uuid.UUID, list[PartnerStatementPayment]]
    accounts: dict[uuid.UUID, _MoneyAccounts]
    #: Statement id (text) -> the money ledger's transfers tagged with it.
    tagged: dict[str, list[TaggedTransfer]]


async def load_statements(
    reader: AsyncSession, conn: Connection, program: Program
) -> StatementBook:
    rows = list(
        await reader.scalars(
            select(PartnerStatement)
            .where(PartnerStatement.program_id == program.id)
            .order_by(PartnerStatement.partner_id, PartnerStatement.number)
        )
    )
    ids = [row.id for row in rows]
    partners = await reader.execute(
        select(Partner.id, Partner.slug).where(Partner.program_id == program.id)
    )
    slugs = {partner_id: slug for partner_id, slug in partners}
    lines: dict[uuid.UUID, list[PartnerStatementLine]] = defaultdict(list)
    payments: dict[uuid.UUID, list[PartnerStatementPayment]] = defaultdict(list)
    if ids:
        for line in await reader.scalars(
            select(PartnerStatementLine)
            .where(PartnerStatementLine.statement_id.in_(ids))
            .order_by(PartnerStatementLine.statement_id, PartnerStatementLine.line)
        ):
            lines[line.statement_id].append(line)
        for payment in await reader.scalars(
            select(PartnerStatementPayment)
            .where(PartnerStatementPayment.program_id == program.id)
            .order_by(PartnerStatementPayment.id)
        ):
            payments[payment.statement_id].append(payment)
    accounts = {row.id: _money_accounts(program, row.currency, row.partner_id) for row in rows}
    every = {a for pair in accounts.values() for a in (pair.receivable, pair.payable)}
    tagged: dict[str, list[TaggedTransfer]] = defaultdict(list)
    if every:
        for transfer in await reads.tagged_transfers(conn, accounts=sorted(every), tag="statement"):
            tagged[transfer.tag].append(transfer)
    return StatementBook(rows, slugs, lines, payments, accounts, tagged)


def _statement_label(found: StatementBook, statement: PartnerStatement) -> dict[str, Any]:
    return {
        "statement_id": str(statement.id),
        "partner": found.slugs.get(statement.partner_id, str(statement.partner_id)),
        "number": statement.number,
        "period": statement.period_label,
        "currency": statement.currency,
        "money_ledger": statement.money_ledger_id,
    }


def _lines_query(program: Program, found: StatementBook, statement: PartnerStatement) -> str:
    partner = found.slugs.get(statement.partner_id, str(statement.partner_id))
    return (
        f"GET /programs/{program.slug}/partners/{partner}/statements/{statement.number}"
        "/lines/{line}/transfers"
    )


def check_statements(program: Program, found: StatementBook) -> CheckResult:
    """Each statement's total against the money ledger's transfers that
    posted it (its lines and their netting), its total against its lines,
    and each line against its own posting."""
    result = CheckResult(checked=len(found.rows))
    for statement in found.rows:
        accounts = found.accounts[statement.id]
        postings = [
            t
            for t in found.tagged.get(str(statement.id), [])
            if t.code != TransferCode.PARTNER_PAYMENT
        ]
        by_id = {t.id: t for t in postings}
        posted = sum(accounts.effect(t) for t in postings)
        lines = found.lines.get(statement.id, [])
        lines_total = sum(line.amount_minor for line in lines)
        line_rows: list[dict[str, Any]] = []
        untied: list[tuple[int, int, int]] = []
        for line in lines:
            transfer_id = derived_id(program.id, "statement", str(statement.id), str(line.line))
            transfer = by_id.get(transfer_id)
            line_posted = accounts.effect(transfer) if transfer else 0
            line_rows.append(
                {
                    "line": line.line,
                    "kind": line.kind,
                    "amount_minor": line.amount_minor,
                    "transfer_id": str(transfer_id) if transfer else None,
                    "posted_minor": line_posted,
                }
            )
            if line_posted != line.amount_minor:
                untied.append((line.line, line_posted, line.amount_minor))
        base = {
            **_statement_label(found, statement),
            "total_minor": statement.total_minor,
            "lines_total_minor": lines_total,
            "posted_minor": posted,
            "lines": line_rows,
            "transfers": [str(t.id) for t in postings],
            "transfers_query": _lines_query(program, found, statement),
        }
        subject = f"statement:{statement.id}"
        if posted != statement.total_minor:
            result.differences.append(
                Difference(
                    "statements", subject, "total_minor", posted, statement.total_minor, base
                )
            )
        if lines_total != statement.total_minor:
            result.differences.append(
                Difference(
                    "statements", subject, "lines_total", lines_total, statement.total_minor, base
                )
            )
        for number, line_posted, amount in untied:
            result.differences.append(
                Difference("statements", subject, f"line {number}", line_posted, amount, base)
            )
    return result


async def check_payments(reader: AsyncSession, found: StatementBook) -> CheckResult:
    """Each payment recorded against a statement (a bank transfer, a Stripe
    PaymentIntent) against its money ledger transfer; each statement's paid
    amount against the payments the ledger holds; each collection Stripe
    reported paid against the payment it must have recorded."""
    result = CheckResult()
    for statement in found.rows:
        accounts = found.accounts[statement.id]
        label = _statement_label(found, statement)
        ledger_payments = [
            t
            for t in found.tagged.get(str(statement.id), [])
            if t.code == TransferCode.PARTNER_PAYMENT and _posted(t.flags)
        ]
        by_id = {t.id: t for t in ledger_payments}
        recorded = found.payments.get(statement.id, [])
        for payment in recorded:
            result.checked += 1
            transfer = by_id.get(payment.transfer_id) if payment.transfer_id else None
            # A payment's transfer takes the partner's receivable to the program's cash.
            sound = (
                transfer is not None
                and transfer.credit_account_id == accounts.receivable
                and transfer.debit_account_id == accounts.cash
            )
            paid = transfer.amount if transfer is not None and sound else 0
            if paid != payment.amount_minor:
                result.differences.append(
                    Difference(
                        "payments",
                        f"statement-payment:{payment.id}",
                        "amount_minor",
                        paid,
                        payment.amount_minor,
                        {
                            **label,
                            "payment_id": str(payment.id),
                            "reference": payment.reference,
                            "transfer_id": str(payment.transfer_id),
                            "transfer_found": transfer is not None,
                            "transfers": [str(payment.transfer_id)] if payment.transfer_id else [],
                            "transfers_query": _account_query(accounts.receivable),
                        },
                    )
                )
        result.checked += 1
        in_ledger = sum(t.amount for t in ledger_payments)
        if in_ledger != statement.paid_minor:
            result.differences.append(
                Difference(
                    "payments",
                    f"statement:{statement.id}",
                    "paid_minor",
                    in_ledger,
                    statement.paid_minor,
                    {
                        **label,
                        "payments": [
                            {"reference": p.reference, "amount_minor": p.amount_minor}
                            for p in recorded
                        ],
                        "transfers": [str(t.id) for t in ledger_payments],
                        "transfers_query": _account_query(accounts.receivable),
                    },
                )
            )
    await _check_collections(reader, found, result)
    return result


async def _check_collections(
    reader: AsyncSession, found: StatementBook, result: CheckResult
) -> None:
    statements = {s.id: s for s in found.rows}
    collections = await reader.scalars(
        select(PartnerCollection)
        .where(
            PartnerCollection.statement_id.in_(list(statements)),
            PartnerCollection.status == CollectionStatus.SUCCEEDED,
        )
        .order_by(PartnerCollection.id)
    )
    for collection in collections:
        result.checked += 1
        statement = statements[collection.statement_id]
        recorded = [
            p
            for p in found.payments.get(statement.id, [])
            if p.reference == collection.payment_intent_id
        ]
        if not recorded:
            result.differences.append(
                Difference(
                    "payments",
                    f"collection:{collection.id}",
                    "payments_recorded",
                    1,
                    0,
                    {
                        **_statement_label(found, statement),
                        "collection_id": str(collection.id),
                        "payment_intent": collection.payment_intent_id,
                        "transfers": [],
                        "transfers_query": _account_query(found.accounts[statement.id].receivable),
                    },
                )
            )


async def check_funding_purchases(
    reader: AsyncSession, conn: Connection, program: Program
) -> CheckResult:
    """Each block of points bought through the payment provider and paid
    against the funding its payment recorded (under the PaymentIntent's id)
    and the points ledger transfer that funded it."""
    purchases = list(
        await reader.scalars(
            select(PartnerFundingPurchase)
            .where(
                PartnerFundingPurchase.program_id == program.id,
                PartnerFundingPurchase.status == PurchaseStatus.SUCCEEDED,
            )
            .order_by(PartnerFundingPurchase.id)
        )
    )
    funding_ids = [p.funding_id for p in purchases if p.funding_id is not None]
    fundings = (
        {
            f.id: f
            for f in await reader.scalars(
                select(PartnerFunding).where(PartnerFunding.id.in_(funding_ids))
            )
        }
        if funding_ids
        else {}
    )
    transfers = await reads.transfers_by_id(conn, [f.transfer_id for f in fundings.values()])
    result = CheckResult(checked=len(purchases))
    for purchase in purchases:
        funding = fundings.get(purchase.funding_id) if purchase.funding_id else None
        transfer = transfers.get(funding.transfer_id) if funding else None
        drill_down = {
            "purchase_id": purchase.purchase_id,
            "funding_purchase_id": str(purchase.id),
            "payment_intent": purchase.payment_intent_id,
            "funding_id": str(funding.id) if funding else None,
            "funding_reference": funding.reference if funding else None,
            "transfers": [str(funding.transfer_id)] if funding else [],
            "transfers_query": f"GET /ledger/transfers/{funding.transfer_id}" if funding else None,
        }
        subject = f"funding-purchase:{purchase.id}"
        if funding is None or funding.reference != purchase.payment_intent_id:
            result.differences.append(
                Difference("funding_purchases", subject, "payments_recorded", 1, 0, drill_down)
            )
            continue
        if funding.amount_minor != purchase.amount_minor:
            result.differences.append(
                Difference(
                    "funding_purchases",
                    subject,
                    "amount_minor",
                    purchase.amount_minor,
                    funding.amount_minor,
                    drill_down,
                )
            )
        moved = (
            transfer.amount
            if transfer is not None
            and _posted(transfer.flags)
            and transfer.code == TransferCode.PARTNER_FUNDING
            else 0
        )
        if moved != purchase.points:
            result.differences.append(
                Difference(
                    "funding_purchases", subject, "points", moved, purchase.points, drill_down
                )
            )
    return result
