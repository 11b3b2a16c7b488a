"""What an operator sends and reads of reconciliations: a run asked for,
runs and the differences they found, each with its drill-down."""

from __future__ import annotations

from datetime import date, datetime
from typing import Annotated, Any

import msgspec

from ledger.bounds import YEAR_MAX, YEAR_MIN

#: The longest window of daily aggregates one run compares with the transfers.
WINDOW_DAYS_MAX = 366
_DAY = (
    f"YYYY-MM-DD, an accounting day of the program's time zone, in the years {YEAR_MIN}"
    f" to {YEAR_MAX}"
)


def _check_day(name: str, day: date | None) -> None:
    if day is not None and not YEAR_MIN <= day.year <= YEAR_MAX:
        raise ValueError(f"{name}: Expected a date in the years {YEAR_MIN} to {YEAR_MAX}")


class ReconciliationRunRequest(
    msgspec.Struct, kw_only=True, frozen=True, forbid_unknown_fields=True
):
    """A reconciliation to run now. Every balance, statement, payment and
    lot is checked whatever the window; the window bounds only the daily
    aggregates compared with the transfers (the 31 days through today when
    left out)."""

    first_day: Annotated[
        date | None,
        msgspec.Meta(
            description=f"The window's first day, {_DAY}; 30 days before `last_day` when left out."
        ),
    ] = None
    last_day: Annotated[
        date | None,
        msgspec.Meta(description=f"The window's last day, {_DAY}; today when left out."),
    ] = None

    def __post_init__(self) -> None:
        _check_day("first_day", self.first_day)
        _check_day("last_day", self.last_day)
        if self.first_day and self.last_day:
            if self.last_day < self.first_day:
                raise ValueError("last_day: Expected a day on or after first_day")
            if (self.last_day - self.first_day).days >= WINDOW_DAYS_MAX:
                raise ValueError(f"last_day: Expected a window of at most {WINDOW_DAYS_MAX} days")


class ReconciliationCheckTally(msgspec.Struct, kw_only=True, frozen=True):
    checked: Annotated[
        int,
        msgspec.Meta(
            description="How many subjects the check compared (accounts, statements,"
            " payments, lot accounts, aggregate lines...)."
        ),
    ]
    differences: Annotated[int, msgspec.Meta(description="How many differences it found.")]


class ReconciliationDifferenceView(msgspec.Struct, kw_only=True, frozen=True):
    id: Annotated[str, msgspec.Meta(description="The difference's id.")]
    check: Annotated[
        str,
        msgspec.Meta(
            description="The check that found it: balances, ledger_invariants, statements,"
            " payments, funding_purchases, lots or daily_totals."
        ),
    ]
    subject: Annotated[
        str,
        msgspec.Meta(
            description="What was compared: `account:<id>`, `ledger:<id>`, `statement:<id>`,"
            " `statement-payment:<id>`, `collection:<id>`, `funding-purchase:<id>`,"
            " `daily-totals:<ledger>:<code>:<debit code>:<credit code>`."
        ),
    ]
    measure: Annotated[
        str,
        msgspec.Meta(
            description="Which figure of it: a balance column (`credits_posted`...), a"
            " statement's `total_minor`, `lines_total` or `line <n>`, `paid_minor`,"
            " `amount_minor`, `points`, `remaining`, an invariant's name..."
        ),
    ]
    expected: Annotated[
        int,
        msgspec.Meta(description="The figure derived from the ledger's transfers."),
    ]
    found: Annotated[
        int,
        msgspec.Meta(description="The figure kept beside them, which does not tie."),
    ]
    difference: Annotated[int, msgspec.Meta(description="`found` - `expected`.")]
    drill_down: Annotated[
        dict[str, Any],
        msgspec.Meta(
            description="Where to look: the records behind both figures (the account and"
            " every balance column's expected and found, a statement's lines...), the first"
            " transfer ids behind it (`transfers`, with `transfers_count` where there are"
            " more) and the query that lists them all (`transfers_query`)."
        ),
    ]


class ReconciliationRunView(msgspec.Struct, kw_only=True, frozen=True):
    id: Annotated[str, msgspec.Meta(description="The run's id.")]
    actor: Annotated[str, msgspec.Meta(description="Who ran it (a key, or the scheduled job).")]
    scheduled_for: Annotated[
        date | None,
        msgspec.Meta(description="The day a scheduled run is for; none for a run on demand."),
    ]
    first_day: Annotated[
        date, msgspec.Meta(description="The first day of the daily aggregates compared.")
    ]
    last_day: Annotated[
        date, msgspec.Meta(description="The last day of the daily aggregates compared.")
    ]
    ledgers: Annotated[
        list[int],
        msgspec.Meta(description="The ledgers read: the program's points and money ledgers."),
    ]
    checks: Annotated[
        dict[str, ReconciliationCheckTally],
        msgspec.Meta(description="Each check run, with what it compared and found."),
    ]
    differences: Annotated[int, msgspec.Meta(description="Differences found, all checks.")]
    started_at: Annotated[datetime, msgspec.Meta(description="When it read the ledgers.")]
    finished_at: Annotated[datetime, msgspec.Meta(description="When it was done.")]


class ReconciliationRunPage(msgspec.Struct, kw_only=True, frozen=True):
    items: Annotated[list[ReconciliationRunView], msgspec.Meta(description="Newest first.")]
    next_cursor: Annotated[
        str | None,
        msgspec.Meta(description="Send it back as `cursor` for the next page; none on the last."),
    ] = None


class ReconciliationRunDetail(msgspec.Struct, kw_only=True, frozen=True):
    run: Annotated[ReconciliationRunView, msgspec.Meta(description="The run.")]
    differences: Annotated[
        list[ReconciliationDifferenceView],
        msgspec.Meta(description="A page of its differences, in the order they were found."),
    ]
    next_cursor: Annotated[
        str | None,
        msgspec.Meta(
            description="Send it back as `cursor` for the next page of differences; none on"
            " the last."
        ),
    ] = None
