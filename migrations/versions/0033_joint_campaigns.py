"""Joint campaigns: the campaign, its participants (shares, approvals,
budget accounts), its stores, the segment drawn at its start with its
holdout, and the bonuses it gave (``partners.campaigns.models``).

Revision ID: 0033_joint_campaigns
Revises: 0032_leads
Create Date: 2026-12-03
"""

from collections.abc import Sequence

from alembic import op

revision: str = "0033_joint_campaigns"
down_revision: str | None = "0032_leads"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

_AUDIT = """
        sa_orm_sentinel INTEGER,
        created_at TIMESTAMP WITH TIME ZONE NOT NULL DEFAULT now(),
        updated_at TIMESTAMP WITH TIME ZONE NOT NULL DEFAULT now(),"""


def upgrade() -> None:
    op.execute(f"""CREATE TABLE campaigns (
        id UUID NOT NULL,
        program_id UUID NOT NULL,
        reference VARCHAR(200) NOT NULL,
        name VARCHAR(200) NOT NULL,
        proposed_by_partner_id UUID,
        proposed_by VARCHAR(300) NOT NULL,
        starts_at TIMESTAMP WITH TIME ZONE NOT NULL,
        ends_at TIMESTAMP WITH TIME ZONE NOT NULL,
        status VARCHAR(10) NOT NULL CHECK (status IN
            ('proposed', 'approved', 'running', 'unfunded', 'stopped', 'ended')),
        segment JSONB NOT NULL,
        rules JSONB NOT NULL,
        budget_points BIGINT NOT NULL CHECK (budget_points > 0),
        holdout_bp INTEGER NOT NULL CHECK (holdout_bp BETWEEN 0 AND 5000),
        segment_size INTEGER,
        holdout_size INTEGER,
        started_at TIMESTAMP WITH TIME ZONE,
        closed_at TIMESTAMP WITH TIME ZONE,
        stopped_by VARCHAR(300),
        released_at TIMESTAMP WITH TIME ZONE,
        failure VARCHAR(500),{_AUDIT}
        CONSTRAINT pk_campaigns PRIMARY KEY (id),
        CONSTRAINT uq_campaigns_program_id UNIQUE (program_id, reference),
        CONSTRAINT fk_campaigns_program_id_programs
            FOREIGN KEY (program_id) REFERENCES programs (id),
        CONSTRAINT fk_campaigns_proposed_by_partner_id_partners
            FOREIGN KEY (proposed_by_partner_id) REFERENCES partners (id),
        CONSTRAINT ck_campaigns_window CHECK (ends_at > starts_at)
    )""")
    op.execute("CREATE INDEX ix_campaigns_status_starts_at ON campaigns (status, starts_at)")
    op.execute(f"""CREATE TABLE campaign_participants (
        id UUID NOT NULL,
        campaign_id UUID NOT NULL,
        partner_id UUID NOT NULL,
        position INTEGER NOT NULL,
        share_bp INTEGER NOT NULL CHECK (share_bp BETWEEN 1 AND 10000),
        budget_points BIGINT NOT NULL CHECK (budget_points >= 0),
        funding_account_id UUID,
        budget_account_id UUID NOT NULL,
        approved_at TIMESTAMP WITH TIME ZONE,
        approved_by VARCHAR(300),{_AUDIT}
        CONSTRAINT pk_campaign_participants PRIMARY KEY (id),
        CONSTRAINT uq_campaign_participants_campaign_id UNIQUE (campaign_id, partner_id),
        CONSTRAINT fk_campaign_participants_campaign_id_campaigns
            FOREIGN KEY (campaign_id) REFERENCES campaigns (id),
        CONSTRAINT fk_campaign_participants_partner_id_partners
            FOREIGN KEY (partner_id) REFERENCES partners (id)
    )""")
    op.execute(
        "CREATE INDEX ix_campaign_participants_partner_id ON campaign_participants (partner_id)"
    )
    op.execute(f"""CREATE TABLE campaign_stores (
        id UUID NOT NULL,
        campaign_id UUID NOT NULL,
        company_id UUID NOT NULL,
        participant_id UUID NOT NULL,{_AUDIT}
        CONSTRAINT pk_campaign_stores PRIMARY KEY (id),
        CONSTRAINT uq_campaign_stores_campaign_id UNIQUE (campaign_id, company_id),
        CONSTRAINT fk_campaign_stores_campaign_id_campaigns
            FOREIGN KEY (campaign_id) REFERENCES campaigns (id),
        CONSTRAINT fk_campaign_stores_company_id_partners
            FOREIGN KEY (company_id) REFERENCES partners (id),
        CONSTRAINT fk_campaign_stores_participant_id_partners
            FOREIGN KEY (participant_id) REFERENCES partners (id)
    )""")
    op.execute("CREATE INDEX ix_campaign_stores_company_id ON campaign_stores (company_id)")
    op.execute(f"""CREATE TABLE campaign_members (
        id UUID NOT NULL,
        campaign_id UUID NOT NULL,
        member_id UUID NOT NULL,
        holdout BOOLEAN NOT NULL,{_AUDIT}
        CONSTRAINT pk_campaign_members PRIMARY KEY (id),
        CONSTRAINT uq_campaign_members_campaign_id UNIQUE (campaign_id, member_id),
        CONSTRAINT fk_campaign_members_campaign_id_campaigns
            FOREIGN KEY (campaign_id) REFERENCES campaigns (id),
        CONSTRAINT fk_campaign_members_member_id_members
            FOREIGN KEY (member_id) REFERENCES members (id)
    )""")
    op.execute(f"""CREATE TABLE campaign_bonuses (
        id UUID NOT NULL,
        campaign_id UUID NOT NULL,
        issuance_id UUID NOT NULL,
        member_id UUID NOT NULL,
        company_id UUID NOT NULL,
        points BIGINT NOT NULL CHECK (points > 0),
        legs JSONB NOT NULL,
        refused VARCHAR(50),{_AUDIT}
        CONSTRAINT pk_campaign_bonuses PRIMARY KEY (id),
        CONSTRAINT uq_campaign_bonuses_campaign_id UNIQUE (campaign_id, issuance_id),
        CONSTRAINT fk_campaign_bonuses_campaign_id_campaigns
            FOREIGN KEY (campaign_id) REFERENCES campaigns (id),
        CONSTRAINT fk_campaign_bonuses_issuance_id_partner_issuances
            FOREIGN KEY (issuance_id) REFERENCES partner_issuances (id),
        CONSTRAINT fk_campaign_bonuses_member_id_members
            FOREIGN KEY (member_id) REFERENCES members (id),
        CONSTRAINT fk_campaign_bonuses_company_id_partners
            FOREIGN KEY (company_id) REFERENCES partners (id)
    )""")
    op.execute(
        "CREATE INDEX ix_campaign_bonuses_campaign_member ON campaign_bonuses"
        " (campaign_id, member_id)"
    )


def downgrade() -> None:
    for table in (
        "campaign_bonuses",
        "campaign_members",
        "campaign_stores",
        "campaign_participants",
        "campaigns",
    ):
        op.execute(f"DROP TABLE {table}")
