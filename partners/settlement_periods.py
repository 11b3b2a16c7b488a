"""Settlement periods as they fall in the program's time zone: weeks
(Monday to Monday), calendar months and quarters, each [start, end) as
UTC instants (``core.calendar``), and their labels (``2026-W48``,
``2026-11``, ``2026-Q4``)."""

from __future__ import annotations

from datetime import datetime, time, timedelta

from core import calendar
from partners.coalition_models import SettlementPeriod

#: The unit of each settlement period, as PostgreSQL's ``date_trunc`` names it.
UNITS: dict[str, str] = {
    SettlementPeriod.WEEKLY: "week",
    SettlementPeriod.MONTHLY: "month",
    SettlementPeriod.QUARTERLY: "quarter",
}


def period_of(at: datetime, unit: str, zone: str) -> tuple[datetime, datetime]:
    """The period of ``unit`` (week, month, quarter) containing ``at``."""
    tz = calendar.time_zone(zone)
    local = at.astimezone(tz)
    if unit == "week":
        monday = local.date() - timedelta(days=local.weekday())
        start = datetime.combine(monday, time.min, tzinfo=tz)
        end = datetime.combine(monday + timedelta(days=7), time.min, tzinfo=tz)
        return calendar.local_day(start, zone)[0], calendar.local_day(end, zone)[0]
    month_start, _ = calendar.local_month(at, zone)
    if unit == "month":
        return month_start, calendar.add_months(month_start, 1, zone)
    if unit != "quarter":
        raise ValueError(f"no settlement period unit {unit!r}")
    first = calendar.add_months(month_start, -((local.month - 1) % 3), zone)
    return first, calendar.add_months(first, 3, zone)


def label_of(start: datetime, unit: str, zone: str) -> str:
    """The period's name, from its start."""
    local = start.astimezone(calendar.time_zone(zone))
    if unit == "week":
        year, week, _ = local.isocalendar()
        return f"{year}-W{week:02d}"
    if unit == "month":
        return f"{local.year}-{local.month:02d}"
    return f"{local.year}-Q{(local.month - 1) // 3 + 1}"
