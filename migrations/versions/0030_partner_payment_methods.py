"""The payment method last attached to a partner's Stripe customer, so that
a method saved after the customer was made is attached before a
PaymentIntent uses it (``partners.collection_models``).

No backfill: a customer's method is unknown until it is attached again
(under the key it was first attached with, so Stripe answers as before).

Revision ID: 0030_partner_payment_methods
Revises: 0029_partner_funding_purchases
Create Date: 2026-12-04
"""

from collections.abc import Sequence

from alembic import op

revision: str = "0030_partner_payment_methods"
down_revision: str | None = "0029_partner_funding_purchases"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.execute(
        "ALTER TABLE partner_payment_accounts ADD COLUMN attached_payment_method_id VARCHAR(255)"
    )


def downgrade() -> None:
    op.execute("ALTER TABLE partner_payment_accounts DROP COLUMN attached_payment_method_id")
