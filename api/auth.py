"""How the operator API's bearer credential is described in OpenAPI (the
guards live in ``api.access``)."""

from __future__ import annotations

from litestar.openapi.spec import SecurityScheme

#: Name of the security scheme in the OpenAPI document.
SECURITY_SCHEME = "AdminToken"

ADMIN_TOKEN_SCHEME = SecurityScheme(
    type="http",
    scheme="bearer",
    description="The operator token (COALITION_ADMIN_TOKEN) or an API key.",
)
