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
    JSON_RULE,
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

# What the document says of the fields that recur. Amounts are integers in
# the ledger's unit (points, for a program's ledger).
_ACCOUNT_ID = (
    "The account's id, chosen by the caller: opening it again answers `exists` (or"
    " `exists_with_different_fields`)."
)
_ACCOUNT_CODE = "The caller's kind of account (e.g. wallet, issuance), for reports."
_METADATA = f"The caller's own data, stored as it is sent and returned on reads. {JSON_RULE}"
_DEBITS_PENDING = "The sum of pending debits (reserved, not yet posted or voided)."
_DEBITS_POSTED = "The sum of posted debits."
_CREDITS_PENDING = "The sum of pending credits (reserved, not yet posted or voided)."
_CREDITS_POSTED = "The sum of posted credits."
_TIMESTAMP = (
    "The transfer's place in the order of records: unique, larger for a later one (the"
    " history's cursor is one)."
)


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
    #: Its business time (``effective_at``, else now) is at or before the
    #: ledger's ``closed_through``: the period is closed (``ledger.periods``).
    BUSINESS_TIME_IN_CLOSED_PERIOD = "business_time_in_closed_period"


#: Database result code (smallint) -> result, in the order the SQL uses.
TRANSFER_RESULTS: tuple[CreateTransferResult, ...] = tuple(CreateTransferResult)


class Ledger(msgspec.Struct, kw_only=True, frozen=True, forbid_unknown_fields=True):
    id: Annotated[LedgerId, msgspec.Meta(description="The ledger's id, chosen by the caller.")]
    name: Annotated[Text100, NonEmpty, msgspec.Meta(description="A name for people to read.")]
    asset_scale: Annotated[
        int,
        msgspec.Meta(
            ge=0,
            le=18,
            description="Decimal places of the ledger's unit: 0 for whole points, 2 when"
            " amounts are hundredths. Informative: amounts are always integers of the unit.",
        ),
    ] = 0


class Account(msgspec.Struct, kw_only=True, frozen=True, forbid_unknown_fields=True):
    """A request to open an account."""

    id: Annotated[UUID, msgspec.Meta(description=_ACCOUNT_ID)]
    ledger: Annotated[LedgerId, msgspec.Meta(description="The ledger the account is in.")]
    code: Annotated[Code, msgspec.Meta(description=_ACCOUNT_CODE)]
    # An int, not an AccountFlags, in the document: 0 and sums are sent.
    flags: AccountFlagBits = AccountFlags.NONE
    metadata: Annotated[Metadata, msgspec.Meta(description=_METADATA)] | None = None

    def bounds_fault(self) -> tuple[str, str] | None:
        """The field and why, when a bound that ``Meta`` cannot declare is broken."""
        if self.metadata is not None and (fault := json_fault(self.metadata)):
            return "metadata", fault
        return None


class AccountState(msgspec.Struct, kw_only=True, frozen=True):
    """An account as stored, with its balances."""

    id: Annotated[UUID, msgspec.Meta(description="The account's id.")]
    ledger: Annotated[int, msgspec.Meta(description="The ledger the account is in.")]
    code: Annotated[int, msgspec.Meta(description=_ACCOUNT_CODE)]
    # An int in the document: any combination of the bits may be stored.
    flags: Annotated[int, msgspec.Meta(description=ACCOUNT_FLAGS_DOC)]
    debits_pending: Annotated[int, msgspec.Meta(description=_DEBITS_PENDING)]
    debits_posted: Annotated[int, msgspec.Meta(description=_DEBITS_POSTED)]
    credits_pending: Annotated[int, msgspec.Meta(description=_CREDITS_PENDING)]
    credits_posted: Annotated[int, msgspec.Meta(description=_CREDITS_POSTED)]
    metadata: Annotated[
        dict[str, Any] | None, msgspec.Meta(description="The metadata sent when it was opened.")
    ]
    timestamp: Annotated[
        int,
        msgspec.Meta(
            description="The account's place in the order of openings: unique, larger for a"
            " later one."
        ),
    ]
    created_at: Annotated[datetime, msgspec.Meta(description="When the account was opened.")]


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

    id: Annotated[
        UUID,
        msgspec.Meta(
            description="The transfer's id, chosen by the caller: sending it again answers"
            " `exists` (or `exists_with_different_fields`), never a second transfer."
        ),
    ]
    debit_account_id: (
        Annotated[
            UUID,
            msgspec.Meta(
                description="The account debited (the amount leaves it). Left out on a post"
                " or void: the pending transfer's."
            ),
        ]
        | None
    ) = None
    credit_account_id: (
        Annotated[
            UUID,
            msgspec.Meta(
                description="The account credited (the amount reaches it). Left out on a post"
                " or void: the pending transfer's."
            ),
        ]
        | None
    ) = None
    amount: Annotated[
        Amount,
        msgspec.Meta(
            description="How much moves, an integer in the ledger's unit (points). On a post"
            " of a pending transfer, 0 posts its full amount and less posts part of it."
        ),
    ] = 0
    ledger: (
        Annotated[
            LedgerId,
            msgspec.Meta(
                description="The ledger of both accounts. Left out on a post or void: the"
                " pending transfer's."
            ),
        ]
        | None
    ) = None
    code: (
        Annotated[
            Code,
            msgspec.Meta(
                description="The caller's kind of movement (e.g. earn, redeem), for reports."
                " Left out on a post or void: the pending transfer's."
            ),
        ]
        | None
    ) = None
    # An int, not a TransferFlags, in the document: 0 and sums are sent; the
    # writer's private END_OF_REQUEST bit is out of bounds for a request.
    flags: TransferFlagBits = TransferFlags.NONE
    pending_id: (
        Annotated[
            UUID,
            msgspec.Meta(
                description="The pending transfer that a post (flag 4) or void (flag 8)"
                " resolves; none otherwise."
            ),
        ]
        | None
    ) = None
    timeout: Annotated[
        TimeoutSeconds,
        msgspec.Meta(
            description="Seconds after which a pending transfer (flag 2) can no longer be"
            " posted, and its amount is released; 0 for never. Only for pending transfers."
        ),
    ] = 0
    metadata: Annotated[Metadata, msgspec.Meta(description=_METADATA)] | None = None
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

    id: Annotated[UUID, msgspec.Meta(description="The transfer's id.")]
    debit_account_id: Annotated[UUID, msgspec.Meta(description="The account debited.")]
    credit_account_id: Annotated[UUID, msgspec.Meta(description="The account credited.")]
    amount: Annotated[
        int,
        msgspec.Meta(
            description="How much moved (or, pending, is reserved), in the ledger's unit."
        ),
    ]
    ledger: Annotated[int, msgspec.Meta(description="The ledger it was recorded in.")]
    code: Annotated[int, msgspec.Meta(description="The caller's kind of movement.")]
    # An int in the document: any combination of the bits may be recorded.
    flags: Annotated[int, msgspec.Meta(description=TRANSFER_FLAGS_DOC)]
    pending_id: Annotated[
        UUID | None,
        msgspec.Meta(description="The pending transfer this one posts or voids, if any."),
    ]
    timeout: Annotated[
        int,
        msgspec.Meta(description="Seconds a pending transfer could wait to be posted; 0 never."),
    ]
    metadata: Annotated[
        dict[str, Any] | None, msgspec.Meta(description="The metadata sent with the transfer.")
    ]
    effective_at: Annotated[
        datetime | None,
        msgspec.Meta(description="Its business time, when one was sent; else none."),
    ]
    timestamp: Annotated[int, msgspec.Meta(description=_TIMESTAMP)]
    created_at: Annotated[datetime, msgspec.Meta(description="When it was recorded.")]


class TransferOutcome(msgspec.Struct, kw_only=True, frozen=True):
    id: Annotated[UUID, msgspec.Meta(description="The transfer's id, as sent.")]
    result: Annotated[
        CreateTransferResult,
        msgspec.Meta(
            description="`ok` recorded now, `exists` recorded before with the same fields;"
            " any other value names why the transfer was refused (nothing moved)."
        ),
    ]
    timestamp: Annotated[
        int | None,
        msgspec.Meta(description=f"For `ok` and `exists`: {_TIMESTAMP} Otherwise none."),
    ] = None

    @property
    def ok(self) -> bool:
        return self.result is CreateTransferResult.OK


class AccountOutcome(msgspec.Struct, kw_only=True, frozen=True):
    id: Annotated[UUID, msgspec.Meta(description="The account's id, as sent.")]
    result: Annotated[
        CreateAccountResult,
        msgspec.Meta(
            description="`ok` opened now, `exists` opened before with the same fields; any"
            " other value names why the account was refused."
        ),
    ]


class LedgerTotals(msgspec.Struct, kw_only=True, frozen=True):
    """Sums over every account of a ledger: debits and credits are equal when
    the books balance."""

    ledger: Annotated[int, msgspec.Meta(description="The ledger's id.")]
    accounts: Annotated[int, msgspec.Meta(description="How many accounts the ledger has.")]
    debits_pending: Annotated[
        int, msgspec.Meta(description=f"{_DEBITS_PENDING[:-1]}, over all its accounts.")
    ]
    debits_posted: Annotated[
        int, msgspec.Meta(description=f"{_DEBITS_POSTED[:-1]}, over all its accounts.")
    ]
    credits_pending: Annotated[
        int, msgspec.Meta(description=f"{_CREDITS_PENDING[:-1]}, over all its accounts.")
    ]
    credits_posted: Annotated[
        int, msgspec.Meta(description=f"{_CREDITS_POSTED[:-1]}, over all its accounts.")
    ]


class HistoryPage(msgspec.Struct, kw_only=True, frozen=True):
    transfers: Annotated[
        list[TransferState],
        msgspec.Meta(description="The account's transfers, newest first."),
    ]
    next_cursor: Annotated[
        str | None,
        msgspec.Meta(
            description="Send it back as `cursor` to read the next (older) page; none on the"
            " last page."
        ),
    ]


class StatementWindow(msgspec.Struct, kw_only=True, frozen=True):
    """Which transfers of a few accounts a statement reads (debits of
    ``debited``, credits of ``credited``): those recorded
    in ``(after, up_to]`` (ledger timestamps), of these codes, sorted by
    business time into its period ``[period_start, period_end)`` or an
    earlier one (counted only if recorded after ``settled_up_to``, the
    previous statement's cutoff)."""

    debited: tuple[UUID, ...]
    credited: tuple[UUID, ...]
    codes: tuple[int, ...]
    after: int
    up_to: int
    period_start: datetime
    period_end: datetime
    settled_up_to: int


class StatementSum(msgspec.Struct, kw_only=True, frozen=True):
    """One group of a statement's transfers: their account, code, side, whether the
    statement counts them, the contract version bucket of their business
    time (1 for the first start, 0 before it), the start of the earlier
    period they belong to (a late transfer; None in the statement's own),
    their sum and number, and the first timestamp among those of a later
    period (the next statement reads from there)."""

    account_id: UUID
    code: int
    debit: bool
    counted: bool
    version_bucket: int
    late_period: datetime | None
    amount: int
    transfers: int
    first_after_period: int | None
