"""The application factory: per process, one ``Ledger`` on a pool of its own
and one asyncpg pool of the app's."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import cast

from advanced_alchemy.extensions.litestar import (
    AsyncSessionConfig,
    EngineConfig,
    SQLAlchemyAsyncConfig,
    SQLAlchemyPlugin,
)
from litestar import Litestar, Router
from litestar.datastructures import State
from litestar.di import Provide
from litestar.openapi import OpenAPIConfig
from litestar.openapi.plugins import JsonRenderPlugin, ScalarRenderPlugin
from litestar.openapi.spec import Components, SecurityScheme, Tag
from litestar.plugins.problem_details import ProblemDetailsPlugin
from litestar.static_files import create_static_files_router

import api
from api.access import Gatekeeper, require_scope
from api.auth import ADMIN_TOKEN_SCHEME, SECURITY_SCHEME
from api.bodies import StrictRequest
from api.commit import commit_before_send
from api.database import sqlalchemy_url
from api.intake import PurchaseIntake
from api.issuance_intake import IssuanceIntake
from api.lead_intake import LeadIntake
from api.member_auth import TokenVerifier, rate_limit_key
from api.partner_access import (
    PARTNER_SCHEME,
    PartnerAccess,
    partner_middleware,
    partner_token_scheme,
)
from api.problems import problem_details_config
from api.program_cache import ProgramCache
from api.rate_limits import member_rate_limit
from api.routes.exchanges import ExchangeAgreementController, MemberExchangeController
from api.routes.finance_routers import FINANCE_API
from api.routes.health import health
from api.routes.jobs import JobController
from api.routes.keys import KeyController
from api.routes.ledger import LedgerController
from api.routes.lot_operations import LotOperationsController
from api.routes.member_disclosures import MemberDisclosureController
from api.routes.members import MemberController
from api.routes.oauth import issue_token, jwks
from api.routes.partner_routers import OPERATOR_API as PARTNER_OPERATOR_API
from api.routes.partner_routers import PARTNER_API
from api.routes.program_settings import ProgramSettingsController
from api.routes.programs import ProgramController
from api.routes.signing_keys import SigningKeyController
from api.settings import Settings, SettingsError
from api.stripe.webhooks import stripe_webhook
from core.statement_batch import StatementBatch
from ledger import Ledger
from ledger.connection import create_pool

log = logging.getLogger(__name__)

#: Name of the member token's security scheme in the OpenAPI document.
MEMBER_SCHEME = "MemberToken"

#: Where the interactive API documentation is served.
DOCS_PATH = "/schema"

#: Where the documentation page's script is served from: the package itself,
#: so that the page works offline and behind a firewall.
DOCS_ASSETS_PATH = f"{DOCS_PATH}/assets"
DOCS_ASSETS = Path(__file__).parent / "static"
#: Scalar's standalone build, vendored unchanged (api/static/scalar/LICENSE
#: names the release): no Python package ships a current one without
#: bringing a web framework along.
SCALAR_SCRIPT = f"{DOCS_ASSETS_PATH}/scalar/standalone.js"
#: Everything that would reach outside: fonts, telemetry, the AI agent and
#: the developer toolbar (which links to Scalar's hosted services).
SCALAR_OPTIONS = {
    "withDefaultFonts": False,
    "telemetry": False,
    "agent": {"disabled": True},
    "showDeveloperTools": "never",
}


def create_app(settings: Settings | None = None, *, database_url: str | None = None) -> Litestar:
    """The HTTP app. ``database_url`` overrides ``settings.database_url`` (the
    CLI passes the embedded server's)."""
    settings = settings or Settings()
    url = database_url or settings.database_url
    if not url:
        raise SettingsError("DATABASE_URL: the app needs a PostgreSQL URL")

    @asynccontextmanager
    async def ledger_lifespan(app: Litestar) -> AsyncIterator[None]:
        # Two pools: the ledger's (its writer and its reads) and the app's
        # (keys, programs, the intake's transactions, member balance reads).
        # The intake posts with ``create_transfers_within`` on its own
        # connection, from the app's pool: the ledger's function is the
        # boundary, and the posting commits with the intake's rows.
        ledger = await Ledger.connect(
            url,
            max_size=settings.ledger_pool_size,
            command_timeout=settings.db_command_timeout,
            connect_timeout=settings.db_connect_timeout,
        )
        try:
            pool = await create_pool(
                url,
                min_size=1,
                max_size=settings.db_pool_size,
                command_timeout=settings.db_command_timeout,
                connect_timeout=settings.db_connect_timeout,
            )
        except BaseException:
            await ledger.close()
            raise
        app.state.ledger = ledger
        app.state.pool = pool
        app.state.gatekeeper = Gatekeeper(pool, settings.admin_token)
        app.state.programs = ProgramCache(pool)
        intake = app.state.intake = PurchaseIntake(pool, ledger)
        issuances = app.state.issuance_intake = IssuanceIntake(pool, ledger)
        # The partner API's one-statement writes (MDF requests and claims).
        partner_writes = app.state.partner_writes = StatementBatch(pool, name="partner-writes")
        leads = app.state.lead_intake = LeadIntake(pool)
        sweeper = None
        if settings.sweep_interval > 0:
            sweeper = asyncio.create_task(sweep_expired(ledger, settings.sweep_interval))
        try:
            yield
        finally:
            if sweeper is not None:
                sweeper.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await sweeper
            await intake.close()
            await issuances.close()
            await partner_writes.close()
            await leads.close()
            await ledger.close()
            await pool.close()

    operator_api = Router(
        path="/",
        route_handlers=[LedgerController],
        guards=[require_scope("ledger:write", reading="ledger:read")],
        security=[{SECURITY_SCHEME: []}],
    )
    rate_limit = member_rate_limit(settings, rate_limit_key)
    member_api = Router(
        path="/",
        route_handlers=[MemberController, MemberExchangeController, MemberDisclosureController],
        middleware=[rate_limit.middleware],
        security=[{MEMBER_SCHEME: []}],
    )
    programs_api = Router(
        path="/",
        route_handlers=[
            ProgramController,
            ProgramSettingsController,
            ExchangeAgreementController,
            LotOperationsController,
        ],
        security=[{SECURITY_SCHEME: []}],
    )
    partners_api = Router(
        path="/", route_handlers=PARTNER_OPERATOR_API, security=[{SECURITY_SCHEME: []}]
    )
    finance_api = Router(path="/", route_handlers=FINANCE_API, security=[{SECURITY_SCHEME: []}])
    operations_api = Router(
        path="/",
        route_handlers=[JobController, KeyController, SigningKeyController],
        security=[{SECURITY_SCHEME: []}],
    )
    # One database transaction per request, committed when the answer is a
    # success and rolled back otherwise; a failed commit is answered as its
    # error (api.commit), never as the success.
    database = SQLAlchemyAsyncConfig(
        connection_string=sqlalchemy_url(url),
        session_dependency_key="db_session",
        session_config=AsyncSessionConfig(expire_on_commit=False),
        # Enough kept connections for the requests in flight: an overflow
        # connection is opened and closed per use, which costs more than the
        # request itself.
        engine_config=EngineConfig(
            pool_size=settings.db_pool_size,
            max_overflow=settings.db_pool_size,
            pool_use_lifo=True,
            # After a database restart the pooled connections are dead: a
            # ping on checkout replaces them instead of failing a request.
            pool_pre_ping=True,
            pool_timeout=max(1, round(settings.db_connect_timeout)),
            connect_args={
                "command_timeout": settings.db_command_timeout,
                "timeout": settings.db_connect_timeout,
            },
        ),
        create_all=False,
        set_default_exception_handler=False,
    )
    database.before_send_handler = commit_before_send(database.session_scope_key)
    # Partner clients' own API: its middleware identifies the partner token,
    # keeps the partner's rate limit and the Idempotency-Key of POSTs; its
    # guards check the scope each operation states (api.partner_access).
    partner_access = PartnerAccess(settings, database, url)
    partner_api = Router(
        path="/partner", route_handlers=PARTNER_API, middleware=[partner_middleware]
    )
    app = Litestar(
        route_handlers=[
            operator_api,
            programs_api,
            partners_api,
            partner_api,
            finance_api,
            operations_api,
            member_api,
            health,
            stripe_webhook,
            issue_token,
            jwks,
            create_static_files_router(DOCS_ASSETS_PATH, [DOCS_ASSETS], name="docs-assets"),
        ],
        state=State({"token_verifier": TokenVerifier(settings), "settings": settings}),
        dependencies={"ledger": Provide(provide_ledger, sync_to_thread=False)},
        lifespan=[ledger_lifespan, partner_access.lifespan, rate_limit.lifespan],
        plugins=[ProblemDetailsPlugin(problem_details_config()), SQLAlchemyPlugin(database)],
        openapi_config=openapi_config(),
        # JSON bodies decoded strictly into their structs (no "10" for 10).
        request_class=StrictRequest,
    )
    # Not in the State above, which copies what it is given: the one object
    # whose lifespan runs, which the partner API's middleware looks up.
    app.state.partner_access = partner_access
    return app


async def sweep_expired(ledger: Ledger, interval: float) -> None:
    """Void timed-out pending transfers every ``interval`` seconds.

    Every worker sweeps; that is safe, since an expiry's id derives from the
    pending transfer's and a pending transfer resolves once.
    """
    while True:
        await asyncio.sleep(interval)
        try:
            while await ledger.expire_pending():
                pass
        except Exception:
            log.exception("sweeping expired pending transfers failed; retrying later")


def provide_ledger(state: State) -> Ledger:
    return cast(Ledger, state.ledger)


def openapi_config() -> OpenAPIConfig:
    return OpenAPIConfig(
        title="Coalition",
        version=_version(),
        description=api.__doc__,
        path=DOCS_PATH,
        render_plugins=[
            ScalarRenderPlugin(
                path="/",
                js_url=SCALAR_SCRIPT,
                # Scalar's script carries its own styles; Litestar's default
                # stylesheet and favicon are on a CDN.
                css_url="data:text/css,",
                favicon="",
                options=SCALAR_OPTIONS,
            ),
            JsonRenderPlugin(),
        ],
        components=Components(
            security_schemes={
                SECURITY_SCHEME: ADMIN_TOKEN_SCHEME,
                PARTNER_SCHEME: partner_token_scheme(),
                MEMBER_SCHEME: SecurityScheme(
                    type="http",
                    scheme="bearer",
                    bearer_format="JWT",
                    description="A member's token from the program's identity provider.",
                ),
            }
        ),
        tags=[
            Tag(name="ledger", description="The double-entry points ledger (operator API)"),
            Tag(name="programs", description="Loyalty programs, rules, members, purchases"),
            Tag(name="members", description="The member app: a member's own data"),
            Tag(name="operations", description="Running the service"),
            Tag(
                name="partner access",
                description="Partner clients' tokens (OAuth 2.0 client credentials) and the"
                " keys that sign them",
            ),
        ],
    )


def _version() -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("coalition")
    except PackageNotFoundError:
        return "0.0.0"
