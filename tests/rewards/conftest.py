"""Fixtures for rewards tests live in tests/conftest.py (the worker tests use them too)."""

from tests.conftest import NewProgram

__all__ = ["NewProgram"]
