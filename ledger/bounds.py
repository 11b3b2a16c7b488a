"""The bounds of what stores each request field, declared once.

Every request struct of the API (the ledger's, the rewards', the API's own)
builds its fields from these types, so that the OpenAPI document shows the
bounds and nothing PostgreSQL would refuse reaches SQL: text without NUL
(PostgreSQL's text cannot hold it) and no longer than its column, integers
within their column's type, times with an offset in years both Python and
PostgreSQL can convert, flags within their known bits, and JSON documents of
bounded depth and size.

msgspec checks the ``Meta`` bounds when it decodes; what ``Meta`` cannot say
(a time's year, a JSON document's depth) the structs check in
``__post_init__`` with ``check_moment`` and ``check_json``, which msgspec
reports as a validation error of the field's struct.
"""

from __future__ import annotations

from collections.abc import Iterable
from datetime import datetime
from typing import Annotated, Any

import msgspec

#: Text that PostgreSQL can store: anything but NUL.
NO_NUL = r"^[^\x00]*$"

INTEGER_MAX = 2**31 - 1
BIGINT_MAX = 2**63 - 1


def integer_range(ge: int, le: int) -> msgspec.Meta:
    """An integer from ``ge`` to ``le``, and the same bounds written exactly in
    the OpenAPI document.

    Litestar writes ``Meta`` bounds through ``float()``, and ``float(2**63 - 1)``
    is 2**63, a value the bigint column refuses. Litestar copies the ``"extra"``
    entry of msgspec's ``extra_json_schema`` over the schema it built (as its
    ``schema_extra``), so the integers given there are the ones written (and a
    minimum of 0, which Litestar drops from an optional field, is kept).
    msgspec's own JSON Schema would show that entry as an unknown keyword; the
    project does not publish that schema.
    """
    return msgspec.Meta(ge=ge, le=le, extra_json_schema={"extra": {"minimum": ge, "maximum": le}})


# Integers, by the column type that stores them.
NonNegativeInteger = Annotated[int, integer_range(0, INTEGER_MAX)]
PositiveInteger = Annotated[int, integer_range(1, INTEGER_MAX)]
NonNegativeBigInt = Annotated[int, integer_range(0, BIGINT_MAX)]
PositiveBigInt = Annotated[int, integer_range(1, BIGINT_MAX)]

# Text, by the width of the column that stores it (VARCHAR(n), or text for
# which a width is chosen). Empty allowed unless a field says min_length.
Text32 = Annotated[str, msgspec.Meta(max_length=32, pattern=NO_NUL)]
Text50 = Annotated[str, msgspec.Meta(max_length=50, pattern=NO_NUL)]
Text100 = Annotated[str, msgspec.Meta(max_length=100, pattern=NO_NUL)]
Text200 = Annotated[str, msgspec.Meta(max_length=200, pattern=NO_NUL)]
Text320 = Annotated[str, msgspec.Meta(max_length=320, pattern=NO_NUL)]
Text500 = Annotated[str, msgspec.Meta(max_length=500, pattern=NO_NUL)]
NonEmpty = msgspec.Meta(min_length=1)
#: A caller's id of a thing (member, order, event, adjustment, return,
#: idempotency key): VARCHAR(200), at least one character.
ExternalId = Annotated[
    Text200,
    NonEmpty,
    msgspec.Meta(description="An id the caller chose, 1 to 200 characters without NUL."),
]

# Times. Python's datetime holds the years 1 to 9999 and PostgreSQL more; a
# time is stored in UTC, so a time in year 1 or 9999 can leave Python's range
# once its offset is applied (0001-01-01T00:00:00+14:00). One clear rule
# keeps well inside both: the year as written is from 1900 to 9998.
YEAR_MIN = 1900
YEAR_MAX = 9998
MOMENT_RULE = (
    "An ISO 8601 time with its offset (e.g. 2025-01-31T23:59:59Z; a time without one"
    f" is refused, it would be ambiguous), in the years {YEAR_MIN} to {YEAR_MAX}."
)
Moment = Annotated[datetime, msgspec.Meta(tz=True, description=MOMENT_RULE)]


def moment_fault(value: datetime) -> str | None:
    """Why ``value`` cannot be taken as a business time, or None."""
    if value.tzinfo is None:
        return "Expected a datetime with a time zone offset"
    return year_fault(value)


def year_fault(value: datetime) -> str | None:
    if not YEAR_MIN <= value.year <= YEAR_MAX:
        return f"Expected a datetime in the years {YEAR_MIN} to {YEAR_MAX}"
    return None


def check_moment(field: str, value: datetime | None) -> None:
    """Raise ValueError, naming ``field``, for a time in a year out of bounds
    (in a struct's ``__post_init__``, where msgspec reports it; the offset is
    required by ``Meta(tz=True)`` when decoding)."""
    if value is not None and (fault := year_fault(value)):
        raise ValueError(f"{field}: {fault}")


# Flags: integers whose known bits are described; any other bit is refused.
ACCOUNT_FLAGS_DOC = (
    "The account's flags, the sum of its bits (AccountFlags): 1 debits must not exceed"
    " credits (the account is never overdrawn: a wallet); 2 credits must not exceed debits"
    " (e.g. a member's debt); 0 for none. 1 and 2 together are refused"
    " (flags_are_mutually_exclusive)."
)
TRANSFER_FLAGS_DOC = (
    "The transfer's flags, the sum of its bits (TransferFlags): 1 linked (it succeeds or"
    " fails together with the next transfer of the batch; a chain ends at its first"
    " transfer without this bit); 2 pending (the amount is reserved until posted, voided"
    " or timed out); 4 post pending (posts the pending transfer named by pending_id, in"
    " full or in part); 8 void pending (voids the pending transfer named by pending_id,"
    " releasing its amount); 0 for none. E.g. 3: linked and pending."
)
AccountFlagBits = Annotated[int, integer_range(0, 3), msgspec.Meta(description=ACCOUNT_FLAGS_DOC)]
TransferFlagBits = Annotated[
    int, integer_range(0, 15), msgspec.Meta(description=TRANSFER_FLAGS_DOC)
]

# JSON documents stored as jsonb: keys and strings without NUL (jsonb refuses
# \u0000), a bounded depth and size, so a document neither fails its batch in
# SQL nor exhausts the server's recursion.
JSON_DEPTH_MAX = 16
JSON_SIZE_MAX = 16_384
JSON_RULE = (
    f"A JSON object nested at most {JSON_DEPTH_MAX} deep, at most {JSON_SIZE_MAX} bytes"
    " encoded, with no NUL character in its keys or strings."
)
Metadata = Annotated[dict[Text200, Any], msgspec.Meta(max_length=256, description=JSON_RULE)]


def json_fault(value: Any) -> str | None:
    """Why the JSON document ``value`` cannot be stored, or None."""
    # Iterative, so that a deep document cannot exhaust the recursion limit.
    pending: list[tuple[Any, int]] = [(value, 1)]
    while pending:
        node, depth = pending.pop()
        if isinstance(node, str):
            if "\x00" in node:
                return _NUL_IN_JSON
        elif isinstance(node, _CONTAINERS):
            if depth > JSON_DEPTH_MAX:
                return f"Expected a document nested at most {JSON_DEPTH_MAX} deep"
            items: Iterable[Any] = node
            if isinstance(node, dict):
                for key in node:
                    if isinstance(key, str) and "\x00" in key:
                        return _NUL_IN_JSON
                items = node.values()
            for item in items:
                if isinstance(item, str):
                    if "\x00" in item:
                        return _NUL_IN_JSON
                elif isinstance(item, _CONTAINERS):
                    pending.append((item, depth + 1))
    if len(msgspec.json.encode(value)) > JSON_SIZE_MAX:
        return f"Expected a document of at most {JSON_SIZE_MAX} bytes"
    return None


_CONTAINERS = (dict, list, tuple)
_NUL_IN_JSON = "Expected no NUL character in the document's keys and strings"


def check_json(field: str, value: Any) -> None:
    """Raise ValueError, naming ``field``, for a JSON document out of bounds."""
    if value is not None and (fault := json_fault(value)):
        raise ValueError(f"{field}: {fault}")
