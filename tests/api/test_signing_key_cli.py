"""``coalition signing-keys list|rotate``: the platform's token signing keys
from the command line."""

from __future__ import annotations

from tests.api.conftest import SIGNING_SECRET
from tests.api.test_cli import run, sql


def test_signing_keys_are_rotated_and_listed_from_the_command_line(
    private_database: str,
) -> None:
    env = {"DATABASE_URL": private_database, "COALITION_SIGNING_SECRET": SIGNING_SECRET}

    empty = run(["signing-keys", "list"], **env)
    first = run(["signing-keys", "rotate"], **env)
    second = run(["signing-keys", "rotate"], **env)
    listed = run(["signing-keys", "list"], **env)

    assert empty.exit_code == 0 and "none yet" in empty.output, empty.output
    assert first.exit_code == 0 and second.exit_code == 0, first.output + second.output
    new_kid = second.output.split()[1]
    assert new_kid in listed.output
    statuses = [line.split()[1] for line in listed.output.splitlines()]
    assert statuses == ["current", "published"]
    assert listed.output.splitlines()[0].startswith(new_kid)
    assert sql(private_database, "SELECT count(*) FROM signing_keys") == 2
    assert (
        sql(
            private_database,
            "SELECT count(*) FROM audit_events WHERE action = 'signing-key.rotate'"
            " AND actor = 'console'",
        )
        == 2
    )


def test_a_rotation_needs_a_usable_signing_secret(private_database: str) -> None:
    refused = run(
        ["signing-keys", "rotate"],
        DATABASE_URL=private_database,
        COALITION_SIGNING_SECRET="not-a-fernet-key-" + "x" * 30,
    )

    assert refused.exit_code == 2, refused.output
    assert "COALITION_SIGNING_SECRET" in refused.stderr
    assert sql(private_database, "SELECT count(*) FROM signing_keys") == 0
