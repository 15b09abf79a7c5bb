"""Fixtures of the fault tests: the `cairn up` runs fixture, defined once in tests/faults/proc.py."""

from tests.faults.proc import runs

__all__ = ["runs"]
