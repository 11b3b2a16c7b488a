"""The member app's history names the order of every settled movement: the
post of a purchase's earning, of a threshold bonus, and the repayment of a
debt carry the order id (and the threshold's code) like their pending."""

from __future__ import annotations

import time
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta

import jwt
import pytest
from litestar import Litestar
from litestar.testing import AsyncTestClient
from sqlalchemy.ext.asyncio import AsyncSession

from api.app import create_app
from api.settings import Settings
from core.codes import TransferCode, movement_name
from core.principal import system
from ledger import Ledger
from rewards.purchase_recording import record_purchase
from rewards.purchases import PurchaseEvent
from rewards.settlement import settle_matured_earnings
from rewards.tiers import ThresholdSpec, define_threshold
from tests.api.conftest import ADMIN_TOKEN
from tests.conftest import NewProgram
from tests.rewards.test_purchases import enrol, with_rules

SECRET = "a-development-secret-of-32-chars!"


@pytest.fixture(scope="module")
async def member_client(database_url: str) -> AsyncIterator[AsyncTestClient[Litestar]]:
    settings = Settings(
        admin_token=ADMIN_TOKEN, member_jwt_secret=SECRET, member_rate_limit=1000, sweep_interval=0
    )
    async with AsyncTestClient(app=create_app(settings, database_url=database_url)) as client:
        yield client


def member_token(program: str, member: str) -> dict[str, str]:
    claims = {
        "sub": member,
        "program": program,
        "aud": "coalition-members",
        "exp": int(time.time()) + 300,
    }
    return {"Authorization": f"Bearer {jwt.encode(claims, SECRET, algorithm='HS256')}"}


async def test_settled_earnings_and_bonuses_show_their_order(
    member_client: AsyncTestClient[Litestar],
    session: AsyncSession,
    ledger: Ledger,
    new_program: NewProgram,
) -> None:
    program = await new_program(return_window_days=14)
    now = datetime.now(UTC).replace(microsecond=0)
    await with_rules(session, program, "1", now - timedelta(days=1))
    await define_threshold(
        session,
        program,
        ThresholdSpec(code="spend-5k", amount_minor=5_000, bonus_points=500),
        principal=system("test"),
    )
    await session.commit()
    member = await enrol(session, ledger, program, "ivy")
    event = PurchaseEvent(
        member="ivy", order_id="I-1", amount_minor=6_000, currency="ZAR", occurred_at=now
    )
    await record_purchase(session, ledger, program, event, now, principal=system("test"))
    await session.commit()
    headers = member_token(program.slug, "ivy")

    pending = (await member_client.get("/me/transactions", headers=headers)).json()["movements"]
    assert sorted((m["state"], m["order_id"]) for m in pending) == [
        ("pending", "I-1"),
        ("pending", "I-1"),
    ]
    await settle_matured_earnings(session, ledger, now + timedelta(days=14), program=program)
    await session.commit()
    answer = await member_client.get("/me/transactions", headers=headers)
    assert answer.status_code == 200, answer.text
    settled = answer.json()["movements"]
    assert sorted((m["kind"], m["points"], m["state"], m["order_id"]) for m in settled) == sorted(
        [
            (movement_name(TransferCode.PURCHASE_EARN), 60, "posted", "I-1"),
            (movement_name(TransferCode.THRESHOLD_BONUS), 500, "posted", "I-1"),
        ]
    )
    # The threshold's code travels with the bonus's post, for reports.
    page = await ledger.history(member.wallet_account_id, limit=10)
    bonus_posts = [
        t.metadata for t in page.transfers if t.code == TransferCode.THRESHOLD_BONUS and t.flags & 4
    ]
    assert bonus_posts == [{"threshold": "spend-5k", "order_id": "I-1"}]
