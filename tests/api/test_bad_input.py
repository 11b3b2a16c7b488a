"""Every bad input gets the right status and problem, and writes nothing."""

from __future__ import annotations

import uuid
from collections.abc import Awaitable, Callable
from typing import Any

import asyncpg
import pytest
from litestar import Litestar
from litestar.testing import AsyncTestClient

from ledger import BatchTooLarge, LedgerUnavailable
from tests.api.conftest import Book, assert_problem, count_writes, post_transfers

Client = AsyncTestClient[Litestar]


async def test_zero_amount_is_a_per_item_result(
    client: Client, book: Book, pool: asyncpg.Pool
) -> None:
    results = await post_transfers(client, book.transfer(book.issuance, book.alice, 0))

    assert [r["result"] for r in results] == ["amount_must_be_positive"]
    assert (await count_writes(pool, book.ledger))[0] == 0


@pytest.mark.parametrize(
    ("amount", "message"),
    [
        (-1, "Expected `int` >= 0"),
        (2**63, "Expected `int` <= 9223372036854775807"),
        (2**70, "Expected `int` <= 9223372036854775807"),
        ("ten", "Expected `int`, got `str`"),
        (1.5, "Expected `int`, got `float`"),
    ],
)
async def test_bad_amount_is_400_naming_the_field(
    client: Client, book: Book, pool: asyncpg.Pool, amount: Any, message: str
) -> None:
    good = book.transfer(book.issuance, book.alice, 5)
    bad = book.transfer(book.issuance, book.alice, 1) | {"amount": amount}

    response = await client.post("/ledger/transfers", json={"transfers": [good, bad]})

    body = assert_problem(response, 400, "validation-error")
    assert body["errors"] == [{"key": "transfers[1].amount", "message": message, "source": "body"}]
    assert body["detail"] == f"transfers[1].amount: {message}"
    # The whole request is refused: not even the valid transfer is written.
    assert await count_writes(pool, book.ledger) == (0, 0)


async def test_largest_amount_passes_validation(client: Client, book: Book) -> None:
    results = await post_transfers(client, book.transfer(book.alice, book.bob, 2**63 - 1))

    assert [r["result"] for r in results] == ["exceeds_credits"]


async def test_unknown_accounts_are_per_item_results(
    client: Client, book: Book, pool: asyncpg.Pool
) -> None:
    results = await post_transfers(
        client,
        book.transfer(uuid.uuid4(), book.alice, 5),
        book.transfer(book.issuance, uuid.uuid4(), 5),
    )

    assert [r["result"] for r in results] == [
        "debit_account_not_found",
        "credit_account_not_found",
    ]
    assert (await count_writes(pool, book.ledger))[0] == 0


async def test_transfer_in_another_ledger_is_ledger_mismatch(
    client: Client, book: Book, new_api_ledger: Callable[[], Awaitable[int]], pool: asyncpg.Pool
) -> None:
    other = await new_api_ledger()

    results = await post_transfers(
        client, book.transfer(book.issuance, book.alice, 5) | {"ledger": other}
    )

    assert [r["result"] for r in results] == ["ledger_mismatch"]
    assert (await count_writes(pool, book.ledger))[0] == 0
    assert (await count_writes(pool, other))[0] == 0


@pytest.mark.parametrize(
    "body",
    [b"{not json", b'{"transfers": [', b"", b"\xff\xfe", b'{"transfers": [{"id": 1e999}]}'],
)
async def test_malformed_json_is_400(client: Client, body: bytes) -> None:
    response = await client.post(
        "/ledger/transfers", content=body, headers={"Content-Type": "application/json"}
    )

    assert response.status_code == 400, response.text
    assert response.headers["content-type"].startswith("application/problem+json")
    assert response.json()["type"] in (
        "https://coalition.dev/problems/malformed-body",
        "https://coalition.dev/problems/validation-error",
    )


async def test_not_json_at_all_is_malformed_body(client: Client) -> None:
    response = await client.post(
        "/ledger/transfers", content=b"{not json", headers={"Content-Type": "application/json"}
    )

    body = assert_problem(response, 400, "malformed-body")
    assert "malformed" in body["detail"].lower()


async def test_missing_field_is_400_naming_it(client: Client, book: Book) -> None:
    transfer = book.transfer(book.issuance, book.alice, 5)
    del transfer["id"]

    response = await client.post("/ledger/transfers", json={"transfers": [transfer]})

    body = assert_problem(response, 400, "validation-error")
    assert body["errors"][0]["key"] == "transfers[0]"
    assert "`id`" in body["errors"][0]["message"]


async def test_empty_batch_is_400(client: Client) -> None:
    response = await client.post("/ledger/transfers", json={"transfers": []})

    body = assert_problem(response, 400, "validation-error")
    assert body["errors"][0]["key"] == "transfers"


async def test_8001_transfers_are_refused_and_none_written(
    client: Client, book: Book, pool: asyncpg.Pool
) -> None:
    # Each transfer alone would be posted: only the batch's size is wrong.
    batch = [book.transfer(book.issuance, book.alice, 1) for _ in range(8001)]

    response = await client.post("/ledger/transfers", json={"transfers": batch})

    body = assert_problem(response, 400, "validation-error")
    assert body["errors"][0]["key"] == "transfers"
    assert "8000" in body["errors"][0]["message"]
    assert await count_writes(pool, book.ledger) == (0, 0)
    assert_problem(await client.get(f"/ledger/transfers/{batch[0]['id']}"), 404, "not-found")


async def test_8000_transfers_are_taken(client: Client, book: Book, pool: asyncpg.Pool) -> None:
    batch = [book.transfer(book.issuance, book.alice, 1) for _ in range(8000)]

    results = await post_transfers(client, *batch)

    assert len(results) == 8000
    assert {r["result"] for r in results} == {"ok"}
    assert (await count_writes(pool, book.ledger))[0] == 8000


async def test_8001_accounts_are_refused_and_none_written(client: Client, book: Book) -> None:
    accounts = [{"id": str(uuid.uuid4()), "ledger": book.ledger, "code": 1} for _ in range(8001)]

    response = await client.post("/ledger/accounts", json={"accounts": accounts})

    body = assert_problem(response, 400, "validation-error")
    assert body["errors"][0]["key"] == "accounts"
    totals = (await client.get(f"/ledger/ledgers/{book.ledger}/totals")).json()
    assert totals["accounts"] == 3


@pytest.mark.parametrize("cursor", ["abc", "0", "-5", "1.5"])
async def test_invalid_cursor_is_400(client: Client, book: Book, cursor: str) -> None:
    response = await client.get(
        f"/ledger/accounts/{book.alice}/transfers", params={"cursor": cursor}
    )

    body = assert_problem(response, 400, "invalid-cursor")
    assert cursor in body["detail"]


@pytest.mark.parametrize("limit", ["0", "501", "-1", "many"])
async def test_history_limit_out_of_range_is_400(client: Client, book: Book, limit: str) -> None:
    response = await client.get(f"/ledger/accounts/{book.alice}/transfers", params={"limit": limit})

    body = assert_problem(response, 400, "validation-error")
    assert body["errors"][0]["key"] == "limit"
    assert body["errors"][0]["source"] == "query"


@pytest.mark.parametrize(
    ("params", "key"),
    [
        ({"as_of": "2024-01-01T00:00:00"}, "as_of"),  # no offset: which time is it?
        ({"as_of": "yesterday"}, "as_of"),
        ({"as_of": "2024-01-01T00:00:00Z", "basis": "booked"}, "basis"),
    ],
)
async def test_bad_as_of_query_is_400(
    client: Client, book: Book, params: dict[str, str], key: str
) -> None:
    response = await client.get(f"/ledger/accounts/{book.alice}", params=params)

    body = assert_problem(response, 400, "validation-error")
    assert body["errors"][0]["key"] == key


async def test_unavailable_ledger_is_503_and_safe_to_retry(
    client: Client, app: Litestar, book: Book, monkeypatch: pytest.MonkeyPatch
) -> None:
    async def unavailable(transfers: object) -> None:
        raise LedgerUnavailable("batch not confirmed: connection to 10.1.2.3 lost")

    monkeypatch.setattr(app.state.ledger, "create_transfers", unavailable)
    response = await client.post(
        "/ledger/transfers", json={"transfers": [book.transfer(book.issuance, book.alice, 1)]}
    )

    body = assert_problem(response, 503, "ledger-unavailable")
    assert response.headers["retry-after"] == "1"
    assert "retrying" in body["detail"]
    assert "10.1.2.3" not in response.text


async def test_batch_too_large_from_the_ledger_is_413(
    client: Client, app: Litestar, book: Book, monkeypatch: pytest.MonkeyPatch
) -> None:
    async def too_large(accounts: object) -> None:
        raise BatchTooLarge("a batch holds at most 8000 items, got 8001")

    monkeypatch.setattr(app.state.ledger, "create_accounts", too_large)
    response = await client.post(
        "/ledger/accounts", json={"accounts": [{"id": str(uuid.uuid4()), "ledger": 1, "code": 1}]}
    )

    body = assert_problem(response, 413, "batch-too-large")
    assert "8000" in body["detail"]


async def test_lost_database_on_a_read_is_503(
    client: Client, app: Litestar, monkeypatch: pytest.MonkeyPatch
) -> None:
    async def lost(ids: object) -> None:
        raise ConnectionResetError("connection to 10.1.2.3 reset")

    monkeypatch.setattr(app.state.ledger, "lookup_transfers", lost)
    response = await client.get(f"/ledger/transfers/{uuid.uuid4()}")

    assert_problem(response, 503, "database-unavailable")
    assert "10.1.2.3" not in response.text
