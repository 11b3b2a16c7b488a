"""Why settlement refuses a request, each with its kind and problem type."""

from __future__ import annotations

from core.errors import DomainError, ErrorKind


class NotContractHolder(DomainError):
    """The firm has no published contract of its own: its statements are its
    contract holder's."""

    type_slug = "not-a-contract-holder"
    kind = ErrorKind.CONFLICT


class StatementPeriodRefused(DomainError):
    """Not the partner's next period, or one that has not ended yet."""

    type_slug = "statement-period-refused"
    kind = ErrorKind.CONFLICT


class PaymentRefused(DomainError):
    """A payment beyond what the partner owes, or a payout beyond what the
    program owes it: refused by the money ledger, nothing recorded."""

    type_slug = "payment-refused"
    kind = ErrorKind.CONFLICT


class ReferenceReused(DomainError):
    """The reference was recorded with other fields."""

    type_slug = "reference-reused"
    kind = ErrorKind.CONFLICT
