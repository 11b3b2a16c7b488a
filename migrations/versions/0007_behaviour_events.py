"""Behaviour events (a gym visit, a survey, an e-statement sign-up) and the
budgets of their rules.

Revision ID: 0007_behaviour_events
Revises: 0006_tiers
Create Date: 2026-11-23
"""

from collections.abc import Sequence

from alembic import op

revision: str = "0007_behaviour_events"
down_revision: str | None = "0006_tiers"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

STATEMENTS = [
    """CREATE TABLE behaviour_events (
        id UUID PRIMARY KEY,
        program_id UUID NOT NULL REFERENCES programs (id),
        member_id UUID NOT NULL REFERENCES members (id),
        -- The operator's id of the event: its idempotency key.
        event_id VARCHAR(200) NOT NULL,
        event VARCHAR(100) NOT NULL,
        occurred_at TIMESTAMPTZ NOT NULL,
        rule_version INTEGER,
        points BIGINT NOT NULL CHECK (points >= 0),
        -- Why fewer points than the rule's, if so.
        limited_by VARCHAR(20),
        transfer_id UUID,
        created_at TIMESTAMPTZ NOT NULL DEFAULT now(),
        CONSTRAINT uq_behaviour_events_id UNIQUE (program_id, event_id)
    )""",
    """CREATE INDEX ix_behaviour_events_caps
        ON behaviour_events (member_id, event, occurred_at)""",
    """CREATE TABLE rule_budgets (
        program_id UUID NOT NULL REFERENCES programs (id),
        rule_version INTEGER NOT NULL,
        rule VARCHAR(100) NOT NULL,
        granted BIGINT NOT NULL DEFAULT 0 CHECK (granted >= 0),
        PRIMARY KEY (program_id, rule_version, rule)
    )""",
]


def upgrade() -> None:
    for statement in STATEMENTS:
        op.execute(statement)


def downgrade() -> None:
    op.execute("DROP TABLE IF EXISTS rule_budgets, behaviour_events")
