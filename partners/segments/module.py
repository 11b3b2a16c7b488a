"""What segments bring to the platform (``api.modules`` lists it): their
scopes and the meaning of their constraints."""

from __future__ import annotations

from core.modules import Module
from partners.segments import models

SEGMENTS = Module(
    name="segments",
    scopes={
        "segments:read": "Read the program's saved segments; count and export their members.",
        "segments:write": "Save, change and delete the program's segments.",
    },
    constraints=models.CONSTRAINTS,
)
