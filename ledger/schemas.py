"""The ledger's data model: accounts, transfers, flags and result codes.

Modelled on TigerBeetle: a small set of immutable facts (transfers) and the
balances they imply. Amounts are integers in the ledger's smallest unit.
"""

from __future__ import annotations

import enum
from datetime import datetime
from typing import Annotated, Any
from uuid import UUID

import msgspec

from ledger.bounds import (
    ACCOUNT_FLAGS_DOC,
    BIGINT_MAX,
    MOMENT_RULE,
    TRANSFER_FLAGS_DOC,
    AccountFlagBits,
    Metadata,
    Moment,
    NonEmpty,
    NonNegativeBigInt,
    NonNegativeInteger,
    PositiveInteger,
    Text100,
    TransferFlagBits,
    json_fault,
    year_fault,
)

#: Largest amount one transfer can carry (PostgreSQL BIGINT).
AMOUNT_MAX = BIGINT_MAX
#: Largest number of accounts or transfers in one call.
BATCH_MAX = 8000

Amount = NonNegativeBigInt
LedgerId = PositiveInteger
Code = PositiveInteger
TimeoutSeconds = NonNegativeInteger


class AccountFlags(enum.IntFlag):
    NONE = 0
    #: The account may never be debited beyond its posted credits (a wallet).
    DEBITS_MUST_NOT_EXCEED_CREDITS = 1
    #: The account may never be credited beyond its posted debits.
    CREDITS_MUST_NOT_EXCEED_DEBITS = 2


class TransferFlags(enum.IntFlag):
    NONE = 0
    #: Linked to the next transfer of the batch: the chain succeeds or fails whole.
    LINKED = 1
    #: Reserves the amount (phase one of a two-phase transfer).
    PENDING = 2
    #: Posts a pending transfer, in full or in part.
    POST_PENDING = 4
    #: Voids a pending transfer, releasing its amount.
    VOID_PENDING = 8


#: Private flag set by the writer on the last transfer of each caller's request
#: so that a chain can never run on into another caller's transfers.
END_OF_REQUEST = 1 << 16


class CreateAccountResult(enum.StrEnum):
    OK = "ok"
    EXISTS = "exists"
    EXISTS_WITH_DIFFERENT_FIELDS = "exists_with_different_fields"
    ID_MUST_NOT_BE_ZERO = "id_must_not_be_zero"
    FLAGS_ARE_MUTUALLY_EXCLUSIVE = "flags_are_mutually_exclusive"
    LEDGER_NOT_FOUND = "ledger_not_found"


class CreateTransferResult(enum.StrEnum):
    """The outcome of one transfer. The numeric value sent by the database is
    the position in this enumeration (see ``TRANSFER_RESULTS``)."""

    OK = "ok"
    EXISTS = "exists"
    EXISTS_WITH_DIFFERENT_FIELDS = "exists_with_different_fields"
    LINKED_EVENT_FAILED = "linked_event_failed"
    LINKED_EVENT_CHAIN_OPEN = "linked_event_chain_open"
    ID_MUST_NOT_BE_ZERO = "id_must_not_be_zero"
    FLAGS_ARE_MUTUALLY_EXCLUSIVE = "flags_are_mutually_exclusive"
    ACCOUNTS_MUST_BE_DIFFERENT = "accounts_must_be_different"
    ACCOUNT_ID_REQUIRED = "account_id_required"
    AMOUNT_MUST_BE_POSITIVE = "amount_must_be_positive"
    CODE_REQUIRED = "code_required"
    LEDGER_REQUIRED = "ledger_required"
    PENDING_ID_MUST_BE_ZERO = "pending_id_must_be_zero"
    PENDING_ID_REQUIRED = "pending_id_required"
    PENDING_ID_MUST_BE_DIFFERENT = "pending_id_must_be_different"
    TIMEOUT_RESERVED_FOR_PENDING_TRANSFER = "timeout_reserved_for_pending_transfer"
    EFFECTIVE_AT_MUST_NOT_BE_IN_FUTURE = "effective_at_must_not_be_in_future"
    DEBIT_ACCOUNT_NOT_FOUND = "debit_account_not_found"
    CREDIT_ACCOUNT_NOT_FOUND = "credit_account_not_found"
    LEDGER_MISMATCH = "ledger_mismatch"
    PENDING_NOT_FOUND = "pending_not_found"
    PENDING_NOT_PENDING = "pending_not_pending"
    PENDING_MISMATCH = "pending_mismatch"
    PENDING_ALREADY_POSTED = "pending_already_posted"
    PENDING_ALREADY_VOIDED = "pending_already_voided"
    PENDING_EXPIRED = "pending_expired"
    EXCEEDS_PENDING_AMOUNT = "exceeds_pending_amount"
    OVERFLOWS_DEBITS = "overflows_debits"
    OVERFLOWS_CREDITS = "overflows_credits"
    EXCEEDS_CREDITS = "exceeds_credits"
    EXCEEDS_DEBITS = "exceeds_debits"


#: Database result code (smallint) -> result, in the order the SQL uses.
TRANSFER_RESULTS: tuple[CreateTransferResult, ...] = tuple(CreateTransferResult)


class Ledger(msgspec.Struct, kw_only=True, frozen=True, forbid_unknown_fields=True):
    id: LedgerId
    name: Annotated[Text100, NonEmpty]
    #: Decimal places of the unit (0 for whole points).
    asset_scale: Annotated[int, msgspec.Meta(ge=0, le=18)] = 0


class Account(msgspec.Struct, kw_only=True, frozen=True, forbid_unknown_fields=True):
    """A request to open an account."""

    id: UUID
    ledger: LedgerId
    code: Code
    # An int, not an AccountFlags, in the document: 0 and sums are sent.
    flags: AccountFlagBits = AccountFlags.NONE
    metadata: Metadata | None = None

    def bounds_fault(self) -> tuple[str, str] | None:
        """The field and why, when a bound that ``Meta`` cannot declare is broken."""
        if self.metadata is not None and (fault := json_fault(self.metadata)):
            return "metadata", fault
        return None


class AccountState(msgspec.Struct, kw_only=True, frozen=True):
    """An account as stored, with its balances."""

    id: UUID
    ledger: int
    code: int
    # An int in the document: any combination of the bits may be stored.
    flags: Annotated[int, msgspec.Meta(description=ACCOUNT_FLAGS_DOC)]
    debits_pending: int
    debits_posted: int
    credits_pending: int
    credits_posted: int
    metadata: dict[str, Any] | None
    timestamp: int
    created_at: datetime


class Balance(msgspec.Struct, kw_only=True, frozen=True):
    account_id: UUID
    debits_pending: int
    debits_posted: int
    credits_pending: int
    credits_posted: int


class Transfer(msgspec.Struct, kw_only=True, frozen=True, forbid_unknown_fields=True):
    """A request to move ``amount`` from the debit to the credit account.

    For ``POST_PENDING`` and ``VOID_PENDING`` the accounts, ledger and code may
    be left out: they are taken from the pending transfer. ``amount`` 0 on a
    post means the full pending amount.
    """

    id: UUID
    debit_account_id: UUID | None = None
    credit_account_id: UUID | None = None
    amount: Amount = 0
    ledger: LedgerId | None = None
    code: Code | None = None
    # An int, not a TransferFlags, in the document: 0 and sums are sent; the
    # writer's private END_OF_REQUEST bit is out of bounds for a request.
    flags: TransferFlagBits = TransferFlags.NONE
    pending_id: UUID | None = None
    #: Seconds after which a pending transfer may no longer be posted.
    timeout: TimeoutSeconds = 0
    metadata: Metadata | None = None
    #: Business time of the movement, if not the time it is recorded.
    effective_at: (
        Annotated[
            Moment,
            msgspec.Meta(
                description="Business time of the movement, if not the time it is"
                f" recorded. {MOMENT_RULE}"
            ),
        ]
        | None
    ) = None

    def bounds_fault(self) -> tuple[str, str] | None:
        """The field and why, when a bound that ``Meta`` cannot declare is
        broken (checked at the edge: code may build any transfer, and the
        SQL function keeps its own checks)."""
        if self.metadata is not None and (fault := json_fault(self.metadata)):
            return "metadata", fault
        if self.effective_at is not None and (fault := year_fault(self.effective_at)):
            return "effective_at", fault
        return None


class TransferState(msgspec.Struct, kw_only=True, frozen=True):
    """A transfer as recorded."""

    id: UUID
    debit_account_id: UUID
    credit_account_id: UUID
    amount: int
    ledger: int
    code: int
    # An int in the document: any combination of the bits may be recorded.
    flags: Annotated[int, msgspec.Meta(description=TRANSFER_FLAGS_DOC)]
    pending_id: UUID | None
    timeout: int
    metadata: dict[str, Any] | None
    effective_at: datetime | None
    timestamp: int
    created_at: datetime


class TransferOutcome(msgspec.Struct, kw_only=True, frozen=True):
    id: UUID
    result: CreateTransferResult
    #: Ledger timestamp of the recorded transfer (for ``ok`` and ``exists``).
    timestamp: int | None = None

    @property
    def ok(self) -> bool:
        return self.result is CreateTransferResult.OK


class AccountOutcome(msgspec.Struct, kw_only=True, frozen=True):
    id: UUID
    result: CreateAccountResult


class LedgerTotals(msgspec.Struct, kw_only=True, frozen=True):
    ledger: int
    accounts: int
    debits_pending: int
    debits_posted: int
    credits_pending: int
    credits_posted: int


class HistoryPage(msgspec.Struct, kw_only=True, frozen=True):
    transfers: list[TransferState]
    #: Pass back as ``cursor`` to read the next (older) page; None at the end.
    next_cursor: str | None
