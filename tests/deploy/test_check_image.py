"""deploy/check_static.py's checks of the image's build context (.dockerignore): they pass
on the repository as it is and fail on a copy broken in its one way."""

from __future__ import annotations

from pathlib import Path
from types import ModuleType

import pytest

ROOT = Path(__file__).resolve().parents[2]

Checks = list[tuple[bool, str]]


def failed(checks: Checks) -> list[str]:
    return [what for ok, what in checks if not ok]


# ------------------------------------------------------------------ the build context


def test_the_root_dockerignore_keeps_the_context_clean(check: ModuleType) -> None:
    checks = check.dockerignore_checks(ROOT)
    assert checks and failed(checks) == []


def context(tmp_path: Path, ignore: str | None, per_dockerfile: str | None = None) -> Path:
    (tmp_path / "deploy").mkdir()
    if ignore is not None:
        (tmp_path / ".dockerignore").write_text(ignore)
    if per_dockerfile is not None:
        (tmp_path / "deploy" / "Dockerfile.dockerignore").write_text(per_dockerfile)
    return tmp_path


def test_no_root_dockerignore_fails(check: ModuleType, tmp_path: Path) -> None:
    bad = failed(check.dockerignore_checks(context(tmp_path, None)))
    assert any(".dockerignore exists" in f for f in bad), bad


@pytest.mark.parametrize("kept", [".venv", ".git", ".tools", ".mypy_cache", "tests", ".env"])
def test_a_dockerignore_that_lets_one_through_fails(
    check: ModuleType, tmp_path: Path, kept: str
) -> None:
    # A deny-list missing one entry: that directory reaches the build context.
    entries = [".venv", ".git", ".tools", ".mypy_cache", "tests", ".env", "**/.env"]
    ignore = "\n".join(e for e in entries if kept not in e) + "\n"
    bad = failed(check.dockerignore_checks(context(tmp_path, ignore)))
    assert any(kept in f for f in bad), bad


def test_a_per_dockerfile_ignore_file_overrides_the_root_one(
    check: ModuleType, tmp_path: Path
) -> None:
    # BuildKit prefers deploy/Dockerfile.dockerignore: a lax one undoes the root file.
    root_ignore = (ROOT / ".dockerignore").read_text()
    bad = failed(check.dockerignore_checks(context(tmp_path, root_ignore, "tests\n")))
    assert any("Dockerfile.dockerignore" in f for f in bad), bad
