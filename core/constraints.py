"""What a write that breaks a unique constraint means, by the constraint's name.

A unique violation is one of two things, and only its constraint can tell:

- a business field is taken (a SKU, a tier's code or rank): the same request
  can never succeed, so the caller must hear which field, and no "retry";
- a race on a key the use case looked up first (an order id, an idempotency
  key, an external id): two requests passed the look-up together and one
  lost; sent again, it finds the winner's row and answers it.

Each module declares the meaning of its own constraints
(``core.modules.Module.constraints``); the API maps a violation through them.
Where it is cheap, a use case checks first and raises ``AlreadyExists``
itself: the declarations are the net for what slips past (two requests at
once).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping

import msgspec

from core.errors import AlreadyExists, ConcurrentChange, DomainError


class Constraint(msgspec.Struct, frozen=True, kw_only=True):
    #: The constraint's (or unique index's) name in the schema.
    name: str
    #: What the caller is told.
    message: str
    #: The request field whose value is taken; None for a race.
    field: str | None = None
    #: Whether the same request, sent again, can succeed.
    retryable: bool = False

    def error(self) -> DomainError:
        if self.retryable:
            return ConcurrentChange(self.message)
        return AlreadyExists(self.message, field=self.field)


def taken(name: str, field: str, message: str) -> Constraint:
    """A unique business field: a second request with the value is refused."""
    return Constraint(name=name, field=field, message=message)


def race(name: str, what: str) -> Constraint:
    """A key the use case looks up before it writes: a violation is a lost
    race, and a retry answers the winner's outcome."""
    return Constraint(
        name=name,
        message=f"another request recorded the same {what} at the same moment; retrying is safe",
        retryable=True,
    )


def by_name(constraints: Iterable[Constraint]) -> dict[str, Constraint]:
    found: dict[str, Constraint] = {}
    for constraint in constraints:
        if constraint.name in found:
            raise ValueError(f"the constraint {constraint.name} is declared twice")
        found[constraint.name] = constraint
    return found


def violation(constraints: Mapping[str, Constraint], name: str | None) -> DomainError | None:
    """The domain error a violation of the constraint ``name`` means, or
    None for a constraint no module declares."""
    constraint = constraints.get(name) if name else None
    return constraint.error() if constraint is not None else None
