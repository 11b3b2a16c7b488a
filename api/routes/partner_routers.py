"""The controllers of the partners module, in two lists that ``api.app``
mounts: a new partner controller joins one of them, nothing else changes.

- ``PARTNER_API``: the partner API under ``/partner``, called with a partner
  client's token (``api.partner_access``); the token names the program and
  the partner, so paths carry neither.
- ``OPERATOR_API``: the operator's management of partners under
  ``/programs/{slug}/partners`` (and of the program's own webhook
  endpoints), called with the admin token or an API key.
"""

from __future__ import annotations

from litestar.types import ControllerRouterHandler

from api.routes.campaigns import CampaignController
from api.routes.lead_settings import LeadSettingsController, PartnerLeadProfileController
from api.routes.mdf import MdfController
from api.routes.operator_webhooks import OperatorWebhookController
from api.routes.partner_campaigns import PartnerCampaignController
from api.routes.partner_clients import PartnerClientController
from api.routes.partner_coalition import PartnerHoldController, PartnerIssuanceController
from api.routes.partner_collection import PartnerCollectionController
from api.routes.partner_contracts import PartnerContractController
from api.routes.partner_data_sharing import PartnerDataSharingController
from api.routes.partner_departures import PartnerDepartureController
from api.routes.partner_funding_purchases import (
    FundingPurchaseController,
    PartnerFundingPurchaseController,
)
from api.routes.partner_leads import PartnerLeadController, PartnerLeadOfferController
from api.routes.partner_mdf import PartnerMdfController
from api.routes.partner_overlaps import PartnerOverlapController
from api.routes.partner_statement_api import PartnerStatementApiController
from api.routes.partner_statements import PartnerPositionController, PartnerStatementController
from api.routes.partner_webhooks import PartnerWebhookController
from api.routes.partners import PartnerController
from api.routes.program_webhooks import ProgramWebhookController
from api.routes.segments import SegmentController

PARTNER_API: list[ControllerRouterHandler] = [
    PartnerMdfController,
    PartnerIssuanceController,
    PartnerHoldController,
    PartnerWebhookController,
    PartnerStatementApiController,
    PartnerFundingPurchaseController,
    PartnerCampaignController,
    PartnerDataSharingController,
    PartnerOverlapController,
    PartnerLeadController,
    PartnerLeadOfferController,
]
OPERATOR_API: list[ControllerRouterHandler] = [
    MdfController,
    PartnerController,
    OperatorWebhookController,
    ProgramWebhookController,
    PartnerContractController,
    PartnerClientController,
    PartnerStatementController,
    PartnerPositionController,
    PartnerCollectionController,
    FundingPurchaseController,
    PartnerDepartureController,
    CampaignController,
    LeadSettingsController,
    PartnerLeadProfileController,
    SegmentController,
]
