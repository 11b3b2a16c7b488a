"""Erasure leaves the external id enrollable: enrolled again, it is a new
member with a new wallet, while the erased one's history stays under its
pseudonym."""

from __future__ import annotations

from typing import Any

from tests.api.conftest import Client


async def _enrol(client: Client, program: str, external_id: str) -> Any:
    return await client.post(
        f"/programs/{program}/members",
        json={"external_id": external_id, "email": "e@example.com"},
    )


async def _adjust(client: Client, program: str, external_id: str, key: str, points: int) -> None:
    response = await client.post(
        f"/programs/{program}/members/{external_id}/adjustments",
        json={"adjustment_id": key, "points": points, "reason": "welcome gift"},
    )
    assert response.status_code == 201, response.text


async def _erase(client: Client, program: str, external_id: str) -> str:
    response = await client.post(f"/programs/{program}/members/{external_id}/erase")
    assert response.status_code == 200, response.text
    alias: str = response.json()["pseudonym"]
    return alias


async def test_an_erased_external_id_enrols_a_new_member(client: Client, program: str) -> None:
    assert (await _enrol(client, program, "again")).status_code == 201
    await _adjust(client, program, "again", "first-life", 70)
    first_alias = await _erase(client, program, "again")

    second = await _enrol(client, program, "again")
    assert second.status_code == 201, second.text
    assert second.json()["balance"]["available"] == 0
    assert second.json()["status"] == "active"
    await _adjust(client, program, "again", "second-life", 5)
    # The new member's points are its own, and so is its history.
    export = (await client.get(f"/programs/{program}/members/again/export")).json()
    assert [t["amount"] for t in export["ledger"]] == [5]

    # Erased a second time, and enrolled a third: each life has its pseudonym.
    second_alias = await _erase(client, program, "again")
    assert second_alias != first_alias
    third = await _enrol(client, program, "again")
    assert third.status_code == 201, third.text
    assert third.json()["balance"]["available"] == 0

    for alias, amounts in ((first_alias, [70]), (second_alias, [5])):
        old = await client.get(f"/programs/{program}/members/{alias}/export")
        assert old.status_code == 200, old.text
        assert old.json()["member"]["email"] is None
        assert [t["amount"] for t in old.json()["ledger"]] == amounts
        assert old.json()["balance"]["available"] == amounts[0]
