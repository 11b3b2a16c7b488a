"""Refusals of overlap matching, each with its kind and a stable ``type``
slug (``core.errors``); the agreement's own refusals are in ``errors``."""

from core.errors import DomainError, ErrorKind, NotFound


class InvalidOverlapList(DomainError):
    """An upload that cannot be matched: an identifier that is not a digest
    (partner-hashed), a field the agreement does not share, too many
    segments, a record with a segment label too long."""

    type_slug = "invalid-overlap-list"
    kind = ErrorKind.INVALID


class InvalidOverlapRun(DomainError):
    """A match that cannot run: PSI asked for overlaps (it counts only), an
    unknown segment in the filter."""

    type_slug = "invalid-overlap-run"
    kind = ErrorKind.INVALID


class OverlapListMissing(DomainError):
    """One of the two partners has no list under the agreement's current key
    epoch (none yet, or only under an earlier key)."""

    type_slug = "overlap-list-missing"
    kind = ErrorKind.CONFLICT


class OverlapUploadNotFound(NotFound):
    """Not one of the caller's uploads: 404 ``not-found``, as an id that
    exists nowhere (the other party's upload is not revealed)."""


class OverlapRunNotFound(NotFound):
    """Not one of the caller's runs: 404 ``not-found``, as an id that exists
    nowhere."""


class OverlapQueryRefused(DomainError):
    """The difference-attack budget: a count query whose counted records
    differ from an earlier query's by fewer than the agreement's minimum
    group size (but not zero), or past the agreement's number of count
    queries. Its two answers would reveal a record."""

    type_slug = "overlap-query-refused"
    kind = ErrorKind.CONFLICT
