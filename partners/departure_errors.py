"""Why a partner's departure, or a request of a departed partner, is
refused: each with its kind and a stable problem type."""

from __future__ import annotations

from core.errors import DomainError, ErrorKind


class PartnerDeparted(DomainError):
    """The partner left: past its last issuing day (an issuance), its last
    accepting day (a new hold) or its valuation instant (a capture, a
    refund)."""

    type_slug = "partner-departed"
    kind = ErrorKind.CONFLICT


class InvalidDeparture(DomainError):
    """Days that do not hold together: a valuation date before a last day,
    or a day that has already ended (it would rewrite what happened)."""

    type_slug = "invalid-departure"
    kind = ErrorKind.INVALID


class DepartureChangeRefused(DomainError):
    """The departure cannot change: its final statement is issued, or a day
    it would move has already ended."""

    type_slug = "departure-change-refused"
    kind = ErrorKind.CONFLICT


class DepartureNotDue(DomainError):
    """The final statement is issued once the valuation instant has passed
    (by ``FINAL_STATEMENT_DELAY``)."""

    type_slug = "departure-not-due"
    kind = ErrorKind.CONFLICT
