"""``coalition rewards ...``: operations on a program's points from the
console. ``reinstate`` restores every lot that expired since a date (what
``POST /programs/{slug}/reinstatements`` does, ``rewards.reinstatement``).

Each prints one line of what it did on stdout; bad input (a date that is
not one, a time without an offset, a date in the future, an unknown
program) is one plain line on stderr and exit code 1, with nothing written.
"""

from __future__ import annotations

from datetime import UTC, date, datetime, time

import click
import msgspec
from sqlalchemy.ext.asyncio import AsyncSession

from api.cli_runtime import in_program, plain_errors
from core import calendar
from core.models import Program
from ledger import Ledger
from rewards.reinstatement import ReinstatementRequest, ReinstatementView, reinstate_expired


class BadMoment(ValueError):
    pass


@click.group("rewards")
def rewards_group() -> None:
    """Operations on a program's points: reinstating expired points."""


def _moment(option: str, text: str, zone: str) -> datetime:
    """A date (its midnight in the program's zone) or a date and time with
    an offset, as an instant."""
    try:
        return datetime.combine(date.fromisoformat(text), time.min, calendar.time_zone(zone))
    except ValueError:
        pass
    try:
        moment = datetime.fromisoformat(text)
    except ValueError:
        raise BadMoment(
            f"{option}: {text!r} is not a date (YYYY-MM-DD) nor an ISO 8601 time"
        ) from None
    if moment.utcoffset() is None:
        raise BadMoment(f"{option}: {text!r} has no offset (e.g. +00:00 or Z)")
    return moment


def _reference(since: datetime, lot_expires_at: datetime | None) -> str:
    """The default reference: the command's own fields, so that the same
    command again is the same reinstatement (a replay)."""
    until = "never" if lot_expires_at is None else lot_expires_at.astimezone(UTC).isoformat()
    return f"console:since:{since.astimezone(UTC).isoformat()}:until:{until}"


def _line(slug: str, view: ReinstatementView) -> str:
    until = "never" if view.lot_expires_at is None else view.lot_expires_at.isoformat()
    what = (
        f"restored {view.points} points of {view.expiries} expiries"
        f" expired since {view.since.isoformat()}; they expire {until}"
    )
    if view.replayed:
        return f"rewards: {slug} reinstatement {view.reference!r} was done before: {what}"
    return f"rewards: {slug} reinstatement {view.reference!r} done: {what}"


@rewards_group.command("reinstate")
@click.option("--program", required=True, help="The program's slug.")
@click.option(
    "--since",
    required=True,
    help="Restore what expired from then on: a date (midnight in the program's time zone)"
    " or an ISO 8601 time with an offset.",
)
@click.option(
    "--lot-expires-at",
    default=None,
    help="When the restored points expire again (a date or a time, in the future);"
    " left out: never.",
)
@click.option(
    "--reference",
    default=None,
    help="Its idempotency key; left out: derived from --since and --lot-expires-at, so"
    " the same command again changes nothing.",
)
def reinstate(program: str, since: str, lot_expires_at: str | None, reference: str | None) -> None:
    """Restore every point of the program that expired since a date (by its
    expiry policy, not by a sunset), once, audited."""
    from api.access import CONSOLE

    async def use(session: AsyncSession, ledger: Ledger, found: Program) -> ReinstatementView:
        start = _moment("--since", since, found.time_zone)
        until = (
            None
            if lot_expires_at is None
            else _moment("--lot-expires-at", lot_expires_at, found.time_zone)
        )
        # The same bounds as the API's body (reference, moments PostgreSQL holds).
        request = msgspec.convert(
            {
                "reference": _reference(start, until) if reference is None else reference,
                "since": start,
                "lot_expires_at": until,
            },
            ReinstatementRequest,
            strict=False,
        )
        return await reinstate_expired(
            session, ledger, found, request, datetime.now(UTC), principal=CONSOLE
        )

    with plain_errors():
        view = in_program(program, use, write=True)
    click.echo(_line(program, view))
