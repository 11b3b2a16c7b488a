"""Settlement: partners' statements and their lines, payments received
against them, and payouts made (``partners.statement_models``).

Revision ID: 0026_partner_statements
Revises: 0025_program_exchanges
Create Date: 2026-12-03

The lines of an issued statement are stored (it is immutable); its money
moves on a money ledger per program and currency (the ledger's own tables).
Statements read the transfers of a partner's accounts over the existing
(account, "timestamp") indexes of the ledger: no index is added.
"""

from collections.abc import Sequence

from alembic import op

revision: str = "0026_partner_statements"
down_revision: str | None = "0025_program_exchanges"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

AUDIT = """
    sa_orm_sentinel INTEGER,
    created_at TIMESTAMP WITH TIME ZONE NOT NULL DEFAULT now(),
    updated_at TIMESTAMP WITH TIME ZONE NOT NULL DEFAULT now()
"""


def _tenant(table: str) -> str:
    return f"""
        CONSTRAINT fk_{table}_program_id_programs
            FOREIGN KEY (program_id) REFERENCES programs (id),
        CONSTRAINT fk_{table}_partner_id_partners
            FOREIGN KEY (partner_id) REFERENCES partners (id)
    """


def upgrade() -> None:
    op.execute(f"""CREATE TABLE partner_statements (
        id UUID NOT NULL,
        program_id UUID NOT NULL,
        partner_id UUID NOT NULL,
        number INTEGER NOT NULL CHECK (number > 0),
        kind VARCHAR(8) NOT NULL CHECK (kind IN ('regular', 'final')),
        period_label VARCHAR(16) NOT NULL,
        period_unit VARCHAR(8) NOT NULL CHECK (period_unit IN ('week', 'month', 'quarter')),
        period_start TIMESTAMP WITH TIME ZONE NOT NULL,
        period_end TIMESTAMP WITH TIME ZONE NOT NULL,
        currency VARCHAR(3) NOT NULL CHECK (currency ~ '^[A-Z]{{3}}$'),
        contract_version INTEGER NOT NULL,
        scan_from BIGINT NOT NULL CHECK (scan_from >= 0),
        settled_up_to BIGINT NOT NULL CHECK (settled_up_to >= 0),
        cutoff BIGINT NOT NULL CHECK (cutoff >= settled_up_to),
        carry_from BIGINT,
        deferred_open_points BIGINT NOT NULL CHECK (deferred_open_points >= 0),
        prepaid_drawn_minor BIGINT NOT NULL CHECK (prepaid_drawn_minor >= 0),
        billed_minor BIGINT NOT NULL,
        reimbursed_minor BIGINT NOT NULL,
        total_minor BIGINT NOT NULL,
        direction VARCHAR(16) NOT NULL
            CHECK (direction IN ('partner_owes', 'program_owes', 'settled')),
        payment_status VARCHAR(10) NOT NULL
            CHECK (payment_status IN ('none', 'due', 'paid', 'failed')),
        paid_minor BIGINT NOT NULL DEFAULT 0 CHECK (paid_minor >= 0),
        money_ledger_id INTEGER NOT NULL,
        issued_at TIMESTAMP WITH TIME ZONE NOT NULL,
        {AUDIT},
        CONSTRAINT pk_partner_statements PRIMARY KEY (id),
        CONSTRAINT uq_partner_statements_partner_id UNIQUE (partner_id, number),
        CONSTRAINT uq_partner_statements_period UNIQUE (partner_id, kind, period_start),
        {_tenant("partner_statements")},
        CHECK (period_end > period_start)
    )""")
    op.execute(f"""CREATE TABLE partner_statement_lines (
        id UUID NOT NULL,
        statement_id UUID NOT NULL,
        line INTEGER NOT NULL CHECK (line > 0),
        kind VARCHAR(32) NOT NULL,
        late_period VARCHAR(16),
        contract_version INTEGER,
        points BIGINT NOT NULL,
        rate NUMERIC(24, 12),
        amount_minor BIGINT NOT NULL,
        tax_code VARCHAR(32),
        account_id UUID,
        debit BOOLEAN,
        code INTEGER,
        business_from TIMESTAMP WITH TIME ZONE,
        business_until TIMESTAMP WITH TIME ZONE,
        transfers BIGINT NOT NULL DEFAULT 0,
        {AUDIT},
        CONSTRAINT pk_partner_statement_lines PRIMARY KEY (id),
        CONSTRAINT uq_partner_statement_lines_statement_id UNIQUE (statement_id, line),
        CONSTRAINT fk_partner_statement_lines_statement_id_partner_statements
            FOREIGN KEY (statement_id) REFERENCES partner_statements (id)
    )""")
    op.execute(f"""CREATE TABLE partner_payouts (
        id UUID NOT NULL,
        program_id UUID NOT NULL,
        partner_id UUID NOT NULL,
        reference VARCHAR(200) NOT NULL,
        amount_minor BIGINT NOT NULL CHECK (amount_minor > 0),
        currency VARCHAR(3) NOT NULL,
        paid_at TIMESTAMP WITH TIME ZONE NOT NULL,
        transfer_id UUID NOT NULL,
        {AUDIT},
        CONSTRAINT pk_partner_payouts PRIMARY KEY (id),
        CONSTRAINT uq_partner_payouts_partner_id UNIQUE (partner_id, reference),
        {_tenant("partner_payouts")}
    )""")
    op.execute(f"""CREATE TABLE partner_statement_payments (
        id UUID NOT NULL,
        program_id UUID NOT NULL,
        partner_id UUID NOT NULL,
        statement_id UUID NOT NULL,
        reference VARCHAR(200) NOT NULL,
        amount_minor BIGINT NOT NULL CHECK (amount_minor > 0),
        status VARCHAR(10) NOT NULL CHECK (status IN ('pending', 'succeeded', 'failed')),
        transfer_id UUID,
        {AUDIT},
        CONSTRAINT pk_partner_statement_payments PRIMARY KEY (id),
        CONSTRAINT uq_partner_statement_payments_statement_id UNIQUE (statement_id, reference),
        CONSTRAINT fk_partner_statement_payments_statement_id_partner_statements
            FOREIGN KEY (statement_id) REFERENCES partner_statements (id),
        {_tenant("partner_statement_payments")}
    )""")


def downgrade() -> None:
    for table in (
        "partner_statement_payments",
        "partner_payouts",
        "partner_statement_lines",
        "partner_statements",
    ):
        op.execute(f"DROP TABLE {table}")
