"""The double-entry points ledger: the single source of truth for points."""

from ledger.errors import BatchTooLarge, InvalidCursor, LedgerError, LedgerUnavailable
from ledger.ids import new_id
from ledger.invariants import Violation, check_invariants
from ledger.schemas import (
    Account,
    AccountFlags,
    AccountOutcome,
    AccountState,
    Balance,
    CreateAccountResult,
    CreateTransferResult,
    HistoryPage,
    LedgerTotals,
    StatementSum,
    StatementWindow,
    Transfer,
    TransferFlags,
    TransferOutcome,
    TransferState,
)
from ledger.service import Ledger

__all__ = [
    "Account",
    "AccountFlags",
    "AccountOutcome",
    "AccountState",
    "Balance",
    "BatchTooLarge",
    "CreateAccountResult",
    "CreateTransferResult",
    "HistoryPage",
    "InvalidCursor",
    "Ledger",
    "LedgerError",
    "LedgerTotals",
    "LedgerUnavailable",
    "StatementSum",
    "StatementWindow",
    "Transfer",
    "TransferFlags",
    "TransferOutcome",
    "TransferState",
    "Violation",
    "check_invariants",
    "new_id",
]
