"""The ASGI entry point of server workers: ``api.asgi:app_from_environment``.

A factory, so that nothing connects at import. ``coalition serve`` puts the
resolved ``DATABASE_URL`` and ``COALITION_ADMIN_TOKEN`` in the environment
before it starts the workers.
"""

from __future__ import annotations

import gc

from litestar import Litestar

from api.app import create_app
from api.settings import load_settings


def app_from_environment() -> Litestar:
    app = create_app(load_settings())
    # What the imports and the app built lives as long as the worker: a full
    # collection scanning it (~200k objects) took 70-140 ms on this VM, the
    # whole tail of the lead routing decision's latency. Frozen, the
    # collector scans only what requests make.
    gc.freeze()
    return app
