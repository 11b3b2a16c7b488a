"""Reconciliation runs and the differences they found
(``finance.reconciliation_models``).

A run is one program's reconciliation at one instant: its points ledger and
money ledgers re-derived from their transfers, its statements, payments,
lots and daily aggregates tied to them. Every difference it found is a row
of its own, with the figures on both sides and a drill-down; nothing is
updated after (a later run that no longer finds a difference lists none).

Revision ID: 0042_reconciliation
Revises: 0041_revenue_deferral
Create Date: 2026-12-03
"""

from collections.abc import Sequence

from alembic import op

revision: str = "0042_reconciliation"
down_revision: str | None = "0041_revenue_deferral"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

AUDIT = """
    sa_orm_sentinel INTEGER,
    created_at TIMESTAMP WITH TIME ZONE NOT NULL DEFAULT now(),
    updated_at TIMESTAMP WITH TIME ZONE NOT NULL DEFAULT now()
"""


def upgrade() -> None:
    op.execute(f"""CREATE TABLE reconciliation_runs (
        id UUID NOT NULL,
        program_id UUID NOT NULL,
        actor VARCHAR(200) NOT NULL,
        scheduled_for DATE,
        first_day DATE NOT NULL,
        last_day DATE NOT NULL,
        ledgers INTEGER[] NOT NULL,
        checks JSONB NOT NULL CHECK (jsonb_typeof(checks) = 'object'),
        differences INTEGER NOT NULL CHECK (differences >= 0),
        started_at TIMESTAMP WITH TIME ZONE NOT NULL,
        finished_at TIMESTAMP WITH TIME ZONE NOT NULL,
        {AUDIT},
        CONSTRAINT pk_reconciliation_runs PRIMARY KEY (id),
        CONSTRAINT fk_reconciliation_runs_program_id_programs
            FOREIGN KEY (program_id) REFERENCES programs (id),
        CONSTRAINT ck_reconciliation_runs_window CHECK (first_day <= last_day)
    )""")
    op.execute(
        "CREATE INDEX ix_reconciliation_runs_program_id ON reconciliation_runs (program_id, id)"
    )
    op.execute(f"""CREATE TABLE reconciliation_differences (
        id UUID NOT NULL,
        run_id UUID NOT NULL,
        program_id UUID NOT NULL,
        "check" VARCHAR(32) NOT NULL,
        subject VARCHAR(200) NOT NULL,
        measure VARCHAR(64) NOT NULL,
        expected NUMERIC(21, 0) NOT NULL,
        found NUMERIC(21, 0) NOT NULL,
        difference NUMERIC(21, 0) NOT NULL,
        drill_down JSONB NOT NULL CHECK (jsonb_typeof(drill_down) = 'object'),
        {AUDIT},
        CONSTRAINT pk_reconciliation_differences PRIMARY KEY (id),
        CONSTRAINT fk_reconciliation_differences_run_id_reconciliation_runs
            FOREIGN KEY (run_id) REFERENCES reconciliation_runs (id),
        CONSTRAINT fk_reconciliation_differences_program_id_programs
            FOREIGN KEY (program_id) REFERENCES programs (id),
        CONSTRAINT ck_reconciliation_differences_difference
            CHECK (difference = found - expected)
    )""")
    op.execute(
        "CREATE INDEX ix_reconciliation_differences_run_id"
        " ON reconciliation_differences (run_id, id)"
    )


def downgrade() -> None:
    op.execute("DROP TABLE reconciliation_differences")
    op.execute("DROP TABLE reconciliation_runs")
