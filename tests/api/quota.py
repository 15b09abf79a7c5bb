"""What the quota tests through the whole system share: the quota of `qsys` (the fixture
in tests/api/conftest.py), one module's own system with that quota per owner."""

from __future__ import annotations

QUOTA = 100_000
