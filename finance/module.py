"""What finance brings to the platform (``api.modules`` lists it): its
scopes, its jobs and the meaning of its constraints."""

from __future__ import annotations

from core.modules import Job, Module
from finance import exchange_rate_models, models
from finance.reconciliation import ALERT_TOPIC
from finance.reconciliation_job import JOB_NAME, reconcile_ledgers
from finance.revenue import models as revenue_models
from finance.revenue import tasks as revenue_tasks

FINANCE = Module(
    name="finance",
    scopes={
        "finance:read": "Read point liabilities, roll-forwards, trial balances, revenue,"
        " journals, periods and reconciliations.",
        "finance:write": "Close and reopen periods, run reconciliations and revenue"
        " recognition, post corrections.",
        "analytics:read": "Read member value, redemption curves, program and campaign ROI"
        " and partner profitability.",
    },
    constraints=(
        *models.CONSTRAINTS,
        *exchange_rate_models.CONSTRAINTS,
        *revenue_models.CONSTRAINTS,
    ),
    jobs=(
        Job(
            name=JOB_NAME,
            summary="Reconcile every program's ledgers: balances, statements, payments,"
            " lots and daily aggregates against the transfers.",
            run=reconcile_ledgers,
            every=86400.0,
        ),
        Job(
            name=revenue_tasks.JOB_NAME,
            summary="Recognise revenue (IFRS 15) of every program's last ended month, once:"
            " re-estimate breakage, allocate new sales and partner fees, recognise.",
            run=revenue_tasks.recognise_revenue,
            every=3600.0,
        ),
    ),
    # A webhook to each of the program's own endpoints that takes it: the
    # partners module subscribes it (partners.program_webhooks).
    topics=frozenset({ALERT_TOPIC}),
)
