"""``coalition finance ...``: the finance team's commands (liability,
roll-forward, trial balance, period close, journal export, reconciliation,
segments). Each part of finance keeps its commands in a module of its own
here, registered on ``finance_group``."""

from __future__ import annotations

from api.finance_cli import (  # noqa: F401
    analytics,
    exchange_rates,
    liability,
    periods,
    reconciliation,
    revenue,
)
from api.finance_cli.group import finance_group

__all__ = ["finance_group"]
