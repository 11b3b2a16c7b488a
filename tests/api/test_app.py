"""The app as a whole: documentation, health, authentication, error shape."""

from __future__ import annotations

import re
from types import SimpleNamespace
from typing import cast

import asyncpg
import pytest
from litestar import Litestar
from litestar.testing import AsyncTestClient

from api.app import create_app
from api.settings import Settings, SettingsError
from ledger import Ledger
from tests.api.conftest import ADMIN_TOKEN, AUTH, assert_problem

Client = AsyncTestClient[Litestar]


async def test_openapi_document_lists_every_route(anonymous_client: Client) -> None:
    response = await anonymous_client.get("/schema/openapi.json")

    assert response.status_code == 200
    document = response.json()
    assert document["openapi"].startswith("3.")
    assert document["info"]["title"] == "Coalition"
    paths = document["paths"]
    assert set(paths) == {
        "/health",
        "/ledger/ledgers",
        "/ledger/ledgers/{ledger_id}/totals",
        "/ledger/accounts",
        "/ledger/accounts/{account_id}",
        "/ledger/accounts/{account_id}/transfers",
        "/ledger/transfers",
        "/ledger/transfers/{transfer_id}",
        "/programs",
        "/programs/{slug}",
        "/programs/{slug}/settings",
        "/programs/{slug}/rules",
        "/programs/{slug}/rules/{version}/publish",
        "/programs/{slug}/members",
        "/programs/{slug}/members/{external_id}",
        "/programs/{slug}/purchases",
        "/programs/{slug}/purchases/{order_id}/returns",
        "/me",
        "/me/balance",
        "/me/transactions",
        "/me/rewards",
        "/me/redemptions",
        "/me/gifts",
        "/programs/{slug}/rewards",
        "/me/holds",
        "/me/holds/{hold_id}/release",
        "/programs/{slug}/holds/{hold_id}/capture",
        "/programs/{slug}/holds/{hold_id}/release",
        # Operations on lots (api.routes.lot_operations).
        "/programs/{slug}/holds/{hold_id}/cancellation",
        "/programs/{slug}/members/{external_id}/redemptions/{transfer_id}/cancellation",
        "/programs/{slug}/reinstatements",
        "/programs/{slug}/reinstatements/{reinstatement_id}",
        "/programs/{slug}/sunset",
        "/me/tier",
        "/programs/{slug}/tiers",
        "/programs/{slug}/thresholds",
        "/programs/{slug}/events",
        "/me/expiring",
        "/me/points-purchases",
        "/webhooks/stripe",
        "/programs/{slug}/members/{external_id}/adjustments",
        "/programs/{slug}/rules/{version}/simulate",
        "/programs/{slug}/members/{external_id}/export",
        "/programs/{slug}/members/{external_id}/erase",
        "/me/export",
        "/jobs/{name}/runs",
        "/api-keys",
        "/api-keys/{name}",
        # Points exchanged between programs (api.routes.exchanges).
        "/programs/{slug}/exchange-agreements",
        "/programs/{slug}/exchange-agreements/{agreement_id}",
        "/programs/{slug}/exchange-agreements/{agreement_id}/position",
        "/programs/{slug}/exchange-agreements/{agreement_id}/versions",
        "/programs/{slug}/exchange-agreements/{agreement_id}/versions/{version}/accept",
        "/me/exchanges",
        "/me/exchanges/quote",
        "/me/partner-links",
        "/me/partner-links/{partner}",
        "/me/data-sharing/consents",
        "/me/data-sharing/consents/{field}",
        "/me/data-sharing/disclosures",
        # The operator's management of partner firms (api.routes.partner_routers).
        "/programs/{slug}/partners",
        "/programs/{slug}/partners/{partner}",
        "/programs/{slug}/partners/{partner}/status",
        "/programs/{slug}/partners/{partner}/status-history",
        "/programs/{slug}/partners/{partner}/users",
        "/programs/{slug}/partners/{partner}/users/{user_id}",
        "/programs/{slug}/partners/{partner}/clients",
        "/programs/{slug}/partners/{partner}/clients/{client_id}",
        "/programs/{slug}/partners/{partner}/clients/{client_id}/secret-rotations",
        "/programs/{slug}/partners/{partner}/contracts",
        "/programs/{slug}/partners/{partner}/contracts/{version}",
        "/programs/{slug}/partners/{partner}/contracts/{version}/publication",
        "/programs/{slug}/partners/{partner}/funding",
        "/programs/{slug}/partners/{partner}/funding/purchases",
        "/programs/{slug}/partners/{partner}/funding/purchases/{purchase_id}",
        "/programs/{slug}/partners/{partner}/balance",
        "/programs/{slug}/partners/{partner}/webhook-endpoints",
        "/programs/{slug}/partners/{partner}/webhook-endpoints/{endpoint_id}",
        "/programs/{slug}/partners/{partner}/webhook-endpoints/{endpoint_id}/disable",
        "/programs/{slug}/partners/{partner}/webhook-endpoints/{endpoint_id}/enable",
        # The program's own webhook endpoints (api.routes.program_webhooks).
        "/programs/{slug}/webhook-endpoints",
        "/programs/{slug}/webhook-endpoints/{endpoint_id}",
        "/programs/{slug}/webhook-endpoints/{endpoint_id}/deliveries",
        "/programs/{slug}/webhook-endpoints/{endpoint_id}/replays",
        "/programs/{slug}/webhook-endpoints/{endpoint_id}/secret-rotations",
        "/programs/{slug}/webhook-endpoints/{endpoint_id}/test-events",
        "/programs/{slug}/webhook-deliveries/{message_id}",
        "/programs/{slug}/webhook-deliveries/{message_id}/replays",
        "/programs/{slug}/partners/{partner}/statements",
        "/programs/{slug}/partners/{partner}/statements/draft",
        "/programs/{slug}/partners/{partner}/statements/{number}",
        "/programs/{slug}/partners/{partner}/statements/{number}/recomputation",
        "/programs/{slug}/partners/{partner}/statements/{number}/lines/{line}/transfers",
        "/programs/{slug}/partners/{partner}/statements/{number}/payments",
        "/programs/{slug}/partners/{partner}/statements/{number}/collection",
        "/programs/{slug}/partners/{partner}/payment-method",
        "/programs/{slug}/partners/{partner}/payouts",
        "/programs/{slug}/partners/{partner}/position",
        "/programs/{slug}/partners/{partner}/departure",
        "/programs/{slug}/partners/{partner}/departure/report",
        "/programs/{slug}/partners/{partner}/departure/final-statement",
        "/programs/{slug}/partner-positions",
        "/programs/{slug}/mdf/funds",
        "/programs/{slug}/mdf/funds/{fund_id}",
        "/programs/{slug}/mdf/funds/{fund_id}/reconciliation",
        "/programs/{slug}/mdf/funds/{fund_id}/activities",
        "/programs/{slug}/mdf/activities/{activity_id}",
        "/programs/{slug}/mdf/activities/{activity_id}/approval",
        "/programs/{slug}/mdf/activities/{activity_id}/refusal",
        "/programs/{slug}/mdf/activities/{activity_id}/claims",
        "/programs/{slug}/mdf/claims/{claim_id}",
        "/programs/{slug}/mdf/claims/{claim_id}/approval",
        "/programs/{slug}/mdf/claims/{claim_id}/refusal",
        "/programs/{slug}/campaigns",
        "/programs/{slug}/campaigns/{campaign_id}",
        "/programs/{slug}/campaigns/{campaign_id}/stop",
        "/programs/{slug}/campaigns/{campaign_id}/attribution",
        "/programs/{slug}/finance/liability",
        "/programs/{slug}/finance/roll-forward",
        "/programs/{slug}/finance/trial-balance",
        "/programs/{slug}/finance/periods",
        "/programs/{slug}/finance/periods/{month}/close",
        "/programs/{slug}/finance/periods/{month}/reopen",
        "/programs/{slug}/finance/revenue/settings",
        "/programs/{slug}/finance/revenue/allocations",
        "/programs/{slug}/finance/revenue/breakage-estimates",
        "/programs/{slug}/finance/revenue/recognitions",
        "/programs/{slug}/finance/revenue/recognitions/{period}",
        "/programs/{slug}/finance/journal",
        "/programs/{slug}/finance/exchange-rates",
        "/programs/{slug}/finance/reconciliations",
        "/programs/{slug}/finance/reconciliations/{run_id}",
        # Saved segments (api.routes.segments) and analytics (api.routes.finance_analytics).
        "/programs/{slug}/segments",
        "/programs/{slug}/segments/{name}",
        "/programs/{slug}/segments/{name}/count",
        "/programs/{slug}/segments/{name}/export",
        "/programs/{slug}/analytics/members/{external_id}/value",
        "/programs/{slug}/analytics/redemption-curves",
        "/programs/{slug}/analytics/program-roi",
        "/programs/{slug}/analytics/campaigns/{campaign_id}/roi",
        "/programs/{slug}/analytics/partner-profitability",
        # Partner clients' tokens and the keys that sign them.
        "/oauth/token",
        "/.well-known/jwks.json",
        "/partner-signing-keys",
        "/partner-signing-keys/rotations",
        # The partner API, called with a partner client's token.
        "/partner/issuances",
        "/partner/issuances/{issuance_id}",
        "/partner/balance",
        "/partner/funding/purchases",
        "/partner/funding/purchases/{purchase_id}",
        "/partner/holds",
        "/partner/holds/{hold_id}",
        "/partner/holds/{hold_id}/capture",
        "/partner/holds/{hold_id}/release",
        "/partner/holds/{hold_id}/refunds",
        "/partner/statements",
        "/partner/statements/{statement_id}",
        "/partner/statements/{statement_id}/lines/{line}/transfers",
        "/partner/position",
        "/partner/mdf/funds",
        "/partner/mdf/funds/{fund_id}",
        "/partner/mdf/funds/{fund_id}/reconciliation",
        "/partner/mdf/funds/{fund_id}/activities",
        "/partner/mdf/activities/{activity_id}",
        "/partner/mdf/activities/{activity_id}/approval",
        "/partner/mdf/activities/{activity_id}/refusal",
        "/partner/mdf/activities/{activity_id}/claims",
        "/partner/mdf/claims/{claim_id}",
        "/partner/mdf/claims/{claim_id}/submission",
        "/partner/mdf/claims/{claim_id}/approval",
        "/partner/mdf/claims/{claim_id}/refusal",
        "/partner/webhook-endpoints",
        "/partner/webhook-endpoints/{endpoint_id}",
        "/partner/webhook-endpoints/{endpoint_id}/deliveries",
        "/partner/webhook-endpoints/{endpoint_id}/replays",
        "/partner/webhook-endpoints/{endpoint_id}/secret-rotations",
        "/partner/webhook-endpoints/{endpoint_id}/test-events",
        "/partner/webhook-deliveries/{message_id}",
        "/partner/webhook-deliveries/{message_id}/replays",
        "/partner/campaigns",
        "/partner/campaigns/{campaign_id}",
        "/partner/campaigns/{campaign_id}/approvals",
        "/partner/campaigns/{campaign_id}/stop",
        "/partner/campaigns/{campaign_id}/attribution",
        # Data sharing between partners (api.routes.partner_data_sharing).
        "/partner/data-sharing/agreements",
        "/partner/data-sharing/agreements/{agreement_id}",
        "/partner/data-sharing/agreements/{agreement_id}/opt-in",
        "/partner/data-sharing/agreements/{agreement_id}/revoke",
        "/partner/data-sharing/agreements/{agreement_id}/members",
        "/partner/data-sharing/agreements/{agreement_id}/export",
        "/partner/data-sharing/agreements/{agreement_id}/pushes",
        "/partner/data-sharing/agreements/{agreement_id}/disclosures",
        # Overlap matching under an agreement (api.routes.partner_overlaps).
        "/partner/data-sharing/agreements/{agreement_id}/overlap-key",
        "/partner/data-sharing/agreements/{agreement_id}/overlap-key/rotations",
        "/partner/data-sharing/agreements/{agreement_id}/overlap-uploads",
        "/partner/data-sharing/agreements/{agreement_id}/overlap-uploads/{upload_id}",
        "/partner/data-sharing/agreements/{agreement_id}/overlap-runs",
        "/partner/data-sharing/agreements/{agreement_id}/overlap-runs/{run_id}",
        # Leads and deal registration (api.routes.partner_leads, api.routes.lead_settings).
        "/partner/leads",
        "/partner/leads/{lead_id}",
        "/partner/leads/{lead_id}/extensions",
        "/partner/leads/{lead_id}/status",
        "/partner/lead-offers",
        "/partner/lead-offers/{offer_id}",
        "/partner/lead-offers/{offer_id}/acceptance",
        "/partner/lead-offers/{offer_id}/decline",
        "/partner/lead-offers/{offer_id}/status",
        "/programs/{slug}/leads/scoring-versions",
        "/programs/{slug}/leads/routing-versions",
        "/programs/{slug}/leads/referral-terms",
        "/programs/{slug}/leads/extensions",
        "/programs/{slug}/leads/extensions/{extension_id}/approval",
        "/programs/{slug}/leads/extensions/{extension_id}/refusal",
        "/programs/{slug}/leads/{lead_id}",
        "/programs/{slug}/leads/{lead_id}/routing",
        "/programs/{slug}/partners/{partner}/lead-profile",
    }
    assert all(op.get("summary") for item in paths.values() for op in item.values())
    assert paths["/ledger/transfers"]["post"]["security"] == [{"AdminToken": []}]
    batch = document["components"]["schemas"]["TransferBatch"]["properties"]["transfers"]
    assert (batch["minItems"], batch["maxItems"]) == (1, 8000)


async def test_docs_page_is_served(anonymous_client: Client) -> None:
    response = await anonymous_client.get("/schema")

    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/html")
    assert "openapi.json" in response.text


async def test_docs_page_needs_nothing_from_outside(anonymous_client: Client) -> None:
    page = (await anonymous_client.get("/schema")).text
    links = re.findall(r"""(?:src|href)=["']([^"']*)["']""", page)
    scripts = re.findall(r"""<script[^>]*\ssrc=["']([^"']+)["']""", page)

    # Offline or behind a firewall, a page that loads from a CDN stays blank.
    assert re.findall(r"(?:https?:)?//[\w.-]+", page) == []
    assert all(link.startswith(("/", "data:")) for link in links), links
    assert len(scripts) == 1
    script = await anonymous_client.get(scripts[0])
    assert script.status_code == 200
    assert script.headers["content-type"].startswith("text/javascript")
    assert len(script.content) > 100_000  # the whole Scalar build, not a stub
    # Scalar's own calls home are off.
    assert '"telemetry":false' in page
    assert '"withDefaultFonts":false' in page


async def test_docs_assets_serve_only_their_folder(anonymous_client: Client) -> None:
    inside = await anonymous_client.get("/schema/assets/scalar/LICENSE")
    outside = await anonymous_client.get("/schema/assets/../app.py")
    escaped = await anonymous_client.get("/schema/assets/%2e%2e/app.py")

    assert inside.status_code == 200
    assert outside.status_code == 404
    assert escaped.status_code == 404


async def test_health_checks_the_database(anonymous_client: Client) -> None:
    response = await anonymous_client.get("/health")

    assert response.status_code == 200
    assert response.json() == {"status": "ok"}


async def test_health_is_503_problem_when_the_database_fails(
    client: Client, app: Litestar, monkeypatch: pytest.MonkeyPatch
) -> None:
    async def refuse(*args: object) -> None:
        raise ConnectionRefusedError("no database at 10.0.0.7")

    broken = Ledger(cast(asyncpg.Pool, SimpleNamespace(fetchval=refuse)))
    monkeypatch.setattr(app.state, "ledger", broken)
    response = await client.get("/health")

    body = assert_problem(response, 503, "database-unavailable")
    assert "10.0.0.7" not in response.text
    assert body["detail"] == "the database does not answer"


async def test_health_is_503_when_the_apps_own_pool_fails(
    client: Client, app: Litestar, monkeypatch: pytest.MonkeyPatch
) -> None:
    # The ledger's pool answers; the app's (keys, programs, the intake) does not.
    async def refuse(*args: object) -> None:
        raise ConnectionRefusedError("no database at 10.0.0.8")

    monkeypatch.setattr(app.state, "pool", SimpleNamespace(fetchval=refuse))
    response = await client.get("/health")

    body = assert_problem(response, 503, "database-unavailable")
    assert "10.0.0.8" not in response.text
    assert body["detail"] == "the database does not answer"


async def test_ledger_api_without_token_is_401(anonymous_client: Client) -> None:
    response = await anonymous_client.get("/ledger/ledgers")

    body = assert_problem(response, 401, "unauthorized")
    assert response.headers["www-authenticate"].startswith("Bearer")
    assert "bearer token is required" in body["detail"]


@pytest.mark.parametrize(
    "authorization",
    [f"Bearer {ADMIN_TOKEN}x", "Bearer wrong-token-wrong-token", f"Basic {ADMIN_TOKEN}", "Bearer"],
)
async def test_ledger_api_with_wrong_token_is_401(
    anonymous_client: Client, authorization: str
) -> None:
    response = await anonymous_client.post(
        "/ledger/ledgers",
        json={"id": 99, "name": "never-created"},
        headers={"Authorization": authorization},
    )

    assert_problem(response, 401, "unauthorized")
    assert response.headers["www-authenticate"].startswith("Bearer")


async def test_token_is_accepted(anonymous_client: Client) -> None:
    response = await anonymous_client.get("/ledger/ledgers", headers=AUTH)

    assert response.status_code == 200
    assert isinstance(response.json(), list)


async def test_without_configured_token_every_ledger_call_is_401(database_url: str) -> None:
    app = create_app(Settings(admin_token=None), database_url=database_url)
    async with AsyncTestClient(app=app) as client:
        for token in ("", "None", ADMIN_TOKEN):
            response = await client.get(
                "/ledger/ledgers", headers={"Authorization": f"Bearer {token}"}
            )
            assert_problem(response, 401, "unauthorized")
        assert (await client.get("/health")).status_code == 200


def test_app_needs_a_database_url() -> None:
    with pytest.raises(SettingsError, match="DATABASE_URL"):
        create_app(Settings(admin_token=ADMIN_TOKEN))


async def test_unknown_route_is_404_problem(anonymous_client: Client) -> None:
    response = await anonymous_client.get("/no/such/route")

    assert_problem(response, 404, "not-found")


async def test_wrong_method_is_405_problem(client: Client) -> None:
    response = await client.delete("/ledger/ledgers")

    assert_problem(response, 405, "method-not-allowed")


async def test_unexpected_error_is_500_problem_without_internals(
    client: Client, app: Litestar, monkeypatch: pytest.MonkeyPatch
) -> None:
    async def explode() -> None:
        raise RuntimeError("password=hunter2 at /srv/secret.py line 7")

    monkeypatch.setattr(app.state.ledger, "ledgers", explode)
    response = await client.get("/ledger/ledgers")

    body = assert_problem(response, 500, "internal-server-error")
    assert "hunter2" not in response.text
    assert "secret" not in response.text
    assert body["detail"] == "the server failed to handle the request"
