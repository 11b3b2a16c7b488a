"""The reconciliation's checks of what the posting path maintains beside
the balances: each lot account's lots against its posted balance
(``ledger.lots.lot_totals_by_account``), and the daily aggregates of the
run's window against the transfers they sum (``ledger.lots.daily_totals``
against ``daily_totals_by_scan``)."""

from __future__ import annotations

from collections.abc import Iterable
from datetime import date
from uuid import UUID

from finance.reconciliation_checks import CheckResult, Difference
from ledger import lots
from ledger import reconciliation_reads as reads
from ledger.reconciliation_reads import Connection


async def check_lots(conn: Connection, ledgers: Iterable[int]) -> CheckResult:
    """Each lot account (a wallet): the sum of its lots' remaining points
    against its posted balance (plus the debits not settled yet), a pending
    debit consuming no lot."""
    result = CheckResult()
    for ledger in ledgers:
        balances = {a.account_id: a for a in await reads.lot_account_balances(conn, ledger=ledger)}
        totals = {t.account_id: t for t in await lots.lot_totals_by_account(conn, ledger=ledger)}
        result.checked += len(balances.keys() | totals.keys())
        for account_id in sorted(balances.keys() | totals.keys()):
            balance = balances.get(account_id)
            posted = balance.posted if balance else 0
            # In a read-only snapshot plain movements may wait to be settled:
            # until they are, the lots hold what they held before them.
            unsettled = balance.unsettled if balance else 0
            total = totals.get(account_id)
            remaining = total.remaining if total else 0
            if remaining == posted + unsettled:
                continue
            result.differences.append(
                await _lot_difference(conn, ledger, account_id, posted, unsettled, remaining)
            )
    return result


async def _lot_difference(
    conn: Connection, ledger: int, account_id: UUID, posted: int, unsettled: int, remaining: int
) -> Difference:
    held = await lots.lots_of(conn, account_id)
    credits = await reads.transfers_behind(conn, account_id, "credits_posted")
    return Difference(
        check="lots",
        subject=f"account:{account_id}",
        measure="remaining",
        expected=posted + unsettled,
        found=remaining,
        drill_down={
            "account_id": str(account_id),
            "ledger": ledger,
            "posted_balance": posted,
            "unsettled": unsettled,
            "lots_remaining": remaining,
            "lots": [
                {
                    "lot_id": str(lot.id),
                    "amount": lot.amount,
                    "remaining": lot.remaining,
                    "origin_code": lot.origin_code,
                    "earned_at": lot.earned_at.isoformat(),
                }
                for lot in held[: reads.DRILL_DOWN_LIMIT]
            ],
            "lots_count": len(held),
            # A lot's id is the id of the credit that made it.
            "transfers": [str(i) for i in credits.ids],
            "transfers_count": credits.count,
            "transfers_query": f"GET /ledger/accounts/{account_id}/transfers",
        },
    )


async def check_daily_totals(
    conn: Connection, ledgers: Iterable[int], first_day: date, last_day: date
) -> CheckResult:
    """The aggregates' sums of the window, by code and account codes,
    against the same sums over the transfers."""
    result = CheckResult()
    for ledger in ledgers:
        kept = {
            (t.code, t.debit_account_code, t.credit_account_code): t
            for t in await lots.daily_totals(
                conn, ledger=ledger, first_day=first_day, last_day=last_day
            )
        }
        scanned = {
            (t.code, t.debit_account_code, t.credit_account_code): t
            for t in await lots.daily_totals_by_scan(
                conn, ledger=ledger, first_day=first_day, last_day=last_day
            )
        }
        result.checked += len(kept.keys() | scanned.keys())
        for key in sorted(kept.keys() | scanned.keys()):
            found, expected = kept.get(key), scanned.get(key)
            figures = {
                "amount": (expected.amount if expected else 0, found.amount if found else 0),
                "transfers": (
                    expected.transfers if expected else 0,
                    found.transfers if found else 0,
                ),
            }
            untied = {m: pair for m, pair in figures.items() if pair[0] != pair[1]}
            if not untied:
                continue
            code, debit_code, credit_code = key
            behind = await reads.movement_transfers(
                conn,
                ledger=ledger,
                code=code,
                debit_account_code=debit_code,
                credit_account_code=credit_code,
                first_day=first_day,
                last_day=last_day,
            )
            drill_down = {
                "ledger": ledger,
                "code": code,
                "debit_account_code": debit_code,
                "credit_account_code": credit_code,
                "first_day": first_day.isoformat(),
                "last_day": last_day.isoformat(),
                "aggregates": {m: pair[1] for m, pair in figures.items()},
                "transfers_sum": {m: pair[0] for m, pair in figures.items()},
                "transfers": [str(i) for i in behind.ids],
                "transfers_count": behind.count,
                "transfers_query": (
                    f"transfers of ledger {ledger} with code {code}, debit account code"
                    f" {debit_code}, credit account code {credit_code}, accounting days"
                    f" {first_day} to {last_day}"
                ),
            }
            for measure, (expected_value, found_value) in untied.items():
                result.differences.append(
                    Difference(
                        check="daily_totals",
                        subject=f"daily-totals:{ledger}:{code}:{debit_code}:{credit_code}",
                        measure=measure,
                        expected=expected_value,
                        found=found_value,
                        drill_down=drill_down,
                    )
                )
    return result


async def lot_checks(
    conn: Connection, ledgers: list[int], first_day: date, last_day: date
) -> dict[str, CheckResult]:
    """The lots and daily aggregates checks of the run's ledgers."""
    return {
        "lots": await check_lots(conn, ledgers),
        "daily_totals": await check_daily_totals(conn, ledgers, first_day, last_day),
    }
