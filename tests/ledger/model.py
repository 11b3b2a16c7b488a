"""An independent, in-memory model of the ledger's semantics.

Written from the specification (docs/ledger.md), not from the SQL: it
posts transfers one at a time, in plain Python, and the tests hold the real
ledger to the same answers.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from uuid import UUID

from ledger.schemas import (
    AMOUNT_MAX,
    AccountFlags,
    CreateTransferResult,
    Transfer,
    TransferFlags,
)

R = CreateTransferResult
NIL = UUID(int=0)
TWO_PHASE = TransferFlags.POST_PENDING | TransferFlags.VOID_PENDING


@dataclass
class ModelAccount:
    ledger: int
    flags: AccountFlags
    dp: int = 0
    dpo: int = 0
    cp: int = 0
    cpo: int = 0


@dataclass
class Recorded:
    """A transfer as the ledger records it (accounts resolved for post/void)."""

    request: Transfer
    debit: UUID
    credit: UUID
    amount: int
    ledger: int
    code: int
    expires_at: datetime | None


@dataclass
class ModelLedger:
    accounts: dict[UUID, ModelAccount] = field(default_factory=dict)
    transfers: dict[UUID, Recorded] = field(default_factory=dict)
    rejections: dict[UUID, tuple[Transfer, R]] = field(default_factory=dict)
    #: pending id -> "posted" | "voided"
    resolved: dict[UUID, str] = field(default_factory=dict)

    def open_account(self, account_id: UUID, ledger: int, flags: AccountFlags) -> None:
        self.accounts.setdefault(account_id, ModelAccount(ledger, flags))

    # -- posting ------------------------------------------------------------

    def create_transfers(self, batch: list[Transfer], now: datetime) -> list[R]:
        results: list[R] = []
        chain_start: int | None = None
        chain_failed = False
        snapshot: tuple[object, ...] | None = None
        for i, t in enumerate(batch):
            linked = bool(t.flags & TransferFlags.LINKED)
            if linked and chain_start is None:
                chain_start, chain_failed = i, False
                snapshot = copy.deepcopy((self.accounts, self.transfers, self.resolved))
            if linked and i == len(batch) - 1:
                code = R.LINKED_EVENT_CHAIN_OPEN
            elif chain_failed:
                code = R.LINKED_EVENT_FAILED
            else:
                code = self._create(t, now)
            results.append(code)
            self._reserve(t, code)
            if chain_start is not None:
                if code not in (R.OK, R.EXISTS) and not chain_failed:
                    chain_failed = True
                    assert snapshot is not None
                    self.accounts, self.transfers, self.resolved = snapshot  # type: ignore[assignment]
                    for j in range(chain_start, i):
                        results[j] = R.LINKED_EVENT_FAILED
                        self._reserve(batch[j], R.LINKED_EVENT_FAILED)
                if not linked:
                    chain_start, chain_failed = None, False
        return results

    def _reserve(self, t: Transfer, code: R) -> None:
        """A failed id is reserved with its failure (never the nil id)."""
        if (
            code not in (R.OK, R.EXISTS, R.EXISTS_WITH_DIFFERENT_FIELDS, R.ID_MUST_NOT_BE_ZERO)
            and t.id != NIL
            and t.id not in self.rejections
            and t.id not in self.transfers
        ):
            self.rejections[t.id] = (t, code)

    def _create(self, t: Transfer, now: datetime) -> R:
        if t.id == NIL:
            return R.ID_MUST_NOT_BE_ZERO
        if t.id in self.transfers:
            return R.EXISTS if _matches(t, self.transfers[t.id]) else R.EXISTS_WITH_DIFFERENT_FIELDS
        if t.id in self.rejections:
            earlier, code = self.rejections[t.id]
            return code if _same_request(t, earlier) else R.EXISTS_WITH_DIFFERENT_FIELDS
        code = self._static(t, now)
        if code is None:
            code = self._apply(t, now)
        return code

    def _static(self, t: Transfer, now: datetime) -> R | None:
        kinds = t.flags & (TransferFlags.PENDING | TWO_PHASE)
        if kinds not in (
            0,
            TransferFlags.PENDING,
            TransferFlags.POST_PENDING,
            TransferFlags.VOID_PENDING,
        ):
            return R.FLAGS_ARE_MUTUALLY_EXCLUSIVE
        if t.flags & TWO_PHASE:
            if t.pending_id is None:
                return R.PENDING_ID_REQUIRED
            if t.pending_id == t.id:
                return R.PENDING_ID_MUST_BE_DIFFERENT
            if t.timeout:
                return R.TIMEOUT_RESERVED_FOR_PENDING_TRANSFER
            if t.effective_at is not None and t.effective_at > now:
                return R.EFFECTIVE_AT_MUST_NOT_BE_IN_FUTURE
            return None
        if t.pending_id is not None:
            return R.PENDING_ID_MUST_BE_ZERO
        if t.debit_account_id is None or t.credit_account_id is None:
            return R.ACCOUNT_ID_REQUIRED
        if t.debit_account_id == t.credit_account_id:
            return R.ACCOUNTS_MUST_BE_DIFFERENT
        if t.amount <= 0:
            return R.AMOUNT_MUST_BE_POSITIVE
        if t.ledger is None:
            return R.LEDGER_REQUIRED
        if t.code is None:
            return R.CODE_REQUIRED
        if t.timeout and not t.flags & TransferFlags.PENDING:
            return R.TIMEOUT_RESERVED_FOR_PENDING_TRANSFER
        if t.effective_at is not None and t.effective_at > now:
            return R.EFFECTIVE_AT_MUST_NOT_BE_IN_FUTURE
        debit = self.accounts.get(t.debit_account_id)
        credit = self.accounts.get(t.credit_account_id)
        if debit is None:
            return R.DEBIT_ACCOUNT_NOT_FOUND
        if credit is None:
            return R.CREDIT_ACCOUNT_NOT_FOUND
        if debit.ledger != t.ledger or credit.ledger != t.ledger:
            return R.LEDGER_MISMATCH
        return None

    def _apply(self, t: Transfer, now: datetime) -> R:
        if t.flags & TWO_PHASE:
            return self._resolve(t, now)
        assert t.debit_account_id is not None and t.credit_account_id is not None
        assert t.ledger is not None and t.code is not None
        d = self.accounts[t.debit_account_id]
        c = self.accounts[t.credit_account_id]
        amount = t.amount
        if d.dp + d.dpo + amount > AMOUNT_MAX:
            return R.OVERFLOWS_DEBITS
        if c.cp + c.cpo + amount > AMOUNT_MAX:
            return R.OVERFLOWS_CREDITS
        if d.flags & AccountFlags.DEBITS_MUST_NOT_EXCEED_CREDITS and d.dp + d.dpo + amount > d.cpo:
            return R.EXCEEDS_CREDITS
        if c.flags & AccountFlags.CREDITS_MUST_NOT_EXCEED_DEBITS and c.cp + c.cpo + amount > c.dpo:
            return R.EXCEEDS_DEBITS
        if t.flags & TransferFlags.PENDING:
            d.dp += amount
            c.cp += amount
        else:
            d.dpo += amount
            c.cpo += amount
        expires = None
        if t.flags & TransferFlags.PENDING and t.timeout:
            expires = now + timedelta(seconds=t.timeout)
        self.transfers[t.id] = Recorded(
            t, t.debit_account_id, t.credit_account_id, amount, t.ledger, t.code, expires
        )
        return R.OK

    def _resolve(self, t: Transfer, now: datetime) -> R:
        assert t.pending_id is not None
        pending = self.transfers.get(t.pending_id)
        if pending is None:
            return R.PENDING_NOT_FOUND
        if not pending.request.flags & TransferFlags.PENDING:
            return R.PENDING_NOT_PENDING
        if (
            (t.debit_account_id is not None and t.debit_account_id != pending.debit)
            or (t.credit_account_id is not None and t.credit_account_id != pending.credit)
            or (t.ledger is not None and t.ledger != pending.ledger)
            or (t.code is not None and t.code != pending.code)
        ):
            return R.PENDING_MISMATCH
        state = self.resolved.get(t.pending_id)
        if state == "posted":
            return R.PENDING_ALREADY_POSTED
        if state == "voided":
            return R.PENDING_ALREADY_VOIDED
        post = bool(t.flags & TransferFlags.POST_PENDING)
        if post and pending.expires_at is not None and pending.expires_at <= now:
            return R.PENDING_EXPIRED
        if post and t.amount > pending.amount:
            return R.EXCEEDS_PENDING_AMOUNT
        if not post and t.amount not in (0, pending.amount):
            return R.PENDING_MISMATCH
        d = self.accounts[pending.debit]
        c = self.accounts[pending.credit]
        d.dp -= pending.amount
        c.cp -= pending.amount
        amount = pending.amount
        if post:
            amount = t.amount or pending.amount
            d.dpo += amount
            c.cpo += amount
        self.resolved[t.pending_id] = "posted" if post else "voided"
        self.transfers[t.id] = Recorded(
            t, pending.debit, pending.credit, amount, pending.ledger, pending.code, None
        )
        return R.OK


def _matches(t: Transfer, recorded: Recorded) -> bool:
    """A replay matches a recorded transfer; left-out post/void fields match."""
    r = recorded.request
    two_phase = bool(t.flags & TWO_PHASE)
    return (
        (t.debit_account_id or recorded.debit) == recorded.debit
        and (t.credit_account_id or recorded.credit) == recorded.credit
        and (t.amount == recorded.amount or (t.amount == 0 and two_phase))
        and (t.ledger or recorded.ledger) == recorded.ledger
        and (t.code or recorded.code) == recorded.code
        and int(t.flags) & 15 == int(r.flags) & 15
        and t.pending_id == r.pending_id
        and t.timeout == r.timeout
        and (t.metadata or {}) == (r.metadata or {})
        and t.effective_at == r.effective_at
    )


def _same_request(a: Transfer, b: Transfer) -> bool:
    return (
        a.debit_account_id,
        a.credit_account_id,
        a.amount,
        a.ledger,
        a.code,
        int(a.flags) & 15,
        a.pending_id,
        a.timeout,
        a.metadata,
        a.effective_at,
    ) == (
        b.debit_account_id,
        b.credit_account_id,
        b.amount,
        b.ledger,
        b.code,
        int(b.flags) & 15,
        b.pending_id,
        b.timeout,
        b.metadata,
        b.effective_at,
    )
