"""Refusals of data sharing, each with its kind and a stable ``type`` slug
(``core.errors``)."""

from core.errors import DomainError, ErrorKind, NotFound


class AgreementNotFound(NotFound):
    """No such agreement, or not one the caller is a party to: both answer
    the same (404 ``not-found``, as any id that exists nowhere), so an
    agreement of others is never revealed."""


class InvalidAgreement(DomainError):
    """Terms that cannot be agreed: no field, an unknown field, the partner
    itself as counterparty, an expiry in the past."""

    type_slug = "invalid-data-sharing-agreement"
    kind = ErrorKind.INVALID


class AgreementNotInForce(DomainError):
    """The agreement is not (or no longer) in force: proposed and waiting
    for an opt-in, revoked, or expired. Nothing is shared under it."""

    type_slug = "data-sharing-agreement-not-in-force"
    kind = ErrorKind.CONFLICT


class AgreementClosed(DomainError):
    """The agreement was revoked or expired: it can no longer change."""

    type_slug = "data-sharing-agreement-closed"
    kind = ErrorKind.CONFLICT


class NotARecipient(DomainError):
    """The agreement's direction does not let this partner receive data."""

    type_slug = "data-sharing-not-a-recipient"
    kind = ErrorKind.FORBIDDEN


class UnknownField(DomainError):
    """A field name that is not one of the shareable member fields."""

    type_slug = "unknown-data-sharing-field"
    kind = ErrorKind.INVALID
