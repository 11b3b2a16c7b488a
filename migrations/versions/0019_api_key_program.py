"""API keys bound to one program: a key with a program acts in that program
only (its tenant); a key without one acts in every program, as before. And
who issued each key, and names unique by an index.

A repeat of the request that issued a key may re-issue it a short while
after (``api.access.issue_key``): that needs the issuer, kept now
(``issued_by``; null for the keys from before, which are never re-issued).
A name is never given to a second key, even after the first is revoked (it
is the actor of the key's audit lines): a plain unique index says so for
every writer, where an advisory lock in one use case did.

Revision ID: 0019_api_key_program
Revises: 0018_program_calendar
Create Date: 2026-12-02
"""

from collections.abc import Sequence

from alembic import op

revision: str = "0019_api_key_program"
down_revision: str | None = "0018_program_calendar"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.execute("ALTER TABLE api_keys ADD COLUMN program_id UUID NULL REFERENCES programs (id)")
    # Listing a program's keys reads by it.
    op.execute("CREATE INDEX ix_api_keys_program_id ON api_keys (program_id)")
    op.execute("ALTER TABLE api_keys ADD COLUMN issued_by VARCHAR(200) NULL")
    _refuse_reused_names()
    op.execute("CREATE UNIQUE INDEX uq_api_keys_name ON api_keys (name)")


def _refuse_reused_names() -> None:
    """Keys issued before names were unique for good may share a name. Which
    of them the audit trail's ``key:<name>`` meant, only the operator can
    tell: the migration stops and names them rather than guess. In SQL, so
    that an offline script (``alembic upgrade --sql``) checks it too."""
    op.execute(
        """DO $$
        DECLARE reused TEXT;
        BEGIN
            SELECT string_agg(name, ', ' ORDER BY name) INTO reused
            FROM (SELECT name FROM api_keys GROUP BY name HAVING count(*) > 1) AS shared;
            IF reused IS NOT NULL THEN
                RAISE EXCEPTION 'api_keys: these names belong to more than one key: %', reused
                    USING HINT = 'Names are unique from this revision on: rename all but one'
                        ' key of each (UPDATE api_keys SET name = ... WHERE id = ...) and'
                        ' migrate again.';
            END IF;
        END $$"""
    )


def downgrade() -> None:
    op.execute("DROP INDEX uq_api_keys_name")
    op.execute("ALTER TABLE api_keys DROP COLUMN issued_by")
    op.execute("DROP INDEX ix_api_keys_program_id")
    op.execute("ALTER TABLE api_keys DROP COLUMN program_id")
