"""The ASGI entry point of server workers: ``api.asgi:app_from_environment``.

A factory, so that nothing connects at import. ``coalition serve`` puts the
resolved ``DATABASE_URL`` and ``COALITION_ADMIN_TOKEN`` in the environment
before it starts the workers.
"""

from __future__ import annotations

from litestar import Litestar

from api.app import create_app
from api.settings import load_settings


def app_from_environment() -> Litestar:
    return create_app(load_settings())
