"""Why coalition points refuse a request, each with its kind and a stable
problem type. A rule version's (publish in the past, already published)
and a hold's (closed, capture beyond it) are the rewards' own errors."""

from __future__ import annotations

from core.errors import DomainError, ErrorKind


class InvalidContract(DomainError):
    """Terms that do not hold together (a credit limit on a prepaid contract...)."""

    type_slug = "invalid-contract"
    kind = ErrorKind.INVALID


class CreditLineInUse(DomainError):
    """A lower credit limit would take back headroom the partner has
    already issued: the ledger refused the decrease, nothing changed."""

    type_slug = "credit-line-in-use"
    kind = ErrorKind.CONFLICT


class NoContractInForce(DomainError):
    """The partner (nor any firm above it) has no contract in force now."""

    type_slug = "no-contract-in-force"
    kind = ErrorKind.CONFLICT


class ContractRoleMissing(DomainError):
    """The contract in force does not let the partner issue (or accept) points."""

    type_slug = "contract-role-missing"
    kind = ErrorKind.CONFLICT


class PartnerNotActive(DomainError):
    """The partner, or the firm whose contract it acts under, is not active."""

    type_slug = "partner-not-active"
    kind = ErrorKind.CONFLICT


class FundingExhausted(DomainError):
    """The partner's issuance account holds fewer points than asked: the
    ledger itself refused the transfer (prepaid blocks or credit line used up)."""

    type_slug = "partner-funding-exhausted"
    kind = ErrorKind.CONFLICT


class NotPrepaid(DomainError):
    """Blocks of points are bought under a prepaid contract only."""

    type_slug = "partner-not-prepaid"
    kind = ErrorKind.CONFLICT


class InvalidIssuance(DomainError):
    """An issuance's fields do not hold together (a purchase in another currency...)."""

    type_slug = "invalid-issuance"
    kind = ErrorKind.INVALID


class RefundExceedsCapture(DomainError):
    """A refund would give back more points than the hold captured, less
    those refunded already."""

    type_slug = "refund-exceeds-capture"
    kind = ErrorKind.INVALID
