"""How a resource controller acts for its caller, written once.

Every controller under api/routes/ does the same three things: it is a signed-in,
strictly-checked controller; it turns a path id into the caller's aggregate (or a 404); it
sends a command on the caller's behalf and shapes the reply. Each of these lives here so
a new controller (or a new command on an old one) says only what is particular to it:

- `SecuredController`: the principal dependency, the OpenAPI security requirement and the
  strict input hook (api/http/strict.py), inherited instead of restated.
- `parse_id` / `not_found` / `load_owned`: ids are UUIDs; a malformed id, an unknown id,
  a deleted aggregate and another user's id all answer the same 404
  `<prefix>_not_found` (API.md: another user's ids are 404, never 403). The prefix is the
  aggregate's stream prefix from domain/registry.py (`task`, `fetch`, `upload`, `file`).
- `send_as`: the command with the envelope filled from the principal (caller, admin role,
  time), sent through the command bus with the request's correlation id. The reply's
  state comes back as a plain dict (`reply_state`), empty when the aggregate has none.
"""

from __future__ import annotations

from typing import Any, TypeVar

from litestar import Controller, Request
from litestar.di import Provide

from api.auth import Principal, provide_principal
from api.context import ctx, now, parse_uuid
from api.http.strict import strict_request
from api.openapi import SECURED
from bus.actors.commandbus import CommandResult
from domain.errors import NotFound
from domain.kernel import Command
from domain.registry import AGGREGATES, stream_id_for

C = TypeVar("C", bound=Command)


class SecuredController(Controller):
    """A controller for signed-in callers: `principal` is injected into its handlers, the
    OpenAPI document marks it secured, and every request is checked strictly first."""

    dependencies = {"principal": Provide(provide_principal)}
    security = SECURED
    before_request = strict_request  # type: ignore[assignment]  # (Litestar unbinds it)


def _prefix(aggregate: str) -> str:
    return AGGREGATES[aggregate].stream_prefix


def not_found(aggregate: str, aggregate_id: str) -> NotFound:
    """404 `<prefix>_not_found` for `aggregate_id` of `aggregate` (`tasks` -> `task_...`)."""
    p = _prefix(aggregate)
    return NotFound(f"{p}_not_found", f"no such {p}", {"id": aggregate_id})


def parse_id(aggregate: str, raw: str) -> str:
    """The canonical UUID of a path id; anything else is that aggregate's 404."""
    p = _prefix(aggregate)
    return parse_uuid(raw, f"{p}_not_found", p)


async def load_owned(
    request: Request[Any, Any, Any], aggregate: str, raw_id: str, who: Principal
) -> Any:
    """The current state of the caller's aggregate `raw_id` (an admin's: anyone's), folded
    from its stream, so it is consistent right after a command. Missing, deleted (an
    aggregate whose state has a true `deleted`) or someone else's: the same 404."""
    aggregate_id = parse_id(aggregate, raw_id)
    state = await ctx(request).load(aggregate, stream_id_for(aggregate, aggregate_id))
    if (
        state is None
        or getattr(state, "deleted", False)
        or (state.owner != who.user and not who.admin)
    ):
        raise not_found(aggregate, aggregate_id)
    return state


async def send_as(
    request: Request[Any, Any, Any],
    who: Principal,
    command: type[C],
    aggregate_id: str,
    **fields: Any,
) -> CommandResult:
    """Send `command(aggregate_id, **fields)` on behalf of `who`: the caller, their admin
    role and the time are filled in; the command's refusal is raised as its domain error
    (mapped to the one error shape in api/errors.py)."""
    cmd = command(aggregate_id=aggregate_id, caller=who.user, admin=who.admin, at=now(), **fields)
    return await ctx(request).send(request, cmd)


def reply_state(result: CommandResult) -> dict[str, Any]:
    """The aggregate's state after the command, as the actor replied it ({} if none)."""
    return result.state or {}
