"""Typed ledger errors, each with a stable ``type`` slug for API problems."""

from __future__ import annotations

import re

import asyncpg
import asyncpg.exceptions._base


class LedgerError(Exception):
    type_slug = "ledger-error"


class LedgerUnavailable(LedgerError):
    """The database could not confirm the batch: it was not applied, or its
    outcome is unknown. Retrying with the same transfer ids is always safe."""

    type_slug = "ledger-unavailable"


class BatchTooLarge(LedgerError):
    type_slug = "batch-too-large"


class InvalidCursor(LedgerError):
    type_slug = "invalid-cursor"


class PeriodClosed(LedgerError):
    """The ledger refused a transfer whose business time falls in a closed
    period (the result ``business_time_in_closed_period``): post it in the
    open period instead, as a correction that names what it corrects."""

    type_slug = "period-closed"


class InvalidTransfer(LedgerError):
    """The database refused a request's data (text it cannot hold, a number
    or a date out of its range). Permanent: the same request fails the same
    way on every retry; the other requests of its batch are not affected."""

    type_slug = "invalid-transfer"


#: Failures of the connection to the database rather than of any request:
#: the outcome of a write is unknown, and retrying later is the answer.
UNREACHABLE: tuple[type[Exception], ...] = (
    OSError,
    TimeoutError,
    asyncpg.PostgresConnectionError,
    asyncpg.CannotConnectNowError,
    asyncpg.AdminShutdownError,
    asyncpg.CrashShutdownError,
    asyncpg.InterfaceError,
    # The server has no connection slot left ("too many clients"): nothing
    # about the request, and a retry once others have closed succeeds.
    asyncpg.TooManyConnectionsError,
)

#: Errors that belong to the data of a request: a value the database (or the
#: driver encoding it) cannot take, a check it fails, JSON nested too deep.
_INPUT_FAULTS: tuple[type[BaseException], ...] = (
    asyncpg.DataError,
    asyncpg.exceptions._base.DataError,
    asyncpg.IntegrityConstraintViolationError,
    asyncpg.ProgramLimitExceededError,
    ValueError,
    TypeError,
    OverflowError,
    RecursionError,
)


def is_unreachable(error: BaseException) -> bool:
    """True if ``error`` says the database could not be reached or did not
    answer, rather than anything about the request."""
    # The driver's own DataError (a value it cannot encode) is also an
    # InterfaceError: it is about the data.
    return isinstance(error, UNREACHABLE) and not isinstance(
        error, asyncpg.exceptions._base.DataError
    )


def is_input_fault(error: BaseException) -> bool:
    """True if ``error`` is due to a request's data, not to the database
    being unreachable: retrying the same data would fail the same way."""
    return isinstance(error, _INPUT_FAULTS) and not is_unreachable(error)


_DRIVER_ARGUMENT = re.compile(r"^invalid input for query argument \$(\d+): .*\((.+)\)$")


def refusal(error: BaseException) -> tuple[int | None, str]:
    """Why the database or its driver refused a value: the (1-based) query
    argument when the driver names it, and the reason, without the value
    (the driver's message quotes it, a whole column for an array)."""
    message = str(error).splitlines()[0] if str(error) else type(error).__name__
    found = _DRIVER_ARGUMENT.match(message)
    if found:
        return int(found.group(1)), found.group(2)
    return None, message[:200]
