"""The ledger's public read of balances: the view ``ledger_account_balances``.

Other packages read balances through ``ledger/`` only: the ``Ledger``'s
methods, or this view when a read must join their own rows to balances in
one round trip (the member balance). The view states the derived balances
(``spendable``, ``pending``, ``debit_balance``) once, in
``ledger/sql/ledger_account_balances.sql``.

Revision ID: 0017_ledger_account_balances
Revises: 0016_outbox
Create Date: 2026-12-02
"""

from collections.abc import Sequence

from alembic import op

from migrations.ledger_functions import ledger_function

revision: str = "0017_ledger_account_balances"
down_revision: str | None = "0016_outbox"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.execute(
        ledger_function(
            "ledger_account_balances.sql",
            "ae0e88748c769a553cb5d3fd9efcff8f487f68061364343ba78eec0a4bb4c833",
        )
    )


def downgrade() -> None:
    op.execute("DROP VIEW ledger_account_balances")
