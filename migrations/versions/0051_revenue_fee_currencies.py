"""Partner fees billed in another currency than the program's are deferred
(``finance.revenue.runs``): the allocation's amounts are in the program's
(functional) currency, converted at the operator's rate in force on the
statement's issue day (``finance.exchange_rates``), and the row keeps what
the conversion started from.

``revenue_allocations`` gains four nullable columns, all set or all NULL
(NULL: a sale, or a fee billed in the program's currency):
``original_currency`` and ``original_minor`` (the fee as billed),
``exchange_rate`` (as ``finance_exchange_rates.rate``) and
``exchange_rate_date`` (the day that rate took effect). Adding them rewrites
no row, so the immutability trigger does not fire.

Revision ID: 0051_revenue_fee_currencies
Revises: 0050_lots_settled_later
Create Date: 2026-12-08
"""

from collections.abc import Sequence

from alembic import op

revision: str = "0051_revenue_fee_currencies"
down_revision: str | None = "0050_lots_settled_later"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.execute("""ALTER TABLE revenue_allocations
        ADD COLUMN original_currency VARCHAR(3),
        ADD COLUMN original_minor BIGINT,
        ADD COLUMN exchange_rate NUMERIC(24, 12),
        ADD COLUMN exchange_rate_date DATE,
        ADD CONSTRAINT ck_revenue_allocations_conversion CHECK (
            (original_currency IS NULL) = (original_minor IS NULL)
            AND (original_currency IS NULL) = (exchange_rate IS NULL)
            AND (original_currency IS NULL) = (exchange_rate_date IS NULL)
            AND (original_currency IS NULL OR (
                source = 'partner_fee'
                AND original_currency ~ '^[A-Z]{3}$'
                AND original_currency <> currency
                AND exchange_rate > 0)))""")


def downgrade() -> None:
    op.execute("""ALTER TABLE revenue_allocations
        DROP CONSTRAINT ck_revenue_allocations_conversion,
        DROP COLUMN exchange_rate_date,
        DROP COLUMN exchange_rate,
        DROP COLUMN original_minor,
        DROP COLUMN original_currency""")
