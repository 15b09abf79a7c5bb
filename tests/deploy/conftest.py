"""deploy/check_static.py, loaded as a module (it is a script, not a package)."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path
from types import ModuleType

import pytest

PATH = Path(__file__).resolve().parents[2] / "deploy" / "check_static.py"


@pytest.fixture(scope="session")
def check() -> ModuleType:
    spec = importlib.util.spec_from_file_location("check_static", PATH)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules["check_static"] = module
    spec.loader.exec_module(module)
    return module
