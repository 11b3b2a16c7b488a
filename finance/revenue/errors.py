"""Errors of revenue recognition, each with its kind (``core.errors``)."""

from __future__ import annotations

from core.errors import DomainError, ErrorKind


class PeriodNotEnded(DomainError):
    """A period is recognised once it has ended in the program's time zone."""

    type_slug = "revenue-period-not-ended"
    kind = ErrorKind.INVALID


class LaterPeriodRecognised(DomainError):
    """Periods are recognised in order: each one's catch-up starts from
    what the one before it recognised."""

    type_slug = "revenue-later-period-recognised"
    kind = ErrorKind.CONFLICT


class RevenuePeriodOpen(DomainError):
    """The stored recognition of a period is its final one: it runs once the
    period is closed (nothing can be posted in it any more); before that, a
    preview computes it and writes nothing."""

    type_slug = "revenue-period-open"
    kind = ErrorKind.CONFLICT


class InvalidRevenuePeriod(DomainError):
    type_slug = "invalid-revenue-period"
    kind = ErrorKind.INVALID
