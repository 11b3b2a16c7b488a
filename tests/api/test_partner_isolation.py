"""The partner isolation matrix: every route of the partner API (under
``/partner``, walked from the app itself: a new route joins on its own),
tried with another partner's token on partner A's real ids.

- B (another firm of A's program) and C (a firm of another program), each
  with a token of every scope, on A's ids: 404 not-found, exactly as for
  ids that exist nowhere, and nothing of A's changes (its rows in every
  table with a ``partner_id``, the audit trail's length).
- A route that names nothing (a list, the caller's own position) is tried
  with B's token: it answers, and names none of A's ids.
- A's own token on A's ids is not refused (the case is a real request).

A route with no case here fails the test. To add one, put the objects its
case needs in ``SETUPS`` (a function making them for a side, through the
API, with that side's token, and keeping their ids in ``side.ids``), and
the case in ``CASES``.
"""

from __future__ import annotations

import itertools
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

import asyncpg
import pytest
from litestar import Litestar
from litestar.testing import AsyncTestClient

from api.app import create_app
from api.settings import Settings
from core.codes import AccountCode, TransferCode, partner_account_id
from ledger import Ledger, Transfer
from partners.webhook_schemas import delivery_id
from tests.api.conftest import ADMIN_TOKEN, AUTH, PROBLEM_JSON, PROBLEMS, SIGNING_SECRET
from tests.api.test_tenant_isolation import CONTRACT, app_routes
from tests.partners.settlement_helpers import label, months_back
from tests.partners.tokens import api_partner_bearer

Client = AsyncTestClient[Litestar]
_fresh = itertools.count(1)


def fresh(prefix: str) -> str:
    return f"{prefix}-{next(_fresh)}-{uuid.uuid4().hex[:6]}"


@dataclass
class Side:
    """A partner firm, its token (every partner scope), and ids of its objects."""

    program: str
    partner: str
    partner_id: str
    token: dict[str, str]
    pool: asyncpg.Pool | None = None
    ledger: Ledger | None = None
    #: What ``SETUPS`` made for it, by a name its cases know.
    ids: dict[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class World:
    #: Whose objects the others try.
    a: Side
    #: Another firm of A's program.
    b: Side
    #: A firm of another program.
    c: Side


@dataclass(frozen=True)
class Case:
    #: The request (path under ``/partner``, JSON body or None) naming the
    #: side's own objects; write bodies carry fresh ids, so that the same
    #: request on A's own objects succeeds.
    request: Callable[[Side], tuple[str, Any]]
    #: The route names nothing: it answers the token's own data only.
    own_only: bool = False


#: Make a side's objects (through the API, with ``side.token``), keeping
#: their ids in ``side.ids``. Run for A, B and C alike.
SETUPS: list[Callable[[Client, Side], Awaitable[None]]] = []

#: (method, path as the app declares it) -> its case.
CASES: dict[tuple[str, str], Case] = {}


def _own(path: str) -> Case:
    return Case(request=lambda side: (path, None), own_only=True)


async def _posted(client: Client, path: str, side: Side, body: Any = None) -> dict[str, Any]:
    made = await client.post(
        f"/partner{path}", json=body, headers={**side.token, "Idempotency-Key": str(uuid.uuid4())}
    )
    assert made.status_code == 201, made.text
    answer: dict[str, Any] = made.json()
    return answer


async def _webhook_endpoints(client: Client, side: Side) -> None:
    """Two endpoints (one for the delete case alone) and a dead delivery."""
    spec = {"url": "http://127.0.0.1:9/hook", "description": "isolation"}
    side.ids["endpoint"] = (await _posted(client, "/webhook-endpoints", side, spec))["id"]
    side.ids["doomed"] = (await _posted(client, "/webhook-endpoints", side, spec))["id"]
    test_event = f"/webhook-endpoints/{side.ids['endpoint']}/test-events"
    side.ids["delivery"] = (await _posted(client, test_event, side))["id"]
    # Dead-lettered, so that it can be replayed (a pending one is sent anyway).
    assert side.pool is not None
    await side.pool.execute(
        "UPDATE webhook_deliveries SET status = 'dead', next_attempt_at = NULL WHERE id = $1",
        delivery_id(side.ids["delivery"]),
    )


async def _statement(client: Client, side: Side) -> None:
    """An issued statement of two months ago with one line: a contract in
    force since then (moved back, as the first version may start no earlier
    than the firm) and points issued then, straight on the ledger."""
    assert side.pool is not None and side.ledger is not None
    base = f"/programs/{side.program}/partners/{side.partner}"
    member = fresh("m")
    enrolled = await client.post(f"/programs/{side.program}/members", json={"external_id": member})
    assert enrolled.status_code == 201, enrolled.text
    assert (await client.post(f"{base}/contracts", json=CONTRACT)).status_code == 201
    published = await client.post(
        f"{base}/contracts/1/publication", json={"effective_from": datetime.now(UTC).isoformat()}
    )
    assert published.status_code in (200, 201), published.text
    funded = await client.post(
        f"{base}/funding", json={"reference": fresh("block"), "points": 1000, "amount_minor": 1500}
    )
    assert funded.status_code in (200, 201), funded.text
    start = months_back(2)[0]
    partner_id = uuid.UUID(side.partner_id)
    await side.pool.execute(
        "UPDATE partners SET created_at = $2 WHERE id = $1", partner_id, start - timedelta(days=30)
    )
    await side.pool.execute(
        "UPDATE partner_contracts SET effective_from = $2 WHERE partner_id = $1", partner_id, start
    )
    row = await side.pool.fetchrow(
        "SELECT g.id, g.ledger_id, m.wallet_account_id FROM programs g JOIN members m"
        " ON m.program_id = g.id WHERE g.slug = $1 AND m.external_id = $2",
        side.program,
        member,
    )
    assert row is not None
    [outcome] = await side.ledger.create_transfers(
        [
            Transfer(
                id=uuid.uuid4(),
                debit_account_id=partner_account_id(
                    row["id"], partner_id, AccountCode.PARTNER_ISSUANCE
                ),
                credit_account_id=row["wallet_account_id"],
                amount=100,
                ledger=row["ledger_id"],
                code=TransferCode.PARTNER_ISSUANCE,
                effective_at=start + timedelta(days=1),
            )
        ]
    )
    assert outcome.ok, outcome
    issued = await client.post(f"{base}/statements", json={"period": label(2)})
    assert issued.status_code in (200, 201), issued.text
    side.ids["statement"] = issued.json()["id"]


async def _coalition_points(client: Client, side: Side) -> None:
    """A member with points the side issued (its contract and funding come
    from ``_statement``), an issuance, and three holds: one to show and
    capture, one to release, one captured to refund."""
    member = fresh("m")
    enrolled = await client.post(f"/programs/{side.program}/members", json={"external_id": member})
    assert enrolled.status_code == 201, enrolled.text
    side.ids["member"] = member
    issued = await _posted(
        client, "/issuances", side, {"transaction_id": fresh("t"), "member": member, "points": 300}
    )
    side.ids["issuance"] = issued["id"]
    for name in ("hold", "to_release", "captured"):
        hold = {"checkout_id": fresh("c"), "member": member, "points": 20}
        side.ids[name] = (await _posted(client, "/holds", side, hold))["id"]
    captured = await client.post(
        f"/partner/holds/{side.ids['captured']}/capture",
        json={},
        headers={**side.token, "Idempotency-Key": str(uuid.uuid4())},
    )
    assert captured.status_code == 200, captured.text


async def _funding_purchase(client: Client, side: Side) -> None:
    """A block the side bought through Stripe, paid already (its funding the
    one ``_statement`` recorded): these setups run without Stripe, and
    asking for a paid purchase again answers it without asking Stripe."""
    assert side.pool is not None
    side.ids["purchase"] = fresh("block")
    made = await side.pool.execute(
        "INSERT INTO partner_funding_purchases (id, program_id, partner_id, purchase_id, points,"
        " amount_minor, currency, contract_version, status, payment_method_id,"
        " payment_intent_id, funding_id, completed_at)"
        " SELECT $1, program_id, partner_id, $3, 100, 150, 'ZAR', 1, 'succeeded', 'pm_card_visa',"
        " $4, id, now() FROM partner_fundings WHERE partner_id = $2 LIMIT 1",
        uuid.uuid4(),
        uuid.UUID(side.partner_id),
        side.ids["purchase"],
        f"pi_{uuid.uuid4().hex}",
    )
    assert made == "INSERT 0 1", made


def _at(path: str, body: Callable[[], Any] | None = None) -> Case:
    """A case naming the side's objects in ``path`` (``{endpoint}`` and the
    like, from ``side.ids``), with a fresh body per request."""
    return Case(request=lambda side: (path.format(**side.ids), body() if body else None))


def _campaign_body(side: Side) -> dict[str, Any]:
    """A campaign of the side alone (approved by proposing)."""
    now = datetime.now(UTC)
    return {
        "reference": fresh("campaign"),
        "name": "Isolation",
        "starts_at": (now + timedelta(days=1)).isoformat(),
        "ends_at": (now + timedelta(days=8)).isoformat(),
        "participants": [{"partner": side.partner, "share_bp": 10000}],
        "segment": {"kind": "all"},
        "rules": {"points_per_currency_unit": 1},
        "budget_points": 100,
    }


async def _campaigns(client: Client, side: Side) -> None:
    """Two campaigns of the side: one to stop, one for every other case."""
    for name in ("campaign", "campaign_to_stop"):
        side.ids[name] = (await _posted(client, "/campaigns", side, _campaign_body(side)))["id"]


SETUPS.extend([_webhook_endpoints, _statement, _coalition_points, _funding_purchase, _campaigns])
_SINCE = "2020-01-01T00:00:00Z"
CASES |= {
    ("GET", "/partner/balance"): _own("/balance"),
    ("GET", "/partner/issuances"): _own("/issuances"),
    ("POST", "/partner/issuances"): Case(
        request=lambda side: (
            "/issuances",
            {"transaction_id": fresh("t"), "member": side.ids["member"], "points": 1},
        ),
        own_only=True,
    ),
    ("GET", "/partner/issuances/{issuance_id}"): _at("/issuances/{issuance}"),
    ("POST", "/partner/holds"): Case(
        request=lambda side: (
            "/holds",
            {"checkout_id": fresh("c"), "member": side.ids["member"], "points": 1},
        ),
        own_only=True,
    ),
    ("GET", "/partner/holds"): _own("/holds"),
    ("GET", "/partner/holds/{hold_id}"): _at("/holds/{hold}"),
    ("POST", "/partner/holds/{hold_id}/capture"): _at("/holds/{hold}/capture", lambda: {}),
    ("POST", "/partner/holds/{hold_id}/release"): _at("/holds/{to_release}/release"),
    ("POST", "/partner/holds/{hold_id}/refunds"): _at(
        "/holds/{captured}/refunds", lambda: {"refund_id": fresh("r"), "points": 1}
    ),
    ("GET", "/partner/funding/purchases"): _own("/funding/purchases"),
    ("POST", "/partner/funding/purchases"): Case(
        # The caller's own paid purchase again: answered, Stripe not asked.
        request=lambda side: (
            "/funding/purchases",
            {"purchase_id": side.ids["purchase"], "points": 100},
        ),
        own_only=True,
    ),
    ("GET", "/partner/funding/purchases/{purchase_id}"): _at("/funding/purchases/{purchase}"),
    ("GET", "/partner/position"): _own("/position"),
    ("GET", "/partner/statements"): _own("/statements"),
    ("GET", "/partner/statements/{statement_id}"): _at("/statements/{statement}"),
    ("GET", "/partner/statements/{statement_id}/lines/{line}/transfers"): _at(
        "/statements/{statement}/lines/1/transfers"
    ),
    ("GET", "/partner/webhook-endpoints"): _own("/webhook-endpoints"),
    ("POST", "/partner/webhook-endpoints"): Case(
        request=lambda side: ("/webhook-endpoints", {"url": "http://127.0.0.1:9/new"}),
        own_only=True,
    ),
    ("GET", "/partner/webhook-endpoints/{endpoint_id}"): _at("/webhook-endpoints/{endpoint}"),
    ("PATCH", "/partner/webhook-endpoints/{endpoint_id}"): _at(
        "/webhook-endpoints/{endpoint}", lambda: {"description": fresh("changed")}
    ),
    ("DELETE", "/partner/webhook-endpoints/{endpoint_id}"): _at("/webhook-endpoints/{doomed}"),
    ("GET", "/partner/webhook-endpoints/{endpoint_id}/deliveries"): _at(
        "/webhook-endpoints/{endpoint}/deliveries"
    ),
    ("POST", "/partner/webhook-endpoints/{endpoint_id}/replays"): _at(
        "/webhook-endpoints/{endpoint}/replays", lambda: {"since": _SINCE}
    ),
    ("POST", "/partner/webhook-endpoints/{endpoint_id}/secret-rotations"): _at(
        "/webhook-endpoints/{endpoint}/secret-rotations", lambda: {"overlap_seconds": 0}
    ),
    ("POST", "/partner/webhook-endpoints/{endpoint_id}/test-events"): _at(
        "/webhook-endpoints/{endpoint}/test-events"
    ),
    ("GET", "/partner/webhook-deliveries/{message_id}"): _at("/webhook-deliveries/{delivery}"),
    ("POST", "/partner/webhook-deliveries/{message_id}/replays"): _at(
        "/webhook-deliveries/{delivery}/replays"
    ),
    ("GET", "/partner/campaigns"): _own("/campaigns"),
    ("POST", "/partner/campaigns"): Case(
        request=lambda side: ("/campaigns", _campaign_body(side)), own_only=True
    ),
    ("GET", "/partner/campaigns/{campaign_id}"): _at("/campaigns/{campaign}"),
    ("POST", "/partner/campaigns/{campaign_id}/approvals"): _at("/campaigns/{campaign}/approvals"),
    ("POST", "/partner/campaigns/{campaign_id}/stop"): _at("/campaigns/{campaign_to_stop}/stop"),
    ("GET", "/partner/campaigns/{campaign_id}/attribution"): _at(
        "/campaigns/{campaign}/attribution"
    ),
}


_SHARING = "/data-sharing/agreements"


def _sharing_body(side: Side) -> dict[str, Any]:
    return {
        "counterparty": side.ids["sharing_peer"],
        "purpose": "Isolation",
        "direction": "both",
        "fields": ["email"],
        "expires_at": (datetime.now(UTC) + timedelta(days=30)).isoformat(),
    }


async def _data_sharing(client: Client, side: Side) -> None:
    """Two active agreements of the side with a peer firm of its program
    (one to revoke, one for every other case), both ways."""
    peer = fresh("peer")
    made = await client.post(
        f"/programs/{side.program}/partners",
        json={
            "slug": peer,
            "name": "Peer",
            "legal_name": "Peer Ltd",
            "country": "ZA",
            "status": "active",
        },
    )
    assert made.status_code == 201, made.text
    side.ids["sharing_peer"] = peer
    peer_token = await api_partner_bearer(client, side.program, peer, scopes=("data:share",))
    for name in ("agreement", "agreement_to_revoke"):
        side.ids[name] = (await _posted(client, _SHARING, side, _sharing_body(side)))["id"]
        for token in (side.token, peer_token):
            opted = await client.post(
                f"/partner{_SHARING}/{side.ids[name]}/opt-in",
                headers={**token, "Idempotency-Key": str(uuid.uuid4())},
            )
            assert opted.status_code == 200, opted.text


SETUPS.append(_data_sharing)
CASES |= {
    ("GET", "/partner/data-sharing/agreements"): _own(_SHARING),
    ("POST", "/partner/data-sharing/agreements"): Case(
        request=lambda side: (_SHARING, _sharing_body(side)), own_only=True
    ),
    ("GET", "/partner/data-sharing/agreements/{agreement_id}"): _at(_SHARING + "/{agreement}"),
    ("POST", "/partner/data-sharing/agreements/{agreement_id}/opt-in"): _at(
        _SHARING + "/{agreement}/opt-in"
    ),
    ("POST", "/partner/data-sharing/agreements/{agreement_id}/revoke"): _at(
        _SHARING + "/{agreement_to_revoke}/revoke"
    ),
    ("GET", "/partner/data-sharing/agreements/{agreement_id}/members"): _at(
        _SHARING + "/{agreement}/members"
    ),
    ("GET", "/partner/data-sharing/agreements/{agreement_id}/export"): _at(
        _SHARING + "/{agreement}/export"
    ),
    ("POST", "/partner/data-sharing/agreements/{agreement_id}/pushes"): _at(
        _SHARING + "/{agreement}/pushes", lambda: {"members": [fresh("m")]}
    ),
    ("GET", "/partner/data-sharing/agreements/{agreement_id}/disclosures"): _at(
        _SHARING + "/{agreement}/disclosures"
    ),
}


def _overlap_list() -> dict[str, Any]:
    return {
        "identifier_kind": "email",
        "records": [{"identifier": f"buyer-{n}@example.com"} for n in range(5)],
    }


async def _overlaps(client: Client, side: Side) -> None:
    """Overlap matching under the side's agreement: its list, its peer's,
    and a count run of the side's."""
    base = _SHARING + "/" + side.ids["agreement"]
    side.ids["overlap_upload"] = (
        await _posted(client, base + "/overlap-uploads", side, _overlap_list())
    )["id"]
    peer_token = await api_partner_bearer(
        client, side.program, side.ids["sharing_peer"], scopes=("data:match",)
    )
    peer = await client.post(
        f"/partner{base}/overlap-uploads",
        json=_overlap_list(),
        headers={**peer_token, "Idempotency-Key": str(uuid.uuid4())},
    )
    assert peer.status_code == 201, peer.text
    side.ids["overlap_run"] = (await _posted(client, base + "/overlap-runs", side, {}))["id"]


SETUPS.append(_overlaps)
_OVERLAP = _SHARING + "/{agreement}"
CASES |= {
    ("GET", "/partner/data-sharing/agreements/{agreement_id}/overlap-key"): _at(
        _OVERLAP + "/overlap-key"
    ),
    ("POST", "/partner/data-sharing/agreements/{agreement_id}/overlap-key/rotations"): _at(
        # Another agreement: the new epoch would leave the lists of the
        # other cases unmatched.
        _SHARING + "/{agreement_to_revoke}/overlap-key/rotations"
    ),
    ("POST", "/partner/data-sharing/agreements/{agreement_id}/overlap-uploads"): _at(
        _OVERLAP + "/overlap-uploads", _overlap_list
    ),
    ("GET", "/partner/data-sharing/agreements/{agreement_id}/overlap-uploads/{upload_id}"): _at(
        _OVERLAP + "/overlap-uploads/{overlap_upload}"
    ),
    ("POST", "/partner/data-sharing/agreements/{agreement_id}/overlap-runs"): _at(
        _OVERLAP + "/overlap-runs", dict
    ),
    ("GET", "/partner/data-sharing/agreements/{agreement_id}/overlap-runs/{run_id}"): _at(
        _OVERLAP + "/overlap-runs/{overlap_run}"
    ),
}

_MDF_PROOF = [{"url": "https://files.example.com/proof.pdf", "description": "Invoice"}]


def _mdf_fund_body(partner: str, **fields: Any) -> dict[str, Any]:
    today = datetime.now(UTC).date()
    return {
        "reference": fresh("mdf"),
        "partner": partner,
        "name": "Isolation fund",
        "period_start": (today - timedelta(days=1)).isoformat(),
        "period_end": (today + timedelta(days=30)).isoformat(),
        "unit": "points",
        "amount": 100_000,
    } | fields


def _mdf_activity_body() -> dict[str, Any]:
    today = datetime.now(UTC).date()
    return {
        "title": "Isolation activity",
        "plan": "A plan",
        "starts_on": today.isoformat(),
        "ends_on": today.isoformat(),
        "amount": 1000,
    }


async def _sent(client: Client, path: str, token: dict[str, str], body: Any = None) -> Any:
    answer = await client.post(
        f"/partner{path}", json=body, headers={**token, "Idempotency-Key": str(uuid.uuid4())}
    )
    assert answer.status_code in (200, 201), answer.text
    return answer.json()


async def _mdf(client: Client, side: Side) -> None:
    """Market development funds of the side both ways: a fund the operator
    allocated to it (an approved activity, a draft claim and one to
    submit), and a money fund it allocated to a recipient firm of its
    program (activities to approve and refuse, an approved one with
    submitted claims to approve and refuse)."""
    own = await client.post(
        f"/programs/{side.program}/mdf/funds", json=_mdf_fund_body(side.partner)
    )
    assert own.status_code == 201, own.text
    side.ids["mdf_fund"] = own.json()["id"]
    activity = await _sent(
        client, f"/mdf/funds/{side.ids['mdf_fund']}/activities", side.token, _mdf_activity_body()
    )
    side.ids["mdf_activity"] = activity["id"]
    approved = await client.post(
        f"/programs/{side.program}/mdf/activities/{activity['id']}/approval", json={}
    )
    assert approved.status_code == 200, approved.text
    claims = f"/mdf/activities/{activity['id']}/claims"
    side.ids["mdf_draft"] = (
        await _sent(client, claims, side.token, {"amount": 10, "description": "Draft"})
    )["id"]
    side.ids["mdf_to_submit"] = (
        await _sent(
            client, claims, side.token, {"amount": 10, "description": "Sent", "proof": _MDF_PROOF}
        )
    )["id"]
    recipient = fresh("mdf-recipient")
    made = await client.post(
        f"/programs/{side.program}/partners",
        json={
            "slug": recipient,
            "name": "Recipient",
            "legal_name": "Recipient Ltd",
            "country": "ZA",
            "status": "active",
        },
    )
    assert made.status_code == 201, made.text
    side.ids["mdf_recipient"] = recipient
    recipient_token = await api_partner_bearer(client, side.program, recipient)
    funded = await _sent(
        client, "/mdf/funds", side.token, _mdf_fund_body(recipient, unit="money", currency="ZAR")
    )
    side.ids["mdf_funded"] = funded["id"]
    for name in ("mdf_to_approve", "mdf_to_refuse", "mdf_claimed"):
        side.ids[name] = (
            await _sent(
                client,
                f"/mdf/funds/{funded['id']}/activities",
                recipient_token,
                _mdf_activity_body(),
            )
        )["id"]
    await _sent(client, f"/mdf/activities/{side.ids['mdf_claimed']}/approval", side.token, {})
    for name in ("mdf_claim_to_approve", "mdf_claim_to_refuse"):
        side.ids[name] = (
            await _sent(
                client,
                f"/mdf/activities/{side.ids['mdf_claimed']}/claims",
                recipient_token,
                {"amount": 10, "description": "Spent", "proof": _MDF_PROOF, "submit": True},
            )
        )["id"]


SETUPS.append(_mdf)
CASES |= {
    ("GET", "/partner/mdf/funds"): _own("/mdf/funds"),
    ("POST", "/partner/mdf/funds"): Case(
        request=lambda side: ("/mdf/funds", _mdf_fund_body(side.ids["mdf_recipient"])),
        own_only=True,
    ),
    ("GET", "/partner/mdf/funds/{fund_id}"): _at("/mdf/funds/{mdf_fund}"),
    ("GET", "/partner/mdf/funds/{fund_id}/reconciliation"): _at(
        "/mdf/funds/{mdf_funded}/reconciliation"
    ),
    ("POST", "/partner/mdf/funds/{fund_id}/activities"): _at(
        "/mdf/funds/{mdf_fund}/activities", _mdf_activity_body
    ),
    ("GET", "/partner/mdf/funds/{fund_id}/activities"): _at("/mdf/funds/{mdf_funded}/activities"),
    ("GET", "/partner/mdf/activities/{activity_id}"): _at("/mdf/activities/{mdf_activity}"),
    ("POST", "/partner/mdf/activities/{activity_id}/approval"): _at(
        "/mdf/activities/{mdf_to_approve}/approval", lambda: {}
    ),
    ("POST", "/partner/mdf/activities/{activity_id}/refusal"): _at(
        "/mdf/activities/{mdf_to_refuse}/refusal", lambda: {"reason": "Not this time"}
    ),
    ("POST", "/partner/mdf/activities/{activity_id}/claims"): _at(
        "/mdf/activities/{mdf_activity}/claims", lambda: {"amount": 1, "description": "More"}
    ),
    ("GET", "/partner/mdf/activities/{activity_id}/claims"): _at(
        "/mdf/activities/{mdf_claimed}/claims"
    ),
    ("GET", "/partner/mdf/claims/{claim_id}"): _at("/mdf/claims/{mdf_draft}"),
    ("PATCH", "/partner/mdf/claims/{claim_id}"): _at(
        "/mdf/claims/{mdf_draft}", lambda: {"description": fresh("changed")}
    ),
    ("POST", "/partner/mdf/claims/{claim_id}/submission"): _at(
        "/mdf/claims/{mdf_to_submit}/submission"
    ),
    ("POST", "/partner/mdf/claims/{claim_id}/approval"): _at(
        "/mdf/claims/{mdf_claim_to_approve}/approval"
    ),
    ("POST", "/partner/mdf/claims/{claim_id}/refusal"): _at(
        "/mdf/claims/{mdf_claim_to_refuse}/refusal", lambda: {"reason": "Blurry"}
    ),
}


def _lead_body(side: Side, **fields: Any) -> dict[str, Any]:
    """A kept registration of a company nobody else registers."""
    return {
        "reference": fresh("lead"),
        "company": {"name": fresh("Company"), "domain": f"{fresh('company')}.example"},
        "contact": {"name": "Thandi"},
        "estimated_value_minor": 1000,
        "currency": "ZAR",
        "territory": "ZA-WC",
        "products": ["fleet"],
        "lawful_basis": "contract",
    } | fields


async def _leads(client: Client, side: Side) -> None:
    """Two kept leads of the side (one to extend, one to report on), and
    four leads a referrer firm of its program shares, each offered to the
    side alone (a product only it sells): to show, accept, decline, and one
    accepted already to report on."""
    base = f"/programs/{side.program}"
    routing = {
        "weights": dict.fromkeys(
            ("territory", "capability", "tier", "capacity", "acceptance_rate", "response_time"), 1
        ),
        "tier_grades": {},
        "untiered_grade": 500,
        "offer_sla_seconds": 86400,
        "exclusivity_days": 90,
    }
    saved = await client.post(f"{base}/leads/routing-versions", json=routing)
    assert saved.status_code == 201, saved.text
    product = fresh("product")
    profile = {"territories": ["ZA-WC"], "capabilities": [product], "capacity": 100}
    made = await client.put(f"{base}/partners/{side.partner}/lead-profile", json=profile)
    assert made.status_code == 200, made.text
    for name in ("lead", "lead_to_report"):
        side.ids[name] = (await _posted(client, "/leads", side, _lead_body(side)))["id"]
    referrer = fresh("referrer")
    made = await client.post(
        f"{base}/partners",
        json={
            "slug": referrer,
            "name": "Referrer",
            "legal_name": "Referrer Ltd",
            "country": "ZA",
            "status": "active",
        },
    )
    assert made.status_code == 201, made.text
    token = await api_partner_bearer(client, side.program, referrer, scopes=("leads:share",))
    shared = Side(program=side.program, partner=referrer, partner_id="", token=token)
    for name in ("offer", "offer_to_accept", "offer_to_decline", "offer_accepted"):
        lead = await _posted(
            client, "/leads", shared, _lead_body(shared, shared=True, products=[product])
        )
        assert lead["status"] == "offered", lead
        found = await client.get(
            "/partner/lead-offers", params={"status": "offered"}, headers=side.token
        )
        [offer] = [o for o in found.json()["items"] if o["lead_id"] == lead["id"]]
        side.ids[name] = offer["id"]
    accepted = await client.post(
        f"/partner/lead-offers/{side.ids['offer_accepted']}/acceptance",
        headers={**side.token, "Idempotency-Key": str(uuid.uuid4())},
    )
    assert accepted.status_code == 200, accepted.text


SETUPS.append(_leads)
CASES |= {
    ("POST", "/partner/leads"): Case(
        request=lambda side: ("/leads", _lead_body(side)), own_only=True
    ),
    ("GET", "/partner/leads"): _own("/leads"),
    ("GET", "/partner/leads/{lead_id}"): _at("/leads/{lead}"),
    ("POST", "/partner/leads/{lead_id}/extensions"): _at(
        "/leads/{lead}/extensions", lambda: {"days": 10, "reason": "procurement"}
    ),
    ("POST", "/partner/leads/{lead_id}/status"): _at(
        "/leads/{lead_to_report}/status", lambda: {"status": "contacted"}
    ),
    ("GET", "/partner/lead-offers"): _own("/lead-offers"),
    ("GET", "/partner/lead-offers/{offer_id}"): _at("/lead-offers/{offer}"),
    ("POST", "/partner/lead-offers/{offer_id}/acceptance"): _at(
        "/lead-offers/{offer_to_accept}/acceptance"
    ),
    ("POST", "/partner/lead-offers/{offer_id}/decline"): _at(
        "/lead-offers/{offer_to_decline}/decline", lambda: {"reason": "not for us"}
    ),
    ("POST", "/partner/lead-offers/{offer_id}/status"): _at(
        "/lead-offers/{offer_accepted}/status", lambda: {"status": "contacted"}
    ),
}


@pytest.fixture(scope="module")
def app(database_url: str) -> Litestar:
    settings = Settings(
        admin_token=ADMIN_TOKEN,
        signing_secret=SIGNING_SECRET,
        sweep_interval=0,
        partner_rate_limit=1_000_000,
        token_rate_limit=100_000,
        webhook_private_targets=True,
    )
    return create_app(settings, database_url=database_url)


@pytest.fixture(scope="module")
async def client(app: Litestar) -> AsyncIterator[Client]:
    async with AsyncTestClient(app=app) as client:
        client.headers.update(AUTH)
        yield client


async def _program(client: Client) -> str:
    slug = fresh("coalition")
    opened = await client.post(
        "/programs",
        json={"slug": slug, "name": "Coalition", "currency": "ZAR", "point_value_minor": "1"},
    )
    assert opened.status_code == 201, opened.text
    return slug


async def _side(client: Client, pool: asyncpg.Pool, ledger: Ledger, program: str) -> Side:
    slug = fresh("firm")
    made = await client.post(
        f"/programs/{program}/partners",
        json={
            "slug": slug,
            "name": "Fuel & Go",
            "legal_name": "Fuel & Go Ltd",
            "country": "ZA",
            "status": "active",
        },
    )
    assert made.status_code == 201, made.text
    partner_id = await pool.fetchval(
        "SELECT p.id FROM partners p JOIN programs g ON g.id = p.program_id"
        " WHERE g.slug = $1 AND p.slug = $2",
        program,
        slug,
    )
    token = await api_partner_bearer(client, program, slug)
    side = Side(
        program=program,
        partner=slug,
        partner_id=str(partner_id),
        token=token,
        pool=pool,
        ledger=ledger,
    )
    for setup in SETUPS:
        await setup(client, side)
    return side


@pytest.fixture(scope="module")
async def world(client: Client, pool: asyncpg.Pool, ledger: Ledger) -> World:
    program, elsewhere = await _program(client), await _program(client)
    return World(
        a=await _side(client, pool, ledger, program),
        b=await _side(client, pool, ledger, program),
        c=await _side(client, pool, ledger, elsewhere),
    )


def partner_routes(app: Litestar) -> set[tuple[str, str]]:
    return {route for route in app_routes(app) if route[1].startswith("/partner/")}


def test_every_partner_route_has_an_isolation_case(app: Litestar) -> None:
    routes = partner_routes(app)
    missing = sorted(routes - set(CASES))
    assert not missing, f"partner routes without an isolation case: {missing}"
    stale = sorted(set(CASES) - routes)
    assert not stale, f"cases of routes the app no longer has: {stale}"


async def snapshot(pool: asyncpg.Pool, side: Side) -> dict[str, Any]:
    """All that is the side's: its rows in every table with a partner_id
    (its firm's), and the length of the audit trail."""
    tables = await pool.fetch(
        "SELECT table_name FROM information_schema.columns WHERE table_schema = 'public'"
        " AND column_name = 'partner_id' ORDER BY table_name"
    )
    found: dict[str, Any] = {}
    for (table,) in tables:
        found[table] = await pool.fetch(
            f"SELECT to_jsonb(t)::text AS row FROM {table} t WHERE partner_id = $1 ORDER BY 1",
            uuid.UUID(side.partner_id),
        )
    found["partners"] = await pool.fetch(
        "SELECT to_jsonb(t)::text FROM partners t WHERE id = $1", uuid.UUID(side.partner_id)
    )
    found["all audit lines"] = await pool.fetchval("SELECT count(*) FROM audit_events")
    return found


async def send(client: Client, method: str, path: str, body: Any, token: dict[str, str]) -> Any:
    headers = {**token, "Idempotency-Key": str(uuid.uuid4())}
    return await client.request(method, f"/partner{path}", json=body, headers=headers)


def _nowhere(real: str) -> str:
    """An id of the same form as ``real`` that exists nowhere."""
    prefix, _, _ = real.rpartition("_")
    return f"{prefix}_{uuid.uuid4().hex}" if prefix else str(uuid.uuid4())


def assert_not_found(response: Any) -> None:
    assert response.status_code == 404, response.text
    assert response.headers["content-type"].startswith(PROBLEM_JSON)
    assert response.json()["type"] == PROBLEMS + "not-found"


@pytest.mark.parametrize("route", sorted(CASES), ids=" ".join)
async def test_another_partners_token_finds_nothing_of_a(
    client: Client, pool: asyncpg.Pool, world: World, route: tuple[str, str]
) -> None:
    method, _ = route
    case = CASES[route]
    for other in (world.b, world.c):
        before = await snapshot(pool, world.a)
        if case.own_only:
            path, body = case.request(other)
            answer = await send(client, method, path, body, other.token)
            assert answer.status_code < 300, answer.text
            leaked = [v for v in [world.a.partner_id, *world.a.ids.values()] if v in answer.text]
            assert not leaked, f"{route} answered A's ids to another partner: {leaked}"
        else:
            path, body = case.request(world.a)
            across = await send(client, method, path, body, other.token)
            assert_not_found(across)
            # Exactly what ids that exist nowhere answer.
            nowhere = Side(
                program=world.a.program,
                partner=world.a.partner,
                partner_id=str(uuid.uuid4()),
                token=other.token,
                ids={name: _nowhere(value) for name, value in world.a.ids.items()},
            )
            path_nowhere, body_nowhere = case.request(nowhere)
            missing = await send(client, method, path_nowhere, body_nowhere, other.token)
            assert missing.status_code == across.status_code, missing.text
        after = await snapshot(pool, world.a)
        if case.own_only:
            # A write of the caller's own adds its own audit line; A's rows
            # are what must stay.
            before.pop("all audit lines"), after.pop("all audit lines")
        assert after == before, f"{route} changed A's data"
    if not case.own_only:
        path, body = case.request(world.a)
        own = await send(client, method, path, body, world.a.token)
        assert own.status_code < 300, own.text


async def test_a_partner_token_opens_no_operator_route(
    client: Client, pool: asyncpg.Pool, world: World
) -> None:
    before = await snapshot(pool, world.a)
    a = world.a
    for method, path in (
        ("GET", f"/programs/{a.program}/partners/{a.partner}"),
        ("GET", f"/programs/{a.program}/partners/{a.partner}/clients"),
        ("POST", f"/programs/{a.program}/partners/{a.partner}/clients"),
        ("POST", "/partner-signing-keys/rotations"),
    ):
        refused = await client.request(
            method, path, json={"name": "x", "scopes": ["points:issue"]}, headers=a.token
        )
        assert refused.status_code == 401, (method, path, refused.text)
    assert await snapshot(pool, world.a) == before
