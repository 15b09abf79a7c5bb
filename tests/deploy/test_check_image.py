"""deploy/check_static.py's checks of the image: the base image pinned by digest, and the
build context's .dockerignore. Each passes on the repository as it is and fails on a copy
broken in its one way."""

from __future__ import annotations

from pathlib import Path
from types import ModuleType

import pytest

ROOT = Path(__file__).resolve().parents[2]
DIGEST = "sha256:" + "ab" * 32

Checks = list[tuple[bool, str]]


def failed(checks: Checks) -> list[str]:
    return [what for ok, what in checks if not ok]


# ------------------------------------------------------------------ the base image


def dockerfile(*froms: str, args: str = "") -> str:
    stages = "\n".join(f"FROM {f}\nRUN true" for f in froms)
    return f"# syntax=docker/dockerfile:1.7\n{args}\n{stages}\n"


def test_the_dockerfile_pins_its_base_image(check: ModuleType) -> None:
    checks = check.base_image_checks((ROOT / "deploy" / "Dockerfile").read_text())
    assert checks and failed(checks) == []


@pytest.mark.parametrize(
    "text",
    [
        dockerfile(f"python:3.11-slim@{DIGEST} AS build", f"python:3.11-slim@{DIGEST}"),
        dockerfile(
            "python:${V}-slim@${D:?set D} AS build",
            "python:${V}-slim@${D:?set D}",
            args="ARG V=3.11\nARG D",
        ),
        dockerfile("python:3.11-slim@${D} AS build", "build", args=f"ARG D={DIGEST}"),
    ],
)
def test_pinned_base_images_pass(check: ModuleType, text: str) -> None:
    assert failed(check.base_image_checks(text)) == []


@pytest.mark.parametrize(
    "text",
    [
        dockerfile("python:3.11-slim AS build", "python:3.11-slim"),
        dockerfile(f"python:3.11-slim@{DIGEST} AS build", "python:3.11-slim"),
        dockerfile("python:3.11-slim@sha256:abc AS build"),
        dockerfile("python:3.11-slim@${D} AS build", args="ARG D=latest"),
        dockerfile("python:3.11-slim@${D} AS build", args="ARG D=sha256:" + "0" * 63),
        dockerfile("${BASE} AS build", args="ARG BASE=python:3.11-slim"),
        dockerfile("python:3.11-slim@${UNDECLARED} AS build"),
        # no default and no `:?`: a build without the argument would pull `python:3.11-slim@`
        dockerfile("python:3.11-slim@${D} AS build", args="ARG D"),
    ],
)
def test_unpinned_base_images_fail(check: ModuleType, text: str) -> None:
    assert failed(check.base_image_checks(text))


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


def test_the_build_args_a_build_must_pass(check: ModuleType) -> None:
    # compose's build.args must carry these (check_compose), or its builds stop.
    assert check.required_build_args((ROOT / "deploy" / "Dockerfile").read_text()) == {
        "PYTHON_DIGEST"
    }
    pinned = dockerfile("python:${V}-slim@${D} AS b", args=f"ARG V=3.11\nARG D={DIGEST}")
    assert check.required_build_args(pinned) == set()
