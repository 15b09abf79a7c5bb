"""The facts deploy/check_static.py reads from the code, without running the whole check
(`just deploy-check` runs it against the manifests)."""

from __future__ import annotations

from pathlib import Path
from types import ModuleType

import pytest

from bus.config.settings import Settings


def test_every_secret_generated_per_data_dir_is_found(check: ModuleType, tmp_path: Path) -> None:
    # Each of these, unset, is made up by the process into its own data dir: the check
    # requires the api to get every one of them from a Secret.
    assert check.generated_secrets() == {"CAIRN_JWT_SECRET", "CAIRN_SIGNING_KEY"}
    s = Settings.from_env({"CAIRN_DATA_DIR": str(tmp_path)})
    assert s.resolved_jwt_secret() and s.resolved_signing_key()
    assert {p.name for p in tmp_path.iterdir()} == {"jwt-secret", "signing-key"}
    assert check.GENERATED_SECRETS <= check.SECRET_SETTINGS


def test_defaults_read_from_settings_match_the_settings(check: ModuleType) -> None:
    s = Settings.from_env({})
    assert int(check.setting_default("CAIRN_MAX_INFLIGHT")) == s.max_inflight
    assert check.parse_bytes(check.setting_default("CAIRN_TUS_PIECE_BYTES")) == s.tus_piece_bytes
    assert float(check.setting_default("CAIRN_DRAIN_TIMEOUT")) == s.drain_timeout


def test_sizes_in_cairn_and_kubernetes_units(check: ModuleType) -> None:
    assert check.parse_bytes("1Gi") == 1 << 30
    assert check.parse_bytes("256Mi") == 256 << 20
    assert check.parse_bytes("8M") == 8 << 20
    assert check.parse_bytes("4096") == 4096
    with pytest.raises(ValueError):
        check.parse_bytes("lots")


def test_compose_interpolation_and_required_variables(check: ModuleType) -> None:
    assert check.interpolate("${A:-x}-${B}-${C:?set C}") == "x--"
    assert check._REQUIRED.fullmatch("${CAIRN_JWT_SECRET:?set it in deploy/.env}")
    assert not check._REQUIRED.fullmatch("${CAIRN_JWT_SECRET:-dev-only-secret}")
    assert not check._REQUIRED.fullmatch("a-literal-secret")
