"""Cursor pagination for lists of rows with time-ordered ids (UUIDv7).

A page is read by keyset (``id < cursor``, newest first): stable under
inserts, no offset scans. The cursor is opaque to clients; one that was not
handed out answers ``invalid-cursor`` (422), never a 500.
"""

from __future__ import annotations

import base64
import binascii
import uuid
from typing import Generic, TypeVar

import msgspec

from core.errors import DomainError

T = TypeVar("T")

#: Longest page a client may ask for.
PAGE_LIMIT_MAX = 200
#: The page size when the client names none.
PAGE_LIMIT_DEFAULT = 50
#: A cursor's length: 22 characters of base64url for 16 bytes.
CURSOR_LENGTH = 22


class InvalidPageCursor(DomainError):
    """The cursor is not one this API handed out."""

    type_slug = "invalid-cursor"


class Page(msgspec.Struct, Generic[T], kw_only=True, frozen=True):
    items: list[T]
    #: Send it back as ``cursor`` for the next (older) page; none on the last.
    next_cursor: str | None = None


def encode_cursor(last_id: uuid.UUID) -> str:
    return base64.urlsafe_b64encode(last_id.bytes).decode().rstrip("=")


def decode_cursor(cursor: str | None) -> uuid.UUID | None:
    """The id after which the page starts (None: the first page)."""
    if cursor is None:
        return None
    if len(cursor) != CURSOR_LENGTH:
        raise InvalidPageCursor("the cursor is not one this API handed out")
    try:
        return uuid.UUID(bytes=base64.urlsafe_b64decode(cursor + "=="))
    except (binascii.Error, ValueError):
        raise InvalidPageCursor("the cursor is not one this API handed out") from None


def page_of(items: list[T], ids: list[uuid.UUID], limit: int) -> Page[T]:
    """A page from up to ``limit + 1`` rows read newest first: the extra row
    only says that there is a next page."""
    if len(items) > limit:
        return Page(items=items[:limit], next_cursor=encode_cursor(ids[limit - 1]))
    return Page(items=items)
