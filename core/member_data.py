"""What modules other than rewards keep about a member, for the member's
data export and erasure (``rewards.privacy``).

A module that stores a member's data declares a ``MemberData`` on its
``core.modules.Module``; the API hands the installation's list to the
export and erasure use cases, so a new module's data is exported and
erased without rewards knowing the module (it may not import it).
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

from sqlalchemy.ext.asyncio import AsyncSession

from core.models import Member

#: A module's records of one member, by kind (``{"links": [...]}``).
Records = dict[str, list[dict[str, Any]]]


@dataclass(frozen=True, kw_only=True)
class MemberData:
    #: The module's name: the key of its records in the export.
    name: str
    #: Everything the module keeps of the member, as JSON-ready rows.
    export: Callable[[AsyncSession, Member], Awaitable[Records]]
    #: Removes what of it is personal, in the erasure's transaction (which
    #: holds the member's lock). Idempotent: run again, it finds nothing.
    erase: Callable[[AsyncSession, Member], Awaitable[None]]
