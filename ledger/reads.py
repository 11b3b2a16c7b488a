"""The ledger's public read surface for SQL written outside ``ledger/``.

Nothing outside ``ledger/`` names the ledger's tables (``TABLES``; the test
``tests/test_ledger_boundary.py`` checks it). A read of balances goes
through ``Ledger``'s methods, or, when it must join other rows to balances in
one round trip (the member balance: members joined to their wallets), through
the view ``ACCOUNT_BALANCES``, which the ledger owns
(``ledger/sql/ledger_account_balances.sql``, applied by migration 0017).

Its columns: ``id``, ``ledger``, ``code``, ``flags``, the four balances
(``debits_pending``, ``debits_posted``, ``credits_pending``,
``credits_posted``), and the derived ``spendable``, ``pending`` and
``debit_balance``. The functions below are the same derivations for an
``AccountState`` read through ``Ledger`` (``tests/ledger/test_reads.py``
checks that the two agree).
"""

from __future__ import annotations

from typing import Protocol

#: The view of every account's balances, for joins in other packages' SQL.
ACCOUNT_BALANCES = "ledger_account_balances"

#: The ledger's own tables and sequences: only ``ledger/`` (and the
#: migrations) may name them in SQL.
TABLES = frozenset(
    {
        "ledgers",
        "accounts",
        "transfers",
        "transfer_rejections",
        "pending_expiries",
        "ledger_lot_codes",
        "lots",
        "lot_movements",
        "ledger_daily_totals",
        "lot_daily_movements",
        "account_class_changes",
        "ledger_class_moves",
        "transfer_timestamp_seq",
        "account_timestamp_seq",
    }
)


class Balances(Protocol):
    """An account's four balances (``AccountState`` has them)."""

    @property
    def debits_pending(self) -> int: ...
    @property
    def debits_posted(self) -> int: ...
    @property
    def credits_pending(self) -> int: ...
    @property
    def credits_posted(self) -> int: ...


def spendable(account: Balances) -> int:
    """What a debit may take now from an account whose debits must not exceed
    its credits: posted credits less posted and pending debits (the view's
    ``spendable``; the posting function's own limit)."""
    return account.credits_posted - account.debits_posted - account.debits_pending


def pending(account: Balances) -> int:
    """Amounts on their way in or out: pending credits and pending debits
    (the view's ``pending``)."""
    return account.credits_pending + account.debits_pending


def debit_balance(account: Balances) -> int:
    """Posted debits less posted credits: what an account whose credits must
    not exceed its debits (a debt) is owed (the view's ``debit_balance``)."""
    return account.debits_posted - account.credits_posted
