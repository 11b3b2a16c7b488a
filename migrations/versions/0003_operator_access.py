"""Operator access: API keys with scopes, and the audit trail.

Revision ID: 0003_operator_access
Revises: 0002_rewards
Create Date: 2026-11-23
"""

from collections.abc import Sequence

from alembic import op

revision: str = "0003_operator_access"
down_revision: str | None = "0002_rewards"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

STATEMENTS = [
    """CREATE TABLE api_keys (
        id UUID PRIMARY KEY,
        name VARCHAR(100) NOT NULL,
        -- The key's public part, to find it; the secret is kept only hashed.
        prefix VARCHAR(16) NOT NULL UNIQUE,
        secret_sha256 BYTEA NOT NULL,
        scopes TEXT[] NOT NULL,
        created_at TIMESTAMPTZ NOT NULL DEFAULT now(),
        revoked_at TIMESTAMPTZ
    )""",
    """CREATE TABLE audit_events (
        id UUID PRIMARY KEY,
        occurred_at TIMESTAMPTZ NOT NULL DEFAULT now(),
        actor VARCHAR(200) NOT NULL,
        action VARCHAR(100) NOT NULL,
        subject VARCHAR(300) NOT NULL,
        details JSONB NOT NULL DEFAULT '{}'
    )""",
    "CREATE INDEX ix_audit_events_subject ON audit_events (subject, occurred_at)",
    # The trail is append-only, like the ledger.
    """CREATE TRIGGER audit_events_immutable BEFORE UPDATE OR DELETE ON audit_events
        FOR EACH ROW EXECUTE FUNCTION ledger_forbid_change()""",
]


def upgrade() -> None:
    for statement in STATEMENTS:
        op.execute(statement)


def downgrade() -> None:
    op.execute("DROP TABLE IF EXISTS audit_events, api_keys")
