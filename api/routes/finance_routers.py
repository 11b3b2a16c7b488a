"""The controllers of finance and analytics, in one list that ``api.app``
mounts under the operator's security: a new finance controller joins it,
nothing else changes."""

from __future__ import annotations

from litestar.types import ControllerRouterHandler

FINANCE_API: list[ControllerRouterHandler] = []
