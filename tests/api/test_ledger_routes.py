"""The ledger's operator API, request to database and back."""

from __future__ import annotations

import uuid
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime

from litestar import Litestar
from litestar.testing import AsyncTestClient

from tests.api.conftest import (
    ISSUANCE_CODE,
    WALLET_CODE,
    Book,
    assert_problem,
    post_transfers,
)

Client = AsyncTestClient[Litestar]
NewLedger = Callable[[], Awaitable[int]]

PENDING, POST_PENDING = 2, 4


async def test_create_ledger_then_list_it(client: Client, new_api_ledger: NewLedger) -> None:
    ledger_id = await new_api_ledger()

    response = await client.get("/ledger/ledgers")

    assert response.status_code == 200
    assert {"id": ledger_id, "name": f"api-test-{ledger_id}", "asset_scale": 0} in response.json()


async def test_creating_the_same_ledger_again_answers_200(
    client: Client, new_api_ledger: NewLedger
) -> None:
    ledger_id = await new_api_ledger()

    response = await client.post(
        "/ledger/ledgers", json={"id": ledger_id, "name": f"api-test-{ledger_id}"}
    )

    assert response.status_code == 200
    assert response.json() == {"id": ledger_id, "name": f"api-test-{ledger_id}", "asset_scale": 0}


async def test_ledger_id_taken_with_other_fields_is_409(
    client: Client, new_api_ledger: NewLedger
) -> None:
    ledger_id = await new_api_ledger()

    response = await client.post(
        "/ledger/ledgers",
        json={"id": ledger_id, "name": f"api-test-{ledger_id}", "asset_scale": 2},
    )

    body = assert_problem(response, 409, "ledger-exists-with-different-fields")
    assert str(ledger_id) in body["detail"]


async def test_ledger_name_taken_by_another_id_is_409(
    client: Client, new_api_ledger: NewLedger
) -> None:
    first, second = await new_api_ledger(), await new_api_ledger()

    response = await client.post(
        "/ledger/ledgers", json={"id": second + 10_000, "name": f"api-test-{first}"}
    )

    assert_problem(response, 409, "ledger-name-taken")
    listed = {d["id"] for d in (await client.get("/ledger/ledgers")).json()}
    assert second + 10_000 not in listed


async def test_invalid_ledger_is_400_naming_the_field(client: Client) -> None:
    response = await client.post("/ledger/ledgers", json={"id": 0, "name": "zero"})

    body = assert_problem(response, 400, "validation-error")
    assert body["errors"][0]["key"] == "id"
    assert ">= 1" in body["errors"][0]["message"]


async def test_account_results_are_per_item(client: Client, book: Book) -> None:
    other_book_id = uuid.uuid4()
    response = await client.post(
        "/ledger/accounts",
        json={
            "accounts": [
                {"id": str(book.alice), "ledger": book.ledger, "code": WALLET_CODE, "flags": 1},
                {"id": str(book.alice), "ledger": book.ledger, "code": ISSUANCE_CODE},
                {"id": str(other_book_id), "ledger": 2_000_000_000, "code": 1},
                {"id": str(uuid.uuid4()), "ledger": book.ledger, "code": 1, "flags": 3},
                {"id": str(uuid.UUID(int=0)), "ledger": book.ledger, "code": 1},
                {"id": str(uuid.uuid4()), "ledger": book.ledger, "code": 1},
            ]
        },
    )

    assert response.status_code == 200
    assert [r["result"] for r in response.json()["results"]] == [
        "exists",
        "exists_with_different_fields",
        "ledger_not_found",
        "flags_are_mutually_exclusive",
        "id_must_not_be_zero",
        "ok",
    ]
    missing = await client.get(f"/ledger/accounts/{other_book_id}")
    assert_problem(missing, 404, "not-found")


async def test_transfer_round_trip(client: Client, book: Book) -> None:
    earn = book.transfer(book.issuance, book.alice, 250, metadata={"reason": "welcome"})

    (result,) = await post_transfers(client, earn)

    assert result["id"] == earn["id"]
    assert result["result"] == "ok"
    assert isinstance(result["timestamp"], int)

    stored = (await client.get(f"/ledger/transfers/{earn['id']}")).json()
    assert {k: stored[k] for k in earn} == earn
    assert stored["timestamp"] == result["timestamp"]

    alice = (await client.get(f"/ledger/accounts/{book.alice}")).json()
    assert (alice["credits_posted"], alice["debits_posted"]) == (250, 0)
    issuance = (await client.get(f"/ledger/accounts/{book.issuance}")).json()
    assert (issuance["credits_posted"], issuance["debits_posted"]) == (0, 250)

    (retry,) = await post_transfers(client, earn)
    assert retry == {**result, "result": "exists"}


async def test_transfer_results_are_per_item(client: Client, book: Book) -> None:
    batch = [
        book.transfer(book.issuance, book.alice, 100),
        book.transfer(book.bob, book.alice, 1),  # bob's wallet is empty
        book.transfer(book.alice, book.bob, 40),
    ]

    results = await post_transfers(client, *batch)

    assert [r["id"] for r in results] == [t["id"] for t in batch]
    assert [r["result"] for r in results] == ["ok", "exceeds_credits", "ok"]
    assert results[1]["timestamp"] is None
    assert_problem(await client.get(f"/ledger/transfers/{batch[1]['id']}"), 404, "not-found")

    totals = (await client.get(f"/ledger/ledgers/{book.ledger}/totals")).json()
    assert totals == {
        "ledger": book.ledger,
        "accounts": 3,
        "debits_pending": 0,
        "debits_posted": 140,
        "credits_pending": 0,
        "credits_posted": 140,
    }


async def test_two_phase_transfer_posts_the_full_amount_with_zero(
    client: Client, book: Book
) -> None:
    hold = book.transfer(book.issuance, book.alice, 70, flags=PENDING)
    post = {"id": str(uuid.uuid4()), "pending_id": hold["id"], "flags": POST_PENDING}

    assert [r["result"] for r in await post_transfers(client, hold)] == ["ok"]
    held = (await client.get(f"/ledger/accounts/{book.alice}")).json()
    assert (held["credits_pending"], held["credits_posted"]) == (70, 0)

    assert [r["result"] for r in await post_transfers(client, post)] == ["ok"]
    posted = (await client.get(f"/ledger/accounts/{book.alice}")).json()
    assert (posted["credits_pending"], posted["credits_posted"]) == (0, 70)


async def test_totals_of_unknown_ledger_is_404(client: Client) -> None:
    response = await client.get("/ledger/ledgers/2000000000/totals")

    assert_problem(response, 404, "not-found")


async def test_unknown_account_and_transfer_are_404(client: Client) -> None:
    unknown = uuid.uuid4()

    for path in (
        f"/ledger/accounts/{unknown}",
        f"/ledger/accounts/{unknown}/transfers",
        f"/ledger/transfers/{unknown}",
    ):
        body = assert_problem(await client.get(path), 404, "not-found")
        assert str(unknown) in body["detail"]


async def test_history_pages_with_cursor(client: Client, book: Book) -> None:
    earns = [book.transfer(book.issuance, book.alice, n) for n in range(1, 6)]
    for earn in earns:  # one request each: five distinct, ordered timestamps
        await post_transfers(client, earn)
    await post_transfers(client, book.transfer(book.issuance, book.bob, 9))  # not alice's

    seen: list[str] = []
    pages = 0
    cursor: str | None = None
    while True:
        params: dict[str, str | int] = {"limit": 2}
        if cursor:
            params["cursor"] = cursor
        response = await client.get(f"/ledger/accounts/{book.alice}/transfers", params=params)
        assert response.status_code == 200
        page = response.json()
        pages += 1
        assert len(page["transfers"]) <= 2
        seen += [t["id"] for t in page["transfers"]]
        cursor = page["next_cursor"]
        if cursor is None:
            break
        assert pages < 5, "the cursor does not advance"

    assert pages == 3
    assert seen == [e["id"] for e in reversed(earns)]


async def test_history_default_page(client: Client, book: Book) -> None:
    await post_transfers(client, book.transfer(book.issuance, book.alice, 3))

    page = (await client.get(f"/ledger/accounts/{book.alice}/transfers")).json()

    assert len(page["transfers"]) == 1
    assert page["next_cursor"] is None


async def test_balance_as_of_recorded_time(client: Client, book: Book) -> None:
    first = book.transfer(book.issuance, book.alice, 100)
    second = book.transfer(book.issuance, book.alice, 20)
    await post_transfers(client, first)
    await post_transfers(client, second)
    first_at = (await client.get(f"/ledger/transfers/{first['id']}")).json()["created_at"]
    second_at = (await client.get(f"/ledger/transfers/{second['id']}")).json()["created_at"]
    assert first_at < second_at

    async def credits_as_of(at: str) -> int:
        response = await client.get(f"/ledger/accounts/{book.alice}", params={"as_of": at})
        assert response.status_code == 200, response.text
        body = response.json()
        assert body["id"] == str(book.alice)
        credits: int = body["credits_posted"]
        return credits

    assert await credits_as_of("2000-01-01T00:00:00Z") == 0
    assert await credits_as_of(first_at) == 100
    assert await credits_as_of(second_at) == 120
    assert await credits_as_of(datetime.now(UTC).isoformat()) == 120


async def test_balance_as_of_effective_time(client: Client, book: Book) -> None:
    backdated = book.transfer(
        book.issuance, book.alice, 30, effective_at="2021-06-01T12:00:00+00:00"
    )
    await post_transfers(client, backdated)
    url = f"/ledger/accounts/{book.alice}"

    effective = await client.get(
        url, params={"as_of": "2022-01-01T00:00:00Z", "basis": "effective"}
    )
    recorded = await client.get(url, params={"as_of": "2022-01-01T00:00:00Z", "basis": "recorded"})
    before = await client.get(url, params={"as_of": "2021-01-01T00:00:00Z", "basis": "effective"})

    assert effective.json()["credits_posted"] == 30
    assert recorded.json()["credits_posted"] == 0
    assert before.json()["credits_posted"] == 0
