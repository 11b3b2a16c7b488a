"""A client generated from the OpenAPI document by openapi-python-client
builds without a warning and handles the API's answers: created and
replayed records (200 parsed, not None) and problems (parsed as Problem).

The document is read from a live server, as a client's developer would.
"""

from __future__ import annotations

import importlib
import subprocess
import sys
import uuid
from collections.abc import Iterator
from pathlib import Path
from types import ModuleType
from typing import Any

import httpx
import pytest

from tests.api.conftest import PROBLEMS
from tests.api.live_server import REWARD_SKU, LiveApi, live_api

PACKAGE = "coalition_generated_client"


@pytest.fixture(scope="module")
def live(server_url: str) -> Iterator[LiveApi]:
    with live_api(server_url) as api:
        yield api


@pytest.fixture(scope="module")
def generated(live: LiveApi, tmp_path_factory: pytest.TempPathFactory) -> Iterator[ModuleType]:
    folder = tmp_path_factory.mktemp("generated-client")
    document = folder / "openapi.json"
    document.write_bytes(httpx.get(f"{live.base_url}/schema/openapi.json").content)
    # No formatter run over the generated code: it needs none to work.
    config = folder / "config.yaml"
    config.write_text(f"package_name_override: {PACKAGE}\npost_hooks: []\n")
    generator = Path(sys.executable).with_name("openapi-python-client")
    run = subprocess.run(
        [
            str(generator),
            "generate",
            "--path",
            str(document),
            "--meta",
            "none",
            "--config",
            str(config),
            "--output-path",
            str(folder / PACKAGE),
            "--fail-on-warning",
        ],
        capture_output=True,
        text=True,
        timeout=120,
    )
    output = run.stdout + run.stderr
    assert run.returncode == 0, output
    assert "warning" not in output.lower(), output
    assert "unable to" not in output.lower(), output
    sys.path.insert(0, str(folder))
    try:
        yield importlib.import_module(PACKAGE)
    finally:
        sys.path.remove(str(folder))
        for name in [m for m in sys.modules if m == PACKAGE or m.startswith(PACKAGE + ".")]:
            del sys.modules[name]


def _module(generated: ModuleType, name: str) -> Any:
    return importlib.import_module(f"{generated.__name__}.{name}")


@pytest.fixture(scope="module")
def operator(generated: ModuleType, live: LiveApi) -> Iterator[Any]:
    with generated.AuthenticatedClient(base_url=live.base_url, token=live.admin_token) as client:
        yield client


def test_the_ledger_through_the_generated_client(generated: ModuleType, operator: Any) -> None:
    models = _module(generated, "models")
    create_ledger = _module(generated, "api.ledger.ledger_ledgers_create_ledger")
    create_accounts = _module(generated, "api.ledger.ledger_accounts_create_accounts")
    create_transfers = _module(generated, "api.ledger.ledger_transfers_create_transfers")

    definition = models.Ledger.from_dict({"id": 7, "name": "generated-points"})
    created = create_ledger.sync_detailed(client=operator, body=definition)
    assert created.status_code == 201, created.content
    assert isinstance(created.parsed, models.Ledger)
    again = create_ledger.sync_detailed(client=operator, body=definition)
    assert again.status_code == 200, again.content
    assert isinstance(again.parsed, models.Ledger) and again.parsed.id == 7

    issuance, wallet = uuid.uuid4(), uuid.uuid4()
    accounts = models.AccountBatch.from_dict(
        {
            "accounts": [
                {"id": str(issuance), "ledger": 7, "code": 1},
                {"id": str(wallet), "ledger": 7, "code": 10, "flags": 1},
            ]
        }
    )
    opened = create_accounts.sync_detailed(client=operator, body=accounts)
    assert opened.status_code == 200, opened.content
    assert [str(r.result) for r in opened.parsed.results] == ["ok", "ok"]

    transfer = {
        "id": str(uuid.uuid4()),
        "debit_account_id": str(issuance),
        "credit_account_id": str(wallet),
        "amount": 100,
        "ledger": 7,
        "code": 1,
    }
    batch = models.TransferBatch.from_dict({"transfers": [transfer]})
    posted = create_transfers.sync_detailed(client=operator, body=batch)
    assert posted.status_code == 200, posted.content
    assert [str(r.result) for r in posted.parsed.results] == ["ok"]
    replayed = create_transfers.sync_detailed(client=operator, body=batch)
    assert replayed.status_code == 200, replayed.content
    assert [str(r.result) for r in replayed.parsed.results] == ["exists"]


def test_a_problem_is_parsed(generated: ModuleType, operator: Any) -> None:
    models = _module(generated, "models")
    get_transfer = _module(generated, "api.ledger.ledger_transfers_transfer_id_get_transfer")

    missing = get_transfer.sync_detailed(transfer_id=uuid.uuid4(), client=operator)

    assert missing.status_code == 404
    assert isinstance(missing.parsed, models.Problem)
    assert missing.parsed.type_ == PROBLEMS + "not-found"
    assert missing.parsed.status == 404


def test_a_replayed_redemption_is_parsed(generated: ModuleType, live: LiveApi) -> None:
    models = _module(generated, "models")
    redeem = _module(generated, "api.members.me_redemptions_redeem_reward")
    body = models.RedemptionRequest.from_dict({"sku": REWARD_SKU})

    with generated.AuthenticatedClient(base_url=live.base_url, token=live.member_token) as ann:
        first = redeem.sync_detailed(client=ann, body=body, idempotency_key="generated-1")
        again = redeem.sync_detailed(client=ann, body=body, idempotency_key="generated-1")

    assert first.status_code == 201, first.content
    assert isinstance(first.parsed, models.RedemptionOutcome)
    assert first.parsed.replayed is False
    assert again.status_code == 200, again.content
    assert isinstance(again.parsed, models.RedemptionOutcome)
    assert again.parsed.replayed is True
    assert again.parsed.points == first.parsed.points
