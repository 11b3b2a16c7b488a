"""The refusals of market development funds, each with its kind (the API
maps it to a problem: 409 for a state that forbids the move, 422 for a
request the rules refuse whatever the state)."""

from __future__ import annotations

from core.errors import DomainError, ErrorKind


class InvalidMdfRequest(DomainError):
    """Well-formed, but outside what the fund allows: an activity outside
    the fund's period or larger than the fund, a funder funding itself, a
    partner or funder not of the program."""

    type_slug = "invalid-mdf-request"
    kind = ErrorKind.INVALID


class WrongMdfState(DomainError):
    """The activity or claim is not in a state that allows the move (a
    decided activity decided again otherwise, a submitted claim edited)."""

    type_slug = "mdf-wrong-state"
    kind = ErrorKind.CONFLICT


class FundClosed(DomainError):
    """The fund's period (for activities) or claims window (for claims) is
    over, or has not begun."""

    type_slug = "mdf-fund-closed"
    kind = ErrorKind.CONFLICT


class FundExhausted(DomainError):
    """Approving the activity would commit more than the fund holds."""

    type_slug = "mdf-fund-exhausted"
    kind = ErrorKind.CONFLICT


class ActivityOverclaimed(DomainError):
    """The claim would take the activity's claims past its approved amount."""

    type_slug = "mdf-activity-overclaimed"
    kind = ErrorKind.CONFLICT


class FunderCannotPay(DomainError):
    """The ledger refused the payment: a brand partner's points fund whose
    issuance account lacks the points. Nothing is written; the claim stays
    submitted, to approve again once the funder has the points."""

    type_slug = "mdf-funder-cannot-pay"
    kind = ErrorKind.CONFLICT
