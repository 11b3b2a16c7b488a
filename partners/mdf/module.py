"""What market development funds bring to the platform (``api.modules``
lists it): the operator's scopes and the meaning of its constraints. Its
webhook topics are the partners module's (``partners.events``), which
hands every partner event to the webhooks."""

from __future__ import annotations

from core.modules import Module
from partners.mdf import models

MDF = Module(
    name="mdf",
    scopes={
        "mdf:read": "Read market development funds, their activities, claims and reconciliation.",
        "mdf:write": "Allocate market development funds; approve and refuse their activities"
        " and claims (an approved claim is paid through the ledger).",
    },
    constraints=models.CONSTRAINTS,
)
