"""`coalition finance` commands: reconciliation."""

from __future__ import annotations

from api.finance_cli.group import finance_group  # noqa: F401
