"""The query parameters of a cursor-paged list, and what such a list may
answer: one definition for every list of the API (``core.pagination``
makes the pages)."""

from __future__ import annotations

from http import HTTPStatus
from typing import Annotated

from litestar.params import QueryParameter

from api.routes import OPERATOR_READ
from core.pagination import CURSOR_LENGTH, PAGE_LIMIT_MAX

#: An operator list's reads: any of them may meet a cursor it did not hand out (422).
LIST_READ = (*OPERATOR_READ, HTTPStatus.UNPROCESSABLE_ENTITY)

Limit = Annotated[
    int,
    QueryParameter(
        ge=1, le=PAGE_LIMIT_MAX, description=f"The most items to answer (1 to {PAGE_LIMIT_MAX})."
    ),
]
Cursor = Annotated[
    str | None,
    QueryParameter(
        min_length=CURSOR_LENGTH,
        max_length=CURSOR_LENGTH,
        pattern=rf"^[A-Za-z0-9_-]{{{CURSOR_LENGTH}}}$",
        description="The `next_cursor` of the previous page; left out: the first page.",
    ),
]
