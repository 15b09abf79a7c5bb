"""The signed-URL key: CAIRN_SIGNING_KEY when set, else one generated into the data dir on
first use (owner-only), the same on every later start; never a built-in fallback."""

from __future__ import annotations

import stat
from pathlib import Path

from bus.config.settings import Settings


def test_generated_once_into_the_data_dir(tmp_path: Path) -> None:
    s = Settings(data_dir=tmp_path / "data")
    key = s.resolved_signing_key()
    path = tmp_path / "data" / "signing-key"
    assert path.read_text().strip() == key and len(key) >= 32
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert Settings(data_dir=tmp_path / "data").resolved_signing_key() == key
    # Another data dir, another key: nothing is shared through the source.
    assert Settings(data_dir=tmp_path / "other").resolved_signing_key() != key
    # Independent of the JWT secret kept beside it.
    assert s.resolved_jwt_secret() != key


def test_the_environment_wins_and_old_keys_are_a_list(tmp_path: Path) -> None:
    s = Settings.from_env(
        {
            "CAIRN_DATA_DIR": str(tmp_path),
            "CAIRN_SIGNING_KEY": "n" * 40,
            "CAIRN_SIGNING_OLD_KEYS": " " + "a" * 40 + ", " + "b" * 40 + ",",
            "CAIRN_SIGNED_URL_MAX_EXPIRY": "3600",
            "CAIRN_SIGNED_PUT_MAX_BYTES": "10M",
        }
    )
    assert s.resolved_signing_key() == "n" * 40
    assert not (tmp_path / "signing-key").exists()
    assert s.signing_old_keys == ("a" * 40, "b" * 40)
    assert (s.signed_url_max_expiry, s.signed_put_max_bytes) == (3600, 10 << 20)
    d = Settings.from_env({})
    assert (d.signing_key, d.signing_old_keys, d.signed_url_max_expiry) == (None, (), 7 * 86400)


def test_the_data_dir_it_creates_is_owner_only(tmp_path: Path) -> None:
    """It holds the secrets (and the embedded Postgres, the blobs): 0700, not 0755."""
    Settings(data_dir=tmp_path / "made" / "data").resolved_jwt_secret()
    assert stat.S_IMODE((tmp_path / "made" / "data").stat().st_mode) == 0o700
