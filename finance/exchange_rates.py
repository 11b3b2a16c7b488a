"""Exchange rates kept by the operator, and the conversion of an amount to
the program's functional currency (its own currency).

A rate is recorded per program, currency and effective date, and never
changed: the rate in force on a day is the latest whose ``effective_on`` is
on or before it. The journal takes the rate in force on each line's
accounting date (the period's last day) for every line in another
currency; a currency with no rate in force fails the export
(``ExchangeRateMissing``), never a silent 1.

Conversion: ``functional minor = amount minor x rate x 10^(functional
minor unit - currency's minor unit)``, rounded once, half to even, to the
functional currency's minor unit (``functional_minor``; the journal's SQL
does the same sum, ``ledger.journal_reads``). The debit and the credit of a
journal line pair convert the same amount, so they stay equal.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import date
from decimal import ROUND_HALF_EVEN, Decimal
from zoneinfo import ZoneInfo

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from core import audit
from core.errors import AlreadyExists, DomainError, ErrorKind
from core.models import Program
from core.pagination import decode_cursor, page_of
from core.principal import Principal
from finance.currencies import minor_unit
from finance.exchange_rate_models import ExchangeRateRecord
from finance.exchange_rate_schemas import ExchangeRateBody, ExchangeRatePage, ExchangeRateView
from finance.report_dates import accounting_zone
from ledger import periods as ledger_periods
from ledger.journal_reads import Connection
from rewards.connections import session_connection


class ExchangeRateMissing(DomainError):
    """A line in another currency, and no rate in force on its date."""

    type_slug = "exchange-rate-missing"
    kind = ErrorKind.CONFLICT


class FunctionalCurrencyRate(DomainError):
    """The program's own currency converts at 1 by definition."""

    type_slug = "exchange-rate-functional-currency"
    kind = ErrorKind.INVALID


class RateInClosedPeriod(DomainError):
    """A closed month's journal exports the same bytes every time: a rate
    that would replace the one in force on a closed day is refused."""

    type_slug = "exchange-rate-in-closed-period"
    kind = ErrorKind.CONFLICT


@dataclass(frozen=True)
class RateInForce:
    currency: str
    rate: Decimal
    #: The day the rate took effect (on or before the day asked about).
    effective_on: date


@dataclass(frozen=True)
class ExchangeRateAdded:
    view: ExchangeRateView
    created: bool


def conversion_factor(rate: Decimal, currency: str, functional_currency: str) -> Decimal:
    """What an amount in ``currency``'s minor units is multiplied by to give
    functional minor units (before rounding)."""
    return rate.scaleb(minor_unit(functional_currency) - minor_unit(currency))


def functional_minor(amount_minor: int, factor: Decimal) -> int:
    """``amount_minor x factor`` rounded half to even to a whole minor unit."""
    return int((Decimal(amount_minor) * factor).to_integral_value(rounding=ROUND_HALF_EVEN))


def plain_rate(rate: Decimal) -> Decimal:
    """The rate without trailing zeros and without an exponent (the column
    keeps 12 places: 18.412500000000 is 18.4125)."""
    normal = rate.normalize()
    exponent = normal.as_tuple().exponent
    return normal.quantize(Decimal(1)) if isinstance(exponent, int) and exponent > 0 else normal


def view_of(row: ExchangeRateRecord, program: Program) -> ExchangeRateView:
    return ExchangeRateView(
        id=row.id,
        currency=row.currency,
        functional_currency=program.currency,
        rate=plain_rate(row.rate),
        effective_on=row.effective_on,
        recorded_by=row.recorded_by,
        recorded_at=row.created_at,
    )


async def add_exchange_rate(
    session: AsyncSession, program: Program, body: ExchangeRateBody, *, principal: Principal
) -> ExchangeRateAdded:
    """Record a rate. The same rate again for the same currency and day is
    found (nothing written); another rate for that day is refused."""
    if body.currency == program.currency:
        raise FunctionalCurrencyRate(
            f"currency: {body.currency} is the program's own (functional) currency, whose rate is 1"
        )
    found = await session.scalar(
        select(ExchangeRateRecord).where(
            ExchangeRateRecord.program_id == program.id,
            ExchangeRateRecord.currency == body.currency,
            ExchangeRateRecord.effective_on == body.effective_on,
        )
    )
    if found is not None:
        if found.rate == body.rate:
            return ExchangeRateAdded(view_of(found, program), created=False)
        raise AlreadyExists(
            f"the program has a rate for {body.currency} from {body.effective_on.isoformat()}"
            f" already ({found.rate.normalize():f}); rates are never changed: add one from a"
            " later date",
            field="effective_on",
        )
    await _refuse_rewriting_closed_days(session, program, body)
    row = ExchangeRateRecord(
        program_id=program.id,
        currency=body.currency,
        rate=body.rate,
        effective_on=body.effective_on,
        recorded_by=principal.actor,
    )
    session.add(row)
    await session.flush()
    await session.refresh(row)
    await audit.record(
        session,
        principal,
        "finance.exchange_rate.add",
        f"program:{program.slug}:exchange_rate:{body.currency}:{body.effective_on.isoformat()}",
        {"rate": f"{body.rate:f}", "functional_currency": program.currency},
    )
    return ExchangeRateAdded(view_of(row, program), created=True)


async def _refuse_rewriting_closed_days(
    session: AsyncSession, program: Program, body: ExchangeRateBody
) -> None:
    """A rate from a closed day would change the rate in force at the end of
    a closed month when the currency had one already; a currency's first
    rate changes nothing exported (its journal could not be exported)."""
    connection = await session_connection(session)
    boundary = await ledger_periods.closed_through(connection, program.ledger_id)
    if boundary is None:
        return
    last_closed = boundary.astimezone(
        ZoneInfo(await accounting_zone(connection, program.ledger_id))
    ).date()
    if body.effective_on > last_closed:
        return
    earlier = await session.scalar(
        select(ExchangeRateRecord.effective_on)
        .where(
            ExchangeRateRecord.program_id == program.id,
            ExchangeRateRecord.currency == body.currency,
            ExchangeRateRecord.effective_on < body.effective_on,
        )
        .limit(1)
    )
    if earlier is not None:
        raise RateInClosedPeriod(
            f"effective_on: {body.effective_on.isoformat()} is in a closed period (closed"
            f" through {last_closed.isoformat()}) and {body.currency} has a rate in force"
            " then: a closed month's journal does not change; add the rate from a later day"
        )


async def list_exchange_rates(
    session: AsyncSession,
    program: Program,
    *,
    limit: int,
    cursor: str | None,
    currency: str | None = None,
) -> ExchangeRatePage:
    query = select(ExchangeRateRecord).where(ExchangeRateRecord.program_id == program.id)
    if currency is not None:
        query = query.where(ExchangeRateRecord.currency == currency)
    after = decode_cursor(cursor)
    if after is not None:
        query = query.where(ExchangeRateRecord.id < after)
    rows = list(
        await session.scalars(query.order_by(ExchangeRateRecord.id.desc()).limit(limit + 1))
    )
    page = page_of([view_of(row, program) for row in rows], [row.id for row in rows], limit)
    return ExchangeRatePage(items=page.items, next_cursor=page.next_cursor)


_IN_FORCE = """
SELECT rate, effective_on FROM finance_exchange_rates
WHERE program_id = $1 AND currency = $2 AND effective_on <= $3
ORDER BY effective_on DESC LIMIT 1
"""


async def rate_in_force(
    connection: Connection, program_id: uuid.UUID, currency: str, on: date
) -> RateInForce:
    """The rate of ``currency`` in force on ``on``; ``ExchangeRateMissing``
    when none is."""
    row = await connection.fetchrow(_IN_FORCE, program_id, currency, on)
    if row is None:
        raise ExchangeRateMissing(f"no exchange rate for {currency} on {on.isoformat()}")
    return RateInForce(currency, row["rate"], row["effective_on"])
