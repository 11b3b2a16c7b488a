"""The general ledger accounts a journal's lines post to, mapped from the
ledger's codes, with defaults any program may override (its revenue
settings' ``gl_accounts``).

Keys, most specific first:

- ``transfer:<transfer code>:account:<account code>``: one account code
  moved by one kind of transfer (a leaving partner's liability transfer
  credits the revenue account, and is reported apart);
- ``account:<account code>``: a money ledger account by its code;
- ``revenue:<role>``: the accounts of the revenue journal, which the
  ledger does not hold (the contract liability, the revenue recognised).

A code no key maps goes to ``unmapped:<code>``: the line is kept (the
journal still balances) and the export shows what to map.
"""

from __future__ import annotations

import enum
import re
from collections.abc import Mapping
from dataclasses import dataclass, field

from core.codes import AccountCode, TransferCode


class RevenueRole(enum.StrEnum):
    #: The points' share of sales and partner fees, not yet recognised.
    CONTRACT_LIABILITY = "contract_liability"
    #: The sales revenue the points' share is taken out of.
    SALES_REVENUE = "sales_revenue"
    #: Revenue recognised as points are redeemed (and by breakage).
    LOYALTY_REVENUE = "loyalty_revenue"
    #: Partner fees' service elements, not yet recognised.
    DEFERRED_SERVICE_REVENUE = "deferred_service_revenue"
    SERVICE_REVENUE = "service_revenue"


DEFAULT_GL_ACCOUNTS: dict[str, str] = {
    f"account:{AccountCode.PARTNER_CASH}": "1000 Cash",
    f"account:{AccountCode.PARTNER_RECEIVABLE}": "1200 Partner receivables",
    f"account:{AccountCode.PARTNER_PAYABLE}": "2100 Partner payables",
    f"account:{AccountCode.PARTNER_PREPAID}": "2150 Partner prepayments",
    f"account:{AccountCode.PARTNER_REVENUE}": "4200 Points sold to partners",
    f"account:{AccountCode.PARTNER_REDEMPTION_COST}": "5100 Redemption cost",
    f"account:{AccountCode.REFERRAL_EXPENSE}": "6100 Referral rewards",
    f"account:{AccountCode.MDF_EXPENSE}": "6200 Market development funds",
    f"transfer:{TransferCode.PARTNER_LIABILITY_TRANSFER}:account:{AccountCode.PARTNER_REVENUE}": (
        "4250 Liability taken over from partners"
    ),
    f"revenue:{RevenueRole.CONTRACT_LIABILITY}": "2400 Contract liability: loyalty points",
    f"revenue:{RevenueRole.SALES_REVENUE}": "4000 Sales revenue",
    f"revenue:{RevenueRole.LOYALTY_REVENUE}": "4100 Loyalty revenue: points redeemed",
    f"revenue:{RevenueRole.DEFERRED_SERVICE_REVENUE}": "2450 Deferred service revenue",
    f"revenue:{RevenueRole.SERVICE_REVENUE}": "4300 Coalition service revenue",
}

_ROLES = "|".join(role.value for role in RevenueRole)
KEY_PATTERN = rf"^(account:\d{{1,10}}|transfer:\d{{1,10}}:account:\d{{1,10}}|revenue:({_ROLES}))$"
_KEY = re.compile(KEY_PATTERN)
#: An account's name: printable text, no control characters.
VALUE_PATTERN = r"^[^\x00-\x1f\x7f]+$"
VALUE_LENGTH_MAX = 100
OVERRIDES_MAX = 200


def override_fault(key: str, value: str) -> str | None:
    """Why an override cannot be kept, or None."""
    if not _KEY.match(key):
        return (
            f"gl_accounts: {key!r} is not account:<code>,"
            " transfer:<code>:account:<code> or revenue:<role>"
        )
    if not value or len(value) > VALUE_LENGTH_MAX or not re.match(VALUE_PATTERN, value):
        return f"gl_accounts[{key!r}]: 1 to {VALUE_LENGTH_MAX} printable characters"
    return None


@dataclass(frozen=True)
class GlAccounts:
    overrides: Mapping[str, str] = field(default_factory=dict)

    def _named(self, key: str) -> str | None:
        return self.overrides.get(key) or DEFAULT_GL_ACCOUNTS.get(key)

    def for_account(self, account_code: int, transfer_code: int | None = None) -> str:
        if transfer_code is not None:
            specific = self._named(f"transfer:{transfer_code}:account:{account_code}")
            if specific is not None:
                return specific
        return self._named(f"account:{account_code}") or f"unmapped:{account_code}"

    def for_role(self, role: RevenueRole) -> str:
        return self._named(f"revenue:{role}") or f"unmapped:{role}"
