"""Plain movements of the wallets are settled after posting (ledger).

A plain credit of a lot account makes its own lot, and a plain FIFO debit
consumes what its place in the account's queue says, whenever either is
written: the posting path no longer writes a lot per earn nor reads and
updates the head lots of every debited wallet (what cost earns a quarter
and wallet debits more than half of their throughput).
``ledger_settle_lots`` writes them later (the ``settle-lots`` job, every
read of lots before it reads, a period's close), and at once when the
account next takes a movement that is no queue's (a directed debit, a
restoration, a gift, a credit after an unsettled debit that sorts before a
lot made earlier). ``accounts.lots_debited``, ``lots_credited`` and
``lots_through`` say how far each account is settled, ``lots_newest`` the
newest business time of its credits (kept by the posting path),
``ledgers.lots_settled_through`` how far the job has looked. Existing
accounts are settled through now (history posted without lots is left to
``ledger_derive_lots``, as before).

Revision ID: 0050_lots_settled_later
Revises: 0049_exchange_rates
Create Date: 2026-12-07
"""

from collections.abc import Sequence

from alembic import op

from migrations.ledger_functions import ledger_function

revision: str = "0050_lots_settled_later"
down_revision: str | None = "0049_exchange_rates"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

#: What this revision applies, with the pins, in order.
UPGRADE = (
    ("ledger_settle_lots.sql", "992464e509c8dd5307386c09fc0c7389741c824dfa17211fdd97c772e856b9d8"),
    (
        "ledger_settle_account_lots.sql",
        "762b21d02d50f99af8ef6aa3e1ffcff5ad57eaf87a67c5de13b4ed69fb67dfbe",
    ),
    (
        "ledger_settle_ledger_lots.sql",
        "d04a551b20ab57517cfcd05a2a349c7c034b90450c78f4710d77371fcee2cf61",
    ),
    ("ledger_record_lots.sql", "60498929589fa1584da2a1ec5e951766f9577bda3dbe9a5d0bdaea2d1f7aa476"),
    (
        "history/0050_lots_settled_later/ledger_create_transfers.sql",
        "a30eaeb046f794da42a495ceac6f49ea8fe8aef9f7e083c6e4fd623a4a299c7a",
    ),
    ("ledger_derive_lots.sql", "410e8eb73f6429a8cd937c63edebf67816e6421116388abeb654b4ff67f5b9c1"),
)

#: What the downgrade puts back: the texts of 0045 and 0037.
DOWNGRADE = (
    (
        "history/0045_ledger_posting_aggregates/ledger_record_lots.sql",
        "696aacedddce233b8a333e02ade82d316058817c15ccc159af4cb9f5cd8b78c6",
    ),
    (
        "history/0045_ledger_posting_aggregates/ledger_create_transfers.sql",
        "8eaaa138c369d410a08f694a61c6191b8d5eb2bf86679ae3c7eb3b0fae8db6ee",
    ),
    (
        "history/0037_ledger_lots/ledger_derive_lots.sql",
        "ea062f35891c2fedc185bb7b50aa3d6a980fa3b16f07247dfdbda8e047c0d451",
    ),
)

_OLD_RECORD = (
    "ledger_record_lots(uuid[], uuid[], uuid[], bigint[], integer[], integer[], jsonb[],"
    " timestamptz[], date[], text[], bigint[], boolean[], boolean[], boolean[])"
)
_NEW_RECORD = _OLD_RECORD[:-1] + ", uuid[], boolean[], timestamptz[])"


def upgrade() -> None:
    op.execute(
        "ALTER TABLE accounts ADD COLUMN lots_debited bigint NOT NULL DEFAULT 0,"
        " ADD COLUMN lots_credited bigint NOT NULL DEFAULT 0,"
        " ADD COLUMN lots_through bigint NOT NULL DEFAULT 0,"
        " ADD COLUMN lots_newest timestamptz NOT NULL DEFAULT '-infinity'"
    )
    op.execute("ALTER TABLE ledgers ADD COLUMN lots_settled_through bigint NOT NULL DEFAULT 0")
    # Everything posted so far was recorded at posting: settled through now.
    op.execute(
        "UPDATE accounts SET lots_debited = debits_posted, lots_credited = credits_posted,"
        ' lots_through = (SELECT coalesce(max("timestamp"), 0) FROM transfers)'
        " WHERE code IN (SELECT code FROM ledger_lot_codes)"
    )
    op.execute(
        "UPDATE accounts a SET lots_newest = m.newest"
        " FROM (SELECT account_id, max(earned_at) AS newest FROM lots GROUP BY 1) m"
        " WHERE a.id = m.account_id"
    )
    op.execute(
        "UPDATE ledgers SET lots_settled_through ="
        ' (SELECT coalesce(max("timestamp"), 0) FROM transfers)'
    )
    # The settle-lots job finds what moved from the tail of transfers by this
    # index: ranges summarised as they fill, not only at the next VACUUM.
    op.execute("ALTER INDEX transfers_timestamp_brin SET (autosummarize = on)")
    op.execute(f"DROP FUNCTION {_OLD_RECORD}")
    for path, sha256 in UPGRADE:
        op.execute(ledger_function(path, sha256))


def downgrade() -> None:
    # Settled first: the older functions record every debit at posting.
    op.execute(
        "SELECT ledger_settle_account_lots(ARRAY(SELECT id FROM accounts"
        " WHERE code IN (SELECT code FROM ledger_lot_codes)"
        " AND (debits_posted > lots_debited OR credits_posted > lots_credited)))"
    )
    op.execute(f"DROP FUNCTION {_NEW_RECORD}")
    op.execute("DROP FUNCTION ledger_settle_ledger_lots(integer, boolean)")
    op.execute("DROP FUNCTION ledger_settle_account_lots(uuid[])")
    op.execute("DROP FUNCTION ledger_settle_lots(uuid[], bigint)")
    for path, sha256 in DOWNGRADE:
        op.execute(ledger_function(path, sha256))
    op.execute("ALTER INDEX transfers_timestamp_brin RESET (autosummarize)")
    op.execute("ALTER TABLE ledgers DROP COLUMN lots_settled_through")
    op.execute(
        "ALTER TABLE accounts DROP COLUMN lots_debited, DROP COLUMN lots_credited,"
        " DROP COLUMN lots_through, DROP COLUMN lots_newest"
    )
