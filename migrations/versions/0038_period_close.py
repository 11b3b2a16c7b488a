"""Period close: the ledger refuses a transfer whose business time falls in a closed period.

``ledgers.closed_through``: the instant through which a ledger is closed
(NULL: nothing is). ``ledger_create_transfers`` refuses every transfer
whose business time (``coalesce(effective_at, now)``) is at or before it,
with the new result ``business_time_in_closed_period`` (31, appended), on
the lone-transfer path and in batches, posts and voids by their own
business time. ``finance_periods``: the months of each program that were
closed, by whom and when, and reopened, by whom, when and why
(``finance.models``).

Revision ID: 0038_period_close
Revises: 0037_ledger_lots
Create Date: 2026-12-03
"""

from collections.abc import Sequence

from alembic import op

from migrations.ledger_functions import ledger_function

revision: str = "0038_period_close"
down_revision: str | None = "0037_ledger_lots"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.execute("ALTER TABLE ledgers ADD COLUMN closed_through timestamptz")
    op.execute("""CREATE TABLE finance_periods (
        id UUID NOT NULL,
        program_id UUID NOT NULL,
        month DATE NOT NULL CHECK (extract(day FROM month) = 1),
        status VARCHAR(8) NOT NULL CHECK (status IN ('closed', 'open')),
        closed_at TIMESTAMP WITH TIME ZONE NOT NULL,
        closed_by VARCHAR(200) NOT NULL,
        reopened_at TIMESTAMP WITH TIME ZONE,
        reopened_by VARCHAR(200),
        reopen_reason VARCHAR(500),
        sa_orm_sentinel INTEGER,
        created_at TIMESTAMP WITH TIME ZONE NOT NULL DEFAULT now(),
        updated_at TIMESTAMP WITH TIME ZONE NOT NULL DEFAULT now(),
        CONSTRAINT pk_finance_periods PRIMARY KEY (id),
        CONSTRAINT uq_finance_periods_program_id UNIQUE (program_id, month),
        CONSTRAINT fk_finance_periods_program_id_programs
            FOREIGN KEY (program_id) REFERENCES programs (id),
        CONSTRAINT ck_finance_periods_reopened
            CHECK (status = 'closed' OR reopened_at IS NOT NULL)
    )""")
    op.execute(
        ledger_function(
            "history/0038_period_close/ledger_create_transfers.sql",
            "1a7df4c4b6a4dd1ff05ab21690505885f20e072a19837739ac3802a667656d41",
        )
    )


def downgrade() -> None:
    op.execute(
        ledger_function(
            "history/0015_named_ledger_results/ledger_create_transfers.sql",
            "c7d14cd8d2c7fb628d0b52745899e4c0d3c3fdea32dd8b236a6be87a9a5e3cc4",
        )
    )
    op.execute("DROP TABLE finance_periods")
    op.execute("ALTER TABLE ledgers DROP COLUMN closed_through")
