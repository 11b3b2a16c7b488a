"""The app ``bench/partners.py`` serves: the Coalition app itself (as
``api.asgi`` builds it), with the partner issuance controller mounted under
``/partner`` should the tree not mount it yet (it is written before it is
wired), so that the bench measures the same handler either way.

    granian --interface asgi --factory bench.partner_app:create_app
"""

from __future__ import annotations

from litestar import Litestar

from api.routes.partner_coalition import PartnerIssuanceController
from api.routes.partner_routers import PARTNER_API


def issuance_mounted() -> bool:
    """Whether the tree's own partner API mounts ``POST /partner/issuances``."""
    return PartnerIssuanceController in PARTNER_API


def create_app() -> Litestar:
    if not issuance_mounted():
        PARTNER_API.append(PartnerIssuanceController)
    # Imported after: api.app reads the list when it builds the routers.
    from api.asgi import app_from_environment

    return app_from_environment()
