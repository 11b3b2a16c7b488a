"""Why a segment use case refuses, each with its kind and problem type."""

from __future__ import annotations

from core.errors import DomainError, ErrorKind


class InvalidSegment(DomainError):
    """A definition the program cannot hold: a custom filter that does not
    parse, a tier or partner it does not have, a minimum above its maximum."""

    type_slug = "invalid-segment"
    kind = ErrorKind.INVALID
