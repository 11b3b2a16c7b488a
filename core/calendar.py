"""A program's calendar: its days, months and years as they fall in its time
zone, given as UTC instants.

Every calendar rule of a program (tier and threshold windows, the daily gift
limit, month-based expiry) counts in the program's zone: a purchase at 00:30
on 1 January in Johannesburg belongs to the new year, although it is still
31 December in UTC. The arithmetic lives here alone. Boundaries are the
local wall-clock times (midnight, the 1st, 1 January, the same time N months
later) turned into instants; the database compares instants.

A local time that a daylight-saving change skips is taken with the offset
in force before the change (``fold=0``), so a day whose midnight is skipped
starts at the change itself, the first instant of that day.
"""

from __future__ import annotations

import functools
from datetime import UTC, date, datetime, time, timedelta
from zoneinfo import ZoneInfo, available_timezones

from core.errors import DomainError

#: The zone of a program that names none.
DEFAULT_TIME_ZONE = "UTC"


class UnknownTimeZone(DomainError):
    """The ``time_zone`` is not an IANA time zone name this server knows."""

    type_slug = "unknown-time-zone"


@functools.cache
def _known_zones() -> frozenset[str]:
    # The IANA names only: ZoneInfo also opens other files under the
    # zoneinfo folders (posixrules, a path with "..") that are no zone.
    return frozenset(available_timezones())


@functools.cache
def time_zone(name: str) -> ZoneInfo:
    """The zone named ``name`` (e.g. Africa/Johannesburg); ``UnknownTimeZone``
    naming the field ``time_zone`` when there is none of that name."""
    if name not in _known_zones() and name != DEFAULT_TIME_ZONE:
        raise UnknownTimeZone(
            f"time_zone: {name!r} is not an IANA time zone name (e.g. Africa/Johannesburg, UTC)"
        )
    return ZoneInfo(name)


def _instant(day: datetime) -> datetime:
    return day.astimezone(UTC)


def local_day(at: datetime, zone: str) -> tuple[datetime, datetime]:
    """The local day containing ``at``: [its midnight, the next midnight), as UTC instants."""
    tz = time_zone(zone)
    day = at.astimezone(tz).date()
    start = datetime.combine(day, time.min, tzinfo=tz)
    end = datetime.combine(day + timedelta(days=1), time.min, tzinfo=tz)
    return _instant(start), _instant(end)


def local_month(at: datetime, zone: str) -> tuple[datetime, datetime]:
    """The local calendar month containing ``at``: [the 1st, the next 1st)."""
    tz = time_zone(zone)
    local = at.astimezone(tz)
    year, month = divmod(local.year * 12 + local.month, 12)  # the month after, 0-based
    start = datetime(local.year, local.month, 1, tzinfo=tz)
    end = datetime(year, month + 1, 1, tzinfo=tz)
    return _instant(start), _instant(end)


def month_of(at: datetime, zone: str) -> date:
    """The first day of the local calendar month containing ``at``: the
    month a report, a period or a cohort names."""
    local = at.astimezone(time_zone(zone))
    return date(local.year, local.month, 1)


def next_month(month: date) -> date:
    """The first day of the month after ``month`` (a month's first day)."""
    return date(month.year + month.month // 12, month.month % 12 + 1, 1)


def month_bounds(month: date, zone: str) -> tuple[datetime, datetime]:
    """The local calendar month ``month`` (its first day): [the 1st, the next
    1st), as UTC instants."""
    return local_month(datetime(month.year, month.month, 1, tzinfo=time_zone(zone)), zone)


def local_year(at: datetime, zone: str) -> tuple[datetime, datetime]:
    """The local calendar year containing ``at``: [1 January, the next 1 January)."""
    tz = time_zone(zone)
    year = at.astimezone(tz).year
    return _instant(datetime(year, 1, 1, tzinfo=tz)), _instant(datetime(year + 1, 1, 1, tzinfo=tz))


def add_months(at: datetime, months: int, zone: str) -> datetime:
    """The same local time ``months`` later (earlier when negative), on the
    same day of the month or the month's last day when it has fewer
    (31 January + 1 month is 28 February)."""
    tz = time_zone(zone)
    local = at.astimezone(tz)
    year, month = divmod(local.year * 12 + local.month - 1 + months, 12)
    for day in (local.day, 30, 29, 28):
        try:
            moved = local.replace(year=year, month=month + 1, day=day, fold=0)
        except ValueError:
            continue
        return _instant(moved)
    raise AssertionError("unreachable: every month has a 28th")


def add_years(at: datetime, years: int, zone: str) -> datetime:
    """The same local time ``years`` later (29 February becomes the 28th)."""
    return add_months(at, 12 * years, zone)
