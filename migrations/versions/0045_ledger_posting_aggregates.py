"""The posting path records its daily aggregates and lots itself (ledger).

``ledger_create_transfers`` sums what each batch posted into
``ledger_daily_totals`` and records the lots of the lot accounts' movements
(``ledger_record_lots``) in the same call, with the accounts' codes it read
already; the statement-level trigger ``transfers_record_movements`` of
migration 0037, which re-read every new row's accounts and ledger from a
transition table, is dropped with its function ``ledger_record_movements``.
Same outcome, same guard (``ledger_guard_recorded``: only the posting path
writes the aggregates).

Revision ID: 0045_ledger_posting_aggregates
Revises: 0044_lead_routing_compact
Create Date: 2026-12-07
"""

from collections.abc import Sequence

from alembic import op

from migrations.ledger_functions import ledger_function

revision: str = "0045_ledger_posting_aggregates"
down_revision: str | None = "0044_lead_routing_compact"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

#: What this revision applies, with the pins, in order.
UPGRADE = (
    (
        "ledger_guard_recorded.sql",
        "e30b36a1d28d90321ebcaab2e0ec7285f217aac4ae088da00a755bd0ac720984",
    ),
    (
        "history/0045_ledger_posting_aggregates/ledger_record_lots.sql",
        "696aacedddce233b8a333e02ade82d316058817c15ccc159af4cb9f5cd8b78c6",
    ),
    (
        "history/0045_ledger_posting_aggregates/ledger_create_transfers.sql",
        "8eaaa138c369d410a08f694a61c6191b8d5eb2bf86679ae3c7eb3b0fae8db6ee",
    ),
)

#: What the downgrade puts back: the texts of 0037 and 0038.
DOWNGRADE = (
    (
        "history/0037_ledger_lots/ledger_guard_recorded.sql",
        "78dfa64cfcd9455912528131999b5b83e5c031e4707a013ed405e5a6ec983774",
    ),
    (
        "history/0037_ledger_lots/ledger_record_lots.sql",
        "bc3882af991b5a5a46e368c33ab833dd9f89ba215ac5a0d04274b73a48b70930",
    ),
    (
        "history/0037_ledger_lots/ledger_record_movements.sql",
        "0912e6f498fa21a6b751ec5cb02f198188d4324fbd15048971d625d8858b2ef3",
    ),
    (
        "history/0038_period_close/ledger_create_transfers.sql",
        "1a7df4c4b6a4dd1ff05ab21690505885f20e072a19837739ac3802a667656d41",
    ),
)


def upgrade() -> None:
    op.execute("DROP TRIGGER transfers_record_movements ON transfers")
    op.execute("DROP FUNCTION ledger_record_movements()")
    for path, sha256 in UPGRADE:
        op.execute(ledger_function(path, sha256))


def downgrade() -> None:
    for path, sha256 in DOWNGRADE:
        op.execute(ledger_function(path, sha256))
    op.execute(
        "CREATE TRIGGER transfers_record_movements AFTER INSERT ON transfers"
        " REFERENCING NEW TABLE AS new_transfers"
        " FOR EACH STATEMENT EXECUTE FUNCTION ledger_record_movements()"
    )
