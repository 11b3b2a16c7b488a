"""Refusals of the exchange between programs, each with its kind and a
stable ``type`` slug (``core.errors``)."""

from core.errors import DomainError, ErrorKind


class InvalidExchangeTerms(DomainError):
    """Terms that cannot be agreed: no direction, bounds that exclude every
    amount, or rates under which a round trip would create points."""

    type_slug = "invalid-exchange-terms"
    kind = ErrorKind.INVALID


class ExchangeProposalOwn(DomainError):
    """A program accepts the other program's proposals, never its own."""

    type_slug = "exchange-proposal-own"
    kind = ErrorKind.CONFLICT


class ExchangeAgreementNotActive(DomainError):
    """The agreement was proposed and no rate version of it is accepted yet."""

    type_slug = "exchange-agreement-not-active"
    kind = ErrorKind.CONFLICT


class ExchangeClosed(DomainError):
    """No accepted rate version is in force for this direction now."""

    type_slug = "exchange-closed"
    kind = ErrorKind.CONFLICT


class ExchangeMemberNotEnrolled(DomainError):
    """The member has no enrolment (by the same external id) in the target program."""

    type_slug = "exchange-member-not-enrolled"
    kind = ErrorKind.CONFLICT


class ExchangeOutOfBounds(DomainError):
    """Below the minimum or above the maximum of one conversion, or too few
    points to receive a whole point."""

    type_slug = "exchange-out-of-bounds"
    kind = ErrorKind.INVALID


class ExchangeCapExceeded(DomainError):
    """The member's conversions today (the source program's day) would pass the daily cap."""

    type_slug = "exchange-daily-cap-exceeded"
    kind = ErrorKind.INVALID
