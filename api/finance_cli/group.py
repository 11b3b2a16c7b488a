"""The ``finance`` group itself, which the command modules beside it extend."""

from __future__ import annotations

import click


@click.group("finance")
def finance_group() -> None:
    """Point liabilities, revenue, period close and reconciliation, from the ledger."""
