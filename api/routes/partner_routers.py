"""The controllers of the partners module, in two lists that ``api.app``
mounts: a new partner controller joins one of them, nothing else changes.

- ``PARTNER_API``: the partner API under ``/partner``, called with a partner
  client's token (``api.partner_access``); the token names the program and
  the partner, so paths carry neither.
- ``OPERATOR_API``: the operator's management of partners under
  ``/programs/{slug}/partners``, called with the admin token or an API key.
"""

from __future__ import annotations

from litestar.types import ControllerRouterHandler

from api.routes.operator_webhooks import OperatorWebhookController
from api.routes.partner_clients import PartnerClientController
from api.routes.partner_coalition import PartnerHoldController, PartnerIssuanceController
from api.routes.partner_collection import PartnerCollectionController
from api.routes.partner_contracts import PartnerContractController
from api.routes.partner_departures import PartnerDepartureController
from api.routes.partner_funding_purchases import (
    FundingPurchaseController,
    PartnerFundingPurchaseController,
)
from api.routes.partner_statement_api import PartnerStatementApiController
from api.routes.partner_statements import PartnerPositionController, PartnerStatementController
from api.routes.partner_webhooks import PartnerWebhookController
from api.routes.partners import PartnerController

PARTNER_API: list[ControllerRouterHandler] = [
    PartnerIssuanceController,
    PartnerHoldController,
    PartnerWebhookController,
    PartnerStatementApiController,
    PartnerFundingPurchaseController,
]
OPERATOR_API: list[ControllerRouterHandler] = [
    PartnerController,
    OperatorWebhookController,
    PartnerContractController,
    PartnerClientController,
    PartnerStatementController,
    PartnerPositionController,
    PartnerCollectionController,
    FundingPurchaseController,
    PartnerDepartureController,
]
