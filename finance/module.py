"""What finance brings to the platform (``api.modules`` lists it): its
scopes, its jobs and the meaning of its constraints."""

from __future__ import annotations

from core.modules import Module

FINANCE = Module(
    name="finance",
    scopes={
        "finance:read": "Read point liabilities, roll-forwards, trial balances, revenue,"
        " journals, periods and reconciliations.",
        "finance:write": "Close and reopen periods, run reconciliations and revenue"
        " recognition, post corrections.",
        "analytics:read": "Read segments, member value, redemption curves, ROI and"
        " partner profitability; count and export segments.",
        "analytics:write": "Save and delete segments.",
    },
)
