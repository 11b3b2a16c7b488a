"""Market development funds: funds a funder (the operator or a brand
partner) allocates to a partner for a period, the activities requested
against them and the claims paid through the ledger
(``partners.mdf.models``). The CHECK constraints hold the funds' figures:
a fund is never overdrawn, whatever the race.

Revision ID: 0034_market_development_funds
Revises: 0033_joint_campaigns
Create Date: 2026-12-03
"""

from collections.abc import Sequence

from alembic import op

revision: str = "0034_market_development_funds"
down_revision: str | None = "0033_joint_campaigns"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

_AUDIT = """
        sa_orm_sentinel INTEGER,
        created_at TIMESTAMP WITH TIME ZONE NOT NULL DEFAULT now(),
        updated_at TIMESTAMP WITH TIME ZONE NOT NULL DEFAULT now(),"""

STATEMENTS = [
    f"""CREATE TABLE mdf_funds (
        id UUID NOT NULL,
        program_id UUID NOT NULL,
        partner_id UUID NOT NULL,
        funder_partner_id UUID,
        reference VARCHAR(200) NOT NULL,
        name VARCHAR(200) NOT NULL,
        period_start DATE NOT NULL,
        period_end DATE NOT NULL,
        claims_until DATE NOT NULL,
        unit VARCHAR(6) NOT NULL CHECK (unit IN ('points', 'money')),
        currency VARCHAR(3) CHECK (currency ~ '^[A-Z]{{3}}$'),
        ledger_id BIGINT NOT NULL,
        amount BIGINT NOT NULL CHECK (amount > 0),
        committed BIGINT NOT NULL,
        claimed BIGINT NOT NULL,
        paid BIGINT NOT NULL,
        created_by VARCHAR(200) NOT NULL,{_AUDIT}
        CONSTRAINT pk_mdf_funds PRIMARY KEY (id),
        CONSTRAINT uq_mdf_funds_program_id UNIQUE (program_id, reference),
        CONSTRAINT fk_mdf_funds_program_id_programs FOREIGN KEY (program_id)
            REFERENCES programs (id),
        CONSTRAINT fk_mdf_funds_partner_id_partners FOREIGN KEY (partner_id)
            REFERENCES partners (id),
        CONSTRAINT fk_mdf_funds_funder_partner_id_partners FOREIGN KEY (funder_partner_id)
            REFERENCES partners (id),
        CONSTRAINT ck_mdf_funds_period CHECK (period_start <= period_end
            AND period_end <= claims_until),
        CONSTRAINT ck_mdf_funds_currency CHECK ((unit = 'money') = (currency IS NOT NULL)),
        CONSTRAINT ck_mdf_funds_funder CHECK (funder_partner_id IS DISTINCT FROM partner_id),
        CONSTRAINT ck_mdf_funds_never_overdrawn CHECK (0 <= paid AND paid <= claimed
            AND claimed <= committed AND committed <= amount)
    )""",
    "CREATE INDEX ix_mdf_funds_partner_id ON mdf_funds (partner_id, id)",
    "CREATE INDEX ix_mdf_funds_funder_partner_id ON mdf_funds (funder_partner_id, id)",
    f"""CREATE TABLE mdf_activities (
        id UUID NOT NULL,
        program_id UUID NOT NULL,
        fund_id UUID NOT NULL,
        partner_id UUID NOT NULL,
        title VARCHAR(200) NOT NULL,
        plan VARCHAR(5000) NOT NULL,
        starts_on DATE NOT NULL,
        ends_on DATE NOT NULL,
        amount BIGINT NOT NULL CHECK (amount > 0),
        status VARCHAR(10) NOT NULL CHECK (status IN ('requested', 'approved', 'refused')),
        approved_amount BIGINT,
        claimed BIGINT NOT NULL,
        paid BIGINT NOT NULL,
        decided_by VARCHAR(200),
        decided_at TIMESTAMP WITH TIME ZONE,
        decision_note VARCHAR(1000),
        requested_by VARCHAR(200) NOT NULL,{_AUDIT}
        CONSTRAINT pk_mdf_activities PRIMARY KEY (id),
        CONSTRAINT fk_mdf_activities_program_id_programs FOREIGN KEY (program_id)
            REFERENCES programs (id),
        CONSTRAINT fk_mdf_activities_fund_id_mdf_funds FOREIGN KEY (fund_id)
            REFERENCES mdf_funds (id),
        CONSTRAINT fk_mdf_activities_partner_id_partners FOREIGN KEY (partner_id)
            REFERENCES partners (id),
        CONSTRAINT ck_mdf_activities_dates CHECK (starts_on <= ends_on),
        CONSTRAINT ck_mdf_activities_approved CHECK ((status = 'approved')
            = (approved_amount IS NOT NULL)),
        CONSTRAINT ck_mdf_activities_never_overclaimed CHECK (0 <= paid AND paid <= claimed
            AND claimed <= coalesce(approved_amount, 0) AND approved_amount <= amount)
    )""",
    "CREATE INDEX ix_mdf_activities_fund_id ON mdf_activities (fund_id, id)",
    "CREATE INDEX ix_mdf_activities_partner_id ON mdf_activities (partner_id, id)",
    f"""CREATE TABLE mdf_claims (
        id UUID NOT NULL,
        program_id UUID NOT NULL,
        fund_id UUID NOT NULL,
        activity_id UUID NOT NULL,
        partner_id UUID NOT NULL,
        amount BIGINT NOT NULL CHECK (amount > 0),
        description VARCHAR(5000) NOT NULL,
        proof JSONB NOT NULL,
        status VARCHAR(10) NOT NULL CHECK (status IN ('draft', 'submitted', 'paid', 'refused')),
        submitted_at TIMESTAMP WITH TIME ZONE,
        decided_by VARCHAR(200),
        decided_at TIMESTAMP WITH TIME ZONE,
        decision_note VARCHAR(1000),
        transfer_id UUID,{_AUDIT}
        CONSTRAINT pk_mdf_claims PRIMARY KEY (id),
        CONSTRAINT fk_mdf_claims_program_id_programs FOREIGN KEY (program_id)
            REFERENCES programs (id),
        CONSTRAINT fk_mdf_claims_fund_id_mdf_funds FOREIGN KEY (fund_id)
            REFERENCES mdf_funds (id),
        CONSTRAINT fk_mdf_claims_activity_id_mdf_activities FOREIGN KEY (activity_id)
            REFERENCES mdf_activities (id),
        CONSTRAINT fk_mdf_claims_partner_id_partners FOREIGN KEY (partner_id)
            REFERENCES partners (id),
        CONSTRAINT ck_mdf_claims_paid CHECK ((status = 'paid') = (transfer_id IS NOT NULL))
    )""",
    "CREATE INDEX ix_mdf_claims_activity_id ON mdf_claims (activity_id, id)",
    "CREATE INDEX ix_mdf_claims_partner_id ON mdf_claims (partner_id, id)",
]


def upgrade() -> None:
    for statement in STATEMENTS:
        op.execute(statement)


def downgrade() -> None:
    op.execute("DROP TABLE IF EXISTS mdf_claims, mdf_activities, mdf_funds")
