"""Saved segments (migration 0043): a program's named definitions of who
is in a segment, counted and exported as of any moment, and targetable by
joint campaigns."""

from __future__ import annotations

import uuid
from typing import Any

from advanced_alchemy.base import UUIDv7AuditBase
from sqlalchemy import Boolean, ForeignKey, String, UniqueConstraint
from sqlalchemy.dialects.postgresql import JSONB
from sqlalchemy.orm import Mapped, mapped_column

from core.constraints import taken


class SavedSegment(UUIDv7AuditBase):
    __tablename__ = "segments"
    __table_args__ = (UniqueConstraint("program_id", "name"),)

    program_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("programs.id"))
    name: Mapped[str] = mapped_column(String(100))
    description: Mapped[str | None] = mapped_column(String(500))
    #: ``partners.segments.definition.SegmentDefinition``, as JSON.
    definition: Mapped[dict[str, Any]] = mapped_column(JSONB)
    #: Whether partners may name it in the joint campaigns they propose.
    offered_to_partners: Mapped[bool] = mapped_column(Boolean)
    created_by: Mapped[str] = mapped_column(String(300))
    updated_by: Mapped[str] = mapped_column(String(300))


#: The name is looked up before it is written; two saves of one name at once
#: make the second a 409 on ``name``.
CONSTRAINTS = (
    taken("uq_segments_program_id", "name", "a segment with this name exists in the program"),
)
