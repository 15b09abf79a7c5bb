"""Strict input: a typo or a wrong type is a 400 that names the field, never silently ignored.

Litestar converts request data leniently (`"5"` becomes 5, unknown query parameters are
ignored), which lets client bugs pass unnoticed. `strict_request` is a `before_request`
hook, so it runs before Litestar parses anything and before any handler code (the
idempotency fingerprint, quota checks) touches a value:

- query parameters the handler does not declare are 400 `unknown_query_parameter`;
- a JSON body declared as a msgspec Struct is decoded strictly (no coercion, unknown fields
  refused when the Struct forbids them, numeric ranges from its `Meta` constraints); an
  empty body, malformed JSON or invalid UTF-8 is 400 with a message that says which.
  Wrong types and unknown or missing fields are `validation_error`; a value out of its
  range is `invalid_<field>`; `details.field` names the field either way. A body nested
  deeper than MAX_JSON_DEPTH arrays and objects is 400 `json_too_deep`: free JSON (a
  task's params) nested past the decoder's or the encoder's recursion limit (about 1,000
  and 255 levels) raised RecursionError or TypeError, a 500. An object that gives a key
  twice is 400 `duplicate_key` naming it: the decoder kept the last value and dropped the
  other silently, while another reader of the body (a proxy, a log) may keep the first.

Litestar's own conversion still runs afterwards, on input that is now known to be exact.
"""

from __future__ import annotations

import json
import re
from functools import cache
from typing import Any, get_args, get_origin

import msgspec
from litestar import Request
from litestar.constants import RESERVED_KWARGS
from litestar.enums import ParamType
from litestar.params import ParameterKwarg

from api.errors import ApiError
from domain.values import nul_at

_AT = re.compile(r" - at `\$\.?([^`]*)`$")
_NAMED = re.compile(r"(?:unknown|missing required) field `([^`]*)`")
# A value of the right type outside its documented range, length or pattern.
_CONSTRAINT = re.compile(r"^Expected `\w+` (?:>|<|of length|matching)")


# No Cairn body needs more than a few levels; 64 stays well under what orjson encodes (255)
# and what a recursive walk (nul_at) or the decoder (about 1,000) survive.
MAX_JSON_DEPTH = 64


def _too_deep() -> ApiError:
    return ApiError(
        400,
        "json_too_deep",
        f"the request body nests arrays and objects deeper than {MAX_JSON_DEPTH} levels",
        {"max_depth": MAX_JSON_DEPTH},
    )


def json_depth_over(value: Any, limit: int) -> bool:
    """Whether decoded JSON `value` nests arrays and objects deeper than `limit` (no
    recursion, so any depth the decoder produced is safe to measure)."""
    stack: list[tuple[Any, int]] = [(value, 0)]
    while stack:
        v, depth = stack.pop()
        if isinstance(v, dict):
            v = list(v.values())
        if isinstance(v, list):
            if depth + 1 > limit:
                return True
            stack.extend((item, depth + 1) for item in v if isinstance(item, dict | list))
    return False


class _Twice(dict[str, Any]):
    """A decoded object that gave `key` more than once."""

    def __init__(self, pairs: list[tuple[str, Any]], key: str) -> None:
        super().__init__(pairs)
        self.key = key


def duplicate_key_at(raw: bytes) -> str | None:
    """The path (`a.b[2].k`) of a key given twice in one object of JSON `raw`, or None.
    `raw` is JSON the strict decoder took, nested at most MAX_JSON_DEPTH levels."""
    twice = False

    def pairs(items: list[tuple[str, Any]]) -> dict[str, Any]:
        nonlocal twice
        obj = dict(items)
        if len(obj) == len(items):
            return obj
        twice = True
        seen: set[str] = set()
        for key, _ in items:
            if key in seen:
                return _Twice(items, key)
            seen.add(key)
        return obj  # (not reached: a shorter dict has a key twice)

    try:
        value = json.loads(raw, object_pairs_hook=pairs)
    except ValueError:  # e.g. an integer past int()'s digits: the strict decoder judged it
        return None
    if not twice:
        return None
    stack: list[tuple[Any, str]] = [(value, "")]
    while stack:
        v, path = stack.pop()
        if isinstance(v, _Twice):
            return f"{path}.{v.key}" if path else v.key
        if isinstance(v, dict):
            stack.extend((x, f"{path}.{k}" if path else k) for k, x in v.items())
        elif isinstance(v, list):
            stack.extend((x, f"{path}[{i}]") for i, x in enumerate(v))
    return None


def refuse_repeated(headers: Any, name: str, code: str) -> None:
    """400 `code` (details.header) if the single-valued header `name` came more than once:
    the handler read one of them and ignored the other, while a proxy or a log may have
    read the other, so which one counts would be a guess."""
    if len(headers.getall(name.lower(), [])) > 1:
        raise ApiError(400, code, f"{name} was sent more than once", {"header": name})


def duplicate_key(path: str) -> ApiError:
    """The refusal of JSON that gives the key at `path` (`duplicate_key_at`) twice."""
    return ApiError(
        400, "duplicate_key", f"{path}: a key given twice in one object", {"field": path}
    )


@cache
def _declared_query(handler: Any) -> frozenset[str] | None:
    """The query parameter names `handler` declares (None: it takes the whole query)."""
    names = set()
    dependencies = set(handler.resolve_dependencies())
    for name, param in handler.parsed_fn_signature.parameters.items():
        if name == "query":
            return None
        if name in dependencies:
            # Injected, never read from the query (Litestar still gives a NamedDependency
            # a query-typed kwarg definition).
            continue
        kwarg = param.kwarg_definition
        if isinstance(kwarg, ParameterKwarg):
            if kwarg.param_type == ParamType.QUERY:
                names.add(kwarg.name or name)
        elif kwarg is None and name not in RESERVED_KWARGS:
            names.add(name)  # a plain parameter is a query parameter (path ones removed below)
    return frozenset(names)


@cache
def _body_struct(handler: Any) -> type[msgspec.Struct] | None:
    param = handler.parsed_fn_signature.parameters.get("data")
    if param is None:
        return None
    annotation = param.annotation
    if get_origin(annotation) is not None and get_args(annotation):
        annotation = get_args(annotation)[0]  # Annotated[Struct, Body(...)]
    if isinstance(annotation, type) and issubclass(annotation, msgspec.Struct):
        return annotation
    return None


def _field_of(message: str) -> str | None:
    m = _AT.search(message) or _NAMED.search(message)
    return m.group(1) if m else None


def decode_strict(raw: bytes, struct: type[msgspec.Struct]) -> msgspec.Struct:
    """Decode a JSON body into `struct` exactly, or raise ApiError(400) saying why."""
    if not raw.strip():
        raise ApiError(
            400,
            "empty_body",
            "the request body is empty: send a JSON object",
            {},
        )
    try:
        decoded = msgspec.json.decode(raw, type=struct, strict=True)
    except RecursionError:
        raise _too_deep() from None
    except msgspec.ValidationError as e:
        text = str(e)
        field = _field_of(text)
        clean = _AT.sub("", text)
        message = f"{field}: {clean}" if field and field not in clean else clean
        # Out of range is `invalid_<field>` (the same code the domain's own checks use);
        # a wrong type, an unknown or a missing field is `validation_error`.
        top = re.split(r"[.\[]", field or "", maxsplit=1)[0]
        code = f"invalid_{top}" if top and _CONSTRAINT.match(clean) else "validation_error"
        raise ApiError(
            400,
            code,
            message,
            {"field": field} if field else {},
        ) from None
    except (msgspec.DecodeError, ValueError) as e:
        # ValueError: UnicodeDecodeError for bytes that are not UTF-8.
        what = "is not UTF-8" if isinstance(e, UnicodeDecodeError) else "is not valid JSON"
        raise ApiError(400, "malformed_json", f"the request body {what}", {}) from None
    # Only a body with that many brackets at all can nest that deep (counting is C-fast).
    if raw.count(b"[") + raw.count(b"{") > MAX_JSON_DEPTH and json_depth_over(
        msgspec.json.decode(raw), MAX_JSON_DEPTH
    ):
        raise _too_deep()
    if (twice := duplicate_key_at(raw)) is not None:
        raise duplicate_key(twice)
    # JSON can carry a NUL only escaped; nothing Cairn stores may hold one (PostgreSQL's
    # text cannot), so it is refused here, naming where it is, before any command.
    if b"\\u0000" in raw and (where := nul_at(msgspec.json.decode(raw))) is not None:
        top = re.split(r"[.\[]", where, maxsplit=1)[0]
        raise ApiError(
            400,
            f"invalid_{top}" if top else "validation_error",  # as the domain's own checks
            f"{where or 'the body'}: text must not contain a NUL character",
            {"field": where} if where else {},
        )
    return decoded


async def strict_request(request: Request[Any, Any, Any]) -> None:
    """`before_request` hook: refuse undeclared query parameters and inexact JSON bodies."""
    handler = request.route_handler
    declared = _declared_query(handler)
    if declared is not None:
        unknown = sorted(
            {k for k in request.query_params if k not in declared} - set(request.path_params)
        )
        if unknown:
            raise ApiError(
                400,
                "unknown_query_parameter",
                f"unknown query parameter(s): {', '.join(u[:64] for u in unknown[:10])}",
                {"unknown": [u[:64] for u in unknown[:10]], "allowed": sorted(declared)},
            )
    struct = _body_struct(handler)
    if struct is not None:
        decode_strict(await request.body(), struct)
