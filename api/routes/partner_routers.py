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

from api.routes.partners import PartnerController

PARTNER_API: list[ControllerRouterHandler] = []
OPERATOR_API: list[ControllerRouterHandler] = [PartnerController]
