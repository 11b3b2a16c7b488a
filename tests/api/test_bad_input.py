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
from tests.api.conftest import Book, assert_problem, count_writes, post_transfers, purchase

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


# Bounds of what stores each field (ledger.bounds), checked at the edge.


@pytest.mark.parametrize(
    ("fields", "key", "message"),
    [
        # Strict JSON: a string is not an integer, even one that reads as one.
        ({"amount": "10"}, "transfers[0].amount", "Expected `int`, got `str`"),
        ({"code": "1"}, "transfers[0].code", "Expected `int | null`, got `str`"),
        # Known bits only: 16 is unknown, 65536 the writer's private bit.
        ({"flags": 16}, "transfers[0].flags", "Expected `int` <= 15"),
        ({"flags": 1 << 16}, "transfers[0].flags", "Expected `int` <= 15"),
        ({"flags": -1}, "transfers[0].flags", "Expected `int` >= 0"),
        ({"timeout": 2**31}, "transfers[0].timeout", "Expected `int` <= 2147483647"),
        ({"ledger": 2**40}, "transfers[0].ledger", "Expected `int` <= 2147483647"),
        ({"colour": "red"}, "transfers[0]", "Object contains unknown field `colour`"),
        # As for as_of: a time without its offset is ambiguous.
        ({"effective_at": "2024-01-01T00:00:00"}, "transfers[0].effective_at", "Expected"),
        (
            {"effective_at": "0001-01-01T00:00:00+14:00"},
            "transfers[0].effective_at",
            "Expected a datetime in the years 1900 to 9998",
        ),
        (
            {"metadata": {"order": "a\x00b"}},
            "transfers[0].metadata",
            "Expected no NUL character in the document's keys and strings",
        ),
    ],
)
async def test_transfer_out_of_bounds_is_400_and_nothing_written(
    client: Client, book: Book, pool: asyncpg.Pool, fields: dict[str, Any], key: str, message: str
) -> None:
    good = book.transfer(book.issuance, book.alice, 5)
    bad = book.transfer(book.issuance, book.alice, 1) | fields

    response = await client.post("/ledger/transfers", json={"transfers": [bad, good]})

    body = assert_problem(response, 400, "validation-error")
    assert body["errors"][0]["key"] == key
    assert body["errors"][0]["message"].startswith(message)
    assert body["errors"][0]["source"] == "body"
    assert await count_writes(pool, book.ledger) == (0, 0)


async def test_metadata_nested_too_deep_is_refused(client: Client, book: Book) -> None:
    nested: Any = 1
    for _ in range(17):
        nested = {"a": nested}
    transfer = book.transfer(book.issuance, book.alice, 5, metadata=nested)

    response = await client.post("/ledger/transfers", json={"transfers": [transfer]})

    body = assert_problem(response, 400, "validation-error")
    assert "nested at most 16 deep" in body["detail"]


async def test_json_nested_5000_deep_is_400(client: Client) -> None:
    # Deeper than the decoder's recursion: malformed, never a 500.
    body = b'{"transfers": [{"metadata": {"a": ' + b"[" * 5000 + b"]" * 5000 + b"}}]}"

    response = await client.post(
        "/ledger/transfers", content=body, headers={"Content-Type": "application/json"}
    )

    assert_problem(response, 400, "malformed-body")


@pytest.mark.parametrize(("flags", "status"), [(4, 400), (-1, 400), ("1", 400), (3, 200)])
async def test_account_flags_beyond_the_known_bits_are_400(
    client: Client, book: Book, flags: Any, status: int
) -> None:
    account = {"id": str(uuid.uuid4()), "ledger": book.ledger, "code": 1, "flags": flags}

    response = await client.post("/ledger/accounts", json={"accounts": [account]})

    assert response.status_code == status, response.text
    if status == 200:  # both bounds at once: a per-item result
        assert response.json()["results"][0]["result"] == "flags_are_mutually_exclusive"
    else:
        assert_problem(response, 400, "validation-error")


@pytest.mark.parametrize(
    "as_of", ["0001-01-01T00:00:00+14:00", "9999-12-31T23:59:59-14:00", "1899-12-31T00:00:00Z"]
)
async def test_as_of_out_of_range_is_400(client: Client, book: Book, as_of: str) -> None:
    response = await client.get(f"/ledger/accounts/{book.alice}", params={"as_of": as_of})

    body = assert_problem(response, 400, "validation-error")
    assert body["errors"] == [
        {
            "key": "as_of",
            "source": "query",
            "message": "Expected a datetime in the years 1900 to 9998",
        }
    ]


@pytest.mark.parametrize(
    ("cursor", "slug"),
    [(str(2**63), "invalid-cursor"), (str(2**64), "validation-error")],
)
async def test_history_cursor_past_bigint_is_400(
    client: Client, book: Book, cursor: str, slug: str
) -> None:
    response = await client.get(
        f"/ledger/accounts/{book.alice}/transfers", params={"cursor": cursor}
    )

    assert_problem(response, 400, slug)


@pytest.mark.parametrize("ledger_id", [2**40, 2**31, 0])
async def test_ledger_id_in_path_past_integer_is_400(client: Client, ledger_id: int) -> None:
    response = await client.get(f"/ledger/ledgers/{ledger_id}/totals")

    body = assert_problem(response, 400, "validation-error")
    assert body["errors"][0]["key"] == "ledger_id"


async def test_openapi_shows_the_bounds(client: Client) -> None:
    document = (await client.get("/schema/openapi.json")).json()
    schemas = document["components"]["schemas"]
    transfer = schemas["Transfer"]["properties"]

    # Flags are integers whose bits are described, not enums of single bits.
    assert transfer["flags"]["type"] == "integer"
    assert (transfer["flags"]["minimum"], transfer["flags"]["maximum"]) == (0, 15)
    assert "1 linked" in transfer["flags"]["description"]
    assert schemas["Account"]["properties"]["flags"]["maximum"] == 3
    assert "years 1900 to 9998" in transfer["effective_at"]["description"]
    assert "16 deep" in transfer["metadata"]["description"]
    member = schemas["PurchaseEvent"]["properties"]["member"]
    assert (member["maxLength"], member["pattern"]) == (200, r"^[^\x00]*$")
    assert schemas["RewardSpec"]["properties"]["stock"]["maximum"] == 2**31 - 1


@pytest.mark.parametrize(
    ("fields", "key", "message"),
    [
        ({"amount_minor": "100"}, "amount_minor", "Expected `int`, got `str`"),
        ({"amount_minor": 2**63}, "amount_minor", "Expected `int` <= 9223372036854775807"),
        ({"member": "m\x00"}, "member", "Expected `str` matching regex"),
        ({"occurred_at": "2025-01-01T00:00:00"}, "occurred_at", "Expected `datetime` with"),
        (
            {"occurred_at": "9999-12-31T23:59:59-14:00"},
            "occurred_at",
            "Expected a datetime in the years 1900 to 9998",
        ),
        ({"channel": "web"}, "data", "Object contains unknown field `channel`"),
    ],
)
async def test_purchase_out_of_bounds_is_400_naming_the_field(
    client: Client, program: str, fields: dict[str, Any], key: str, message: str
) -> None:
    response = await client.post(
        f"/programs/{program}/purchases", json=purchase(f"BAD-{uuid.uuid4()}", 100) | fields
    )

    body = assert_problem(response, 400, "validation-error")
    assert body["errors"][0]["key"] == key
    assert body["errors"][0]["message"].startswith(message), body


async def test_unknown_program_field_is_refused_not_ignored(client: Client) -> None:
    response = await client.post(
        "/programs",
        json={
            "slug": f"strict-{uuid.uuid4().hex[:8]}",
            "name": "Strict",
            "currency": "ZAR",
            "point_value_minor": "1",
            # tier_grace_days is a setting of the open now; this is no field.
            "tier_grace_period": 10,
        },
    )

    body = assert_problem(response, 400, "validation-error")
    assert "tier_grace_period" in body["detail"]


@pytest.mark.parametrize(
    ("value", "stored"),
    [
        # Bounded as stored (NUMERIC(18, 6)): these round to 10^12 and to 0.
        ("999999999999.9999995", None),
        ("0.0000004", None),
        # These round to the column's largest and smallest values.
        ("999999999999.9999994", "999999999999.999999"),
        ("0.0000005", "0.000001"),
    ],
)
async def test_point_value_is_bounded_after_rounding(
    client: Client, pool: asyncpg.Pool, value: str, stored: str | None
) -> None:
    slug = f"value-{uuid.uuid4().hex[:8]}"
    spec = {"slug": slug, "name": "Value", "currency": "ZAR", "point_value_minor": value}

    response = await client.post("/programs", json=spec)

    if stored is None:
        body = assert_problem(response, 400, "validation-error")
        assert body["errors"][0]["key"] == "point_value_minor", body
        assert "6 decimal places" in body["errors"][0]["message"]
        assert await pool.fetchval("SELECT count(*) FROM programs WHERE slug = $1", slug) == 0
    else:
        assert response.status_code == 201, response.text
        assert response.json()["point_value_minor"] == stored
