"""Plain debits of the wallets are settled after posting (ledger).

A plain FIFO debit of a lot account consumes what its place in the
account's queue says, whenever that is written: the posting path no longer
reads and updates the head lots of every debited wallet (what cost wallet
debits more than half their throughput). ``ledger_settle_lots`` writes
those debits' lot movements later (the ``settle-lots`` job, and every read
of lots before it reads), and at once when the account next takes a movement
that is no queue's (a directed debit, a restoration, a gift, a credit that
sorts before its open lots). ``accounts.lots_debited`` and ``lots_through``
say how far each account is settled, ``ledgers.lots_settled_through`` how
far the job has looked. Existing accounts are settled through now.

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
    ("ledger_settle_lots.sql", "7f981ef10dc5743e5c428c64423cac7d4a833ddab9f20030f50dbef136718990"),
    (
        "ledger_settle_account_lots.sql",
        "237a0fa004b019450c4c39439b7ade620a8ccb75bd9596bb4cc4ba07cddc5f65",
    ),
    (
        "ledger_settle_ledger_lots.sql",
        "370920cf47f1f5172b55d06d9d97c5c76e170c69ee59a08310912b6744aefcb6",
    ),
    ("ledger_record_lots.sql", "8be90f1c4e56babae67162f2d4ce6d269a9c881d53a19ff7440a653d27512e80"),
    (
        "ledger_create_transfers.sql",
        "ac1fd1803eb6ebaaabaa7ba4c71b9a1422f8ae099511ace96643f0fb4c520fef",
    ),
    ("ledger_derive_lots.sql", "771e8fc3e2c1841edfaff865d895d0987a98ee8b5e2f989d9452933086894109"),
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
_NEW_RECORD = _OLD_RECORD[:-1] + ", uuid[])"


def upgrade() -> None:
    op.execute(
        "ALTER TABLE accounts ADD COLUMN lots_debited bigint NOT NULL DEFAULT 0,"
        " ADD COLUMN lots_through bigint NOT NULL DEFAULT 0"
    )
    op.execute("ALTER TABLE ledgers ADD COLUMN lots_settled_through bigint NOT NULL DEFAULT 0")
    # Everything posted so far was recorded at posting: settled through now.
    op.execute(
        "UPDATE accounts SET lots_debited = debits_posted,"
        ' lots_through = (SELECT coalesce(max("timestamp"), 0) FROM transfers)'
        " WHERE code IN (SELECT code FROM ledger_lot_codes) AND debits_posted > 0"
    )
    op.execute(
        "UPDATE ledgers SET lots_settled_through ="
        ' (SELECT coalesce(max("timestamp"), 0) FROM transfers)'
    )
    op.execute(f"DROP FUNCTION {_OLD_RECORD}")
    for path, sha256 in UPGRADE:
        op.execute(ledger_function(path, sha256))


def downgrade() -> None:
    # Settled first: the older functions record every debit at posting.
    op.execute(
        "SELECT ledger_settle_account_lots(ARRAY(SELECT id FROM accounts"
        " WHERE code IN (SELECT code FROM ledger_lot_codes) AND debits_posted > lots_debited))"
    )
    op.execute(f"DROP FUNCTION {_NEW_RECORD}")
    op.execute("DROP FUNCTION ledger_settle_ledger_lots(integer)")
    op.execute("DROP FUNCTION ledger_settle_account_lots(uuid[])")
    op.execute("DROP FUNCTION ledger_settle_lots(uuid[], bigint)")
    for path, sha256 in DOWNGRADE:
        op.execute(ledger_function(path, sha256))
    op.execute("ALTER TABLE ledgers DROP COLUMN lots_settled_through")
    op.execute("ALTER TABLE accounts DROP COLUMN lots_debited, DROP COLUMN lots_through")
