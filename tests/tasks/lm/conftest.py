"""Fixtures for the language-modelling tests."""

from tests.single_thread import single_thread  # noqa: F401  (autouse fixture)
