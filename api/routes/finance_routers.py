"""The controllers of finance and analytics, in one list that ``api.app``
mounts under the operator's security: a new finance controller joins it,
nothing else changes."""

from __future__ import annotations

from litestar.types import ControllerRouterHandler

from api.routes.finance_analytics import FinanceAnalyticsController
from api.routes.finance_exchange_rates import FinanceExchangeRatesController
from api.routes.finance_liability import FinanceLiabilityController
from api.routes.finance_periods import FinancePeriodsController
from api.routes.finance_reconciliation import FinanceReconciliationController
from api.routes.finance_revenue import FinanceRevenueController

FINANCE_API: list[ControllerRouterHandler] = [
    FinanceAnalyticsController,
    FinanceExchangeRatesController,
    FinanceLiabilityController,
    FinancePeriodsController,
    FinanceReconciliationController,
    FinanceRevenueController,
]
