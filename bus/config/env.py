"""Reading CAIRN_* values: each one parsed and range-checked once, a bad one refused by name.

An operator who sets `CAIRN_PORT=abc` or `CAIRN_UPLOAD_TTL=-5` must learn at start which
variable is wrong and why, in one line, not from a traceback in a child process or from a
setting silently read as its default. Settings.from_env reads every variable through here;
a SettingsError is what `cairn` prints as `cairn: error: ...` (bus/run/cli.py).
"""

from __future__ import annotations

from collections.abc import Mapping

_UNITS = {"": 1, "k": 1 << 10, "m": 1 << 20, "g": 1 << 30, "t": 1 << 40}
_TRUE = {"1", "true", "yes", "on"}
_FALSE = {"0", "false", "no", "off"}


class SettingsError(ValueError):
    """A CAIRN_* value that cannot be used; the message names the variable."""


def parse_size(text: str) -> int:
    """`1048576`, `512M`, `10G`, `1T` (binary units) -> bytes."""
    t = text.strip().lower().removesuffix("ib").removesuffix("b")
    unit = t[-1:] if t[-1:] in _UNITS and not t[-1:].isdigit() else ""
    number = t[: len(t) - len(unit)] if unit else t
    return int(float(number) * _UNITS[unit])


class Env:
    """Typed reads of one environment; unset or empty means the default."""

    def __init__(self, environ: Mapping[str, str]) -> None:
        self.environ = environ

    def raw(self, name: str) -> str | None:
        v = self.environ.get(name)
        return None if v is None or v.strip() == "" else v.strip()

    def fail(self, name: str, why: str) -> SettingsError:
        return SettingsError(f"{name}={self.environ.get(name, '')!r}: {why}")

    def integer(self, name: str, default: int, minimum: int = 0, maximum: int | None = None) -> int:
        v = self.raw(name)
        if v is None:
            return default
        try:
            n = int(v)
        except ValueError:
            raise self.fail(name, "not a whole number") from None
        return self._bounded(name, n, minimum, maximum)

    def number(
        self, name: str, default: float, minimum: float = 0.0, *, positive: bool = False
    ) -> float:
        v = self.raw(name)
        if v is None:
            return default
        try:
            x = float(v)
        except ValueError:
            raise self.fail(name, "not a number") from None
        if x != x or x in (float("inf"), float("-inf")):
            raise self.fail(name, "not a finite number")
        if positive and x <= 0:
            raise self.fail(name, "must be above 0")
        if x < minimum:
            raise self.fail(name, f"must be at least {minimum:g}")
        return x

    def size(self, name: str, default: str, minimum: int = 0) -> int:
        """Bytes, with an optional binary unit (`64K`, `8M`, `10G`, `1T`)."""
        v = self.raw(name) or default
        try:
            n = parse_size(v)
        except (ValueError, KeyError):
            raise self.fail(name, "not a size (bytes, or a number with K, M, G or T)") from None
        return self._bounded(name, n, minimum, None)

    def flag(self, name: str, default: bool = False) -> bool:
        v = self.raw(name)
        if v is None:
            return default
        if v.lower() in _TRUE:
            return True
        if v.lower() in _FALSE:
            return False
        raise self.fail(name, "not a boolean (true/false, 1/0, yes/no, on/off)")

    def _bounded(self, name: str, n: int, minimum: int, maximum: int | None) -> int:
        if n < minimum:
            raise self.fail(name, f"must be at least {minimum}")
        if maximum is not None and n > maximum:
            raise self.fail(name, f"must be at most {maximum}")
        return n
