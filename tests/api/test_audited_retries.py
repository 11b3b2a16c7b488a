"""A use case that posts through the ledger's writer commits its transfer
before its audit line: if the line fails, the retry must still write it,
once. Every such use case ends, after any failure and a retry, with exactly
one audit line per recorded change."""

from __future__ import annotations

from typing import Any

import asyncpg
import pytest

from core import audit
from tests.api.conftest import Client


class Injected(Exception):
    pass


def fail_audit_once(monkeypatch: pytest.MonkeyPatch) -> None:
    original = audit.record
    failed = False

    async def record(*args: Any, **kwargs: Any) -> None:
        nonlocal failed
        if not failed:
            failed = True
            raise Injected("the audit insert failed")
        await original(*args, **kwargs)

    monkeypatch.setattr(audit, "record", record)


async def test_an_adjustment_whose_audit_failed_is_audited_by_its_retry(
    client: Client, program: str, pool: asyncpg.Pool, monkeypatch: pytest.MonkeyPatch
) -> None:
    await client.post(f"/programs/{program}/members", json={"external_id": "audited"})
    url = f"/programs/{program}/members/audited/adjustments"
    body = {"adjustment_id": "AUD-1", "points": 40, "reason": "a late delivery"}
    fail_audit_once(monkeypatch)
    first = await client.post(url, json=body)
    assert first.status_code == 500
    monkeypatch.undo()

    retry = await client.post(url, json=body)
    assert retry.status_code == 201, retry.text
    assert retry.json() == {"adjustment_id": "AUD-1", "points": 40, "replayed": False}
    again = await client.post(url, json=body)
    assert again.status_code == 200
    assert again.json()["replayed"] is True

    lines = await pool.fetch(
        "SELECT actor, details FROM audit_events WHERE action = 'member.adjust' AND subject = $1",
        f"program:{program}:member:audited",
    )
    assert len(lines) == 1
    assert lines[0]["actor"] == "admin"
    member = (await client.get(f"/programs/{program}/members/audited")).json()
    assert member["balance"]["available"] == 40
