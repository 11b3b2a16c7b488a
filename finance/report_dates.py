"""The dates finance reports are asked for: a day (``as_of``), a month
(``period``) or a range of days, all accounting days of the program's
ledger (calendar dates of the ledger's ``time_zone``, ``accounting_zone``),
inclusive.

They arrive as text (a query string, a command's option) and are parsed
here, so that the API and the command line refuse the same things with the
same words: a day that is not ``YYYY-MM-DD``, a month not ``YYYY-MM``, a
range whose first day follows its last, a period given twice or not at all.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta

from core import calendar
from core.errors import DomainError, ErrorKind
from ledger.liability_reads import Fetches, ledger_time_zone

#: Days finance reports on: PostgreSQL and Python both hold them, and the
#: day after the last still exists (an "end of day" is the next midnight).
FIRST_DAY = date(1900, 1, 1)
LAST_DAY = date(9999, 12, 30)

_DAY = re.compile(r"^\d{4}-\d{2}-\d{2}$")
_MONTH = re.compile(r"^\d{4}-\d{2}$")


class InvalidReportDate(DomainError):
    """A report's day or period is malformed or empty."""

    type_slug = "invalid-report-date"
    kind = ErrorKind.INVALID


@dataclass(frozen=True)
class Period:
    """Accounting days ``first_day`` to ``last_day``, both included."""

    first_day: date
    last_day: date

    @property
    def label(self) -> str:
        """``YYYY-MM`` for a whole calendar month, else ``first..last``."""
        if self.first_day.day == 1 and self.last_day == _month_end(self.first_day):
            return f"{self.first_day:%Y-%m}"
        return f"{self.first_day.isoformat()}..{self.last_day.isoformat()}"


def parse_day(name: str, text: str) -> date:
    """``text`` (``YYYY-MM-DD``) as a day; ``InvalidReportDate`` naming ``name``."""
    if not _DAY.match(text):
        raise InvalidReportDate(f"{name}: {text!r} is not a date (YYYY-MM-DD)")
    try:
        day = date.fromisoformat(text)
    except ValueError:
        raise InvalidReportDate(f"{name}: {text!r} is not a date of the calendar") from None
    if not FIRST_DAY <= day <= LAST_DAY:
        raise InvalidReportDate(
            f"{name}: {text} is outside {FIRST_DAY.isoformat()} to {LAST_DAY.isoformat()}"
        )
    return day


def parse_month(name: str, text: str) -> Period:
    """``text`` (``YYYY-MM``) as the month's first and last days."""
    if not _MONTH.match(text):
        raise InvalidReportDate(f"{name}: {text!r} is not a month (YYYY-MM)")
    year, month = int(text[:4]), int(text[5:])
    if not 1 <= month <= 12 or year < FIRST_DAY.year:
        raise InvalidReportDate(f"{name}: {text!r} is not a month of the calendar")
    first = date(year, month, 1)
    return Period(first, min(_month_end(first), LAST_DAY))


def parse_period(period: str | None, first_day: str | None, last_day: str | None) -> Period:
    """A month (``period``) or a range of days (``first_day`` and ``last_day``): one of the two."""
    if period is not None:
        if first_day is not None or last_day is not None:
            raise InvalidReportDate("period: give a month or first_day and last_day, not both")
        return parse_month("period", period)
    if first_day is None or last_day is None:
        raise InvalidReportDate("period: give a month (YYYY-MM), or first_day and last_day")
    first, last = parse_day("first_day", first_day), parse_day("last_day", last_day)
    if first > last:
        raise InvalidReportDate(f"first_day: {first} follows last_day {last}")
    return Period(first, last)


async def accounting_zone(db: Fetches, ledger: int) -> str:
    """The zone of the ledger's accounting days (``ledgers.time_zone``): the
    zone of every date and month finance counts in (periods, liability,
    roll-forward, revenue), since the ledger's lots and daily aggregates are
    dated in it. Set from the program's zone when the ledger was made (or
    at migration 0037) and never moved by a later change of the program's
    zone, so a program whose zone changed keeps its books on the old days."""
    return await ledger_time_zone(db, ledger)


def end_of_day(day: date, zone: str) -> datetime:
    """The last instant of ``day`` in ``zone`` (a microsecond before the next
    midnight there), as UTC: what "as of that day" means for a value in force."""
    tz = calendar.time_zone(zone)
    next_midnight = datetime.combine(day + timedelta(days=1), time.min, tzinfo=tz)
    return next_midnight.astimezone(UTC) - timedelta(microseconds=1)


def _month_end(first: date) -> date:
    year, month = divmod(first.year * 12 + first.month, 12)  # the month after, 0-based
    if year > 9999:
        return date(9999, 12, 31)
    return date(year, month + 1, 1) - timedelta(days=1)
