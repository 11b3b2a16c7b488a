"""The domain errors' base: each kind of failure says what it is, so that a
new module adds errors without editing a central map.

The API turns a ``DomainError`` into an RFC 9457 problem from its ``kind``
(the status) and its ``type_slug`` (the problem type); the CLI prints its
message on one line. Nothing here knows about HTTP.
"""

from __future__ import annotations

import enum
from typing import ClassVar


class ErrorKind(enum.Enum):
    """What went wrong, as a caller must understand it."""

    #: Well-formed, but refused by the domain's rules (422).
    INVALID = "invalid"
    #: What the request names does not exist, or is not the caller's (404).
    NOT_FOUND = "not-found"
    #: The request conflicts with the records' state (409).
    CONFLICT = "conflict"
    #: The principal may not do this (403).
    FORBIDDEN = "forbidden"
    #: More than one call accepts (413).
    TOO_LARGE = "too-large"
    #: A part the use case needs is down; the same request may succeed later (503).
    UNAVAILABLE = "unavailable"


class DomainError(Exception):
    """A use case's refusal. Subclasses set ``type_slug`` (one slug per kind
    of failure, stable: clients branch on it) and ``kind``; ``retryable``
    says whether the same request can succeed later unchanged."""

    type_slug: ClassVar[str] = "domain-error"
    kind: ClassVar[ErrorKind] = ErrorKind.INVALID
    retryable: ClassVar[bool] = False


class NotFound(DomainError):
    type_slug = "not-found"
    kind = ErrorKind.NOT_FOUND


class Forbidden(DomainError):
    type_slug = "forbidden"
    kind = ErrorKind.FORBIDDEN


class Conflict(DomainError):
    """A business key (order, return, event, adjustment id) was recorded
    with other fields."""

    type_slug = "idempotency-conflict"
    kind = ErrorKind.CONFLICT


class IdempotencyKeyReused(Conflict):
    """The Idempotency-Key was used for another request."""

    type_slug = "idempotency-key-reused"


class AlreadyExists(DomainError):
    """A unique business field (a SKU, a tier code) is taken: retrying the
    same request cannot succeed."""

    type_slug = "already-exists"
    kind = ErrorKind.CONFLICT

    def __init__(self, message: str, *, field: str | None = None) -> None:
        super().__init__(message)
        self.field = field


class MemberNotActive(DomainError):
    """The member is frozen or closed: they neither earn nor spend."""

    type_slug = "member-not-active"
    kind = ErrorKind.CONFLICT


class ConcurrentChange(DomainError):
    """Another request changed the same record at the same moment (a lost
    race on a key looked up first): the same request, sent again, answers
    the winner's outcome."""

    type_slug = "concurrent-change"
    kind = ErrorKind.CONFLICT
    retryable = True
