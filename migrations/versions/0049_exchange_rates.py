"""Exchange rates kept by the operator (``finance.exchange_rate_models``).

One row per program, currency and effective date: the rate of one unit of
the currency in the program's (functional) currency, in force from that
date until a later row's. Rows are never changed nor deleted (a trigger
refuses it): a correction is a new row from a later date, so a journal
exported again gives the same bytes.

Revision ID: 0049_exchange_rates
Revises: 0048_lot_operations_more
Create Date: 2026-12-07
"""

from collections.abc import Sequence

from alembic import op

revision: str = "0049_exchange_rates"
down_revision: str | None = "0048_lot_operations_more"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.execute("""CREATE TABLE finance_exchange_rates (
        id UUID NOT NULL,
        program_id UUID NOT NULL,
        currency VARCHAR(3) NOT NULL CHECK (currency ~ '^[A-Z]{3}$'),
        rate NUMERIC(24, 12) NOT NULL CHECK (rate > 0),
        effective_on DATE NOT NULL,
        recorded_by VARCHAR(200) NOT NULL,
        sa_orm_sentinel INTEGER,
        created_at TIMESTAMP WITH TIME ZONE NOT NULL DEFAULT now(),
        updated_at TIMESTAMP WITH TIME ZONE NOT NULL DEFAULT now(),
        CONSTRAINT pk_finance_exchange_rates PRIMARY KEY (id),
        CONSTRAINT fk_finance_exchange_rates_program_id_programs
            FOREIGN KEY (program_id) REFERENCES programs (id),
        CONSTRAINT uq_finance_exchange_rates_program_id
            UNIQUE (program_id, currency, effective_on)
    )""")
    op.execute("""CREATE FUNCTION finance_exchange_rates_immutable() RETURNS trigger
        LANGUAGE plpgsql AS $$
        BEGIN
            RAISE EXCEPTION 'exchange rates are never changed: add a rate from a later date'
                USING ERRCODE = 'integrity_constraint_violation';
        END $$""")
    op.execute(
        "CREATE TRIGGER finance_exchange_rates_immutable"
        " BEFORE UPDATE OR DELETE ON finance_exchange_rates"
        " FOR EACH ROW EXECUTE FUNCTION finance_exchange_rates_immutable()"
    )


def downgrade() -> None:
    op.execute("DROP TABLE finance_exchange_rates")
    op.execute("DROP FUNCTION finance_exchange_rates_immutable()")
