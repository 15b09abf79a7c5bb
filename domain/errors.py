"""Domain errors: what a command can be refused for. The API maps these to HTTP in one place."""

from __future__ import annotations

from typing import Any


class DomainError(Exception):
    """A command was refused. `code` is stable and machine-readable; `details` is JSON."""

    kind = "invalid"

    def __init__(self, code: str, message: str, details: dict[str, Any] | None = None) -> None:
        super().__init__(message)
        self.code = code
        self.message = message
        self.details = details or {}

    def to_dict(self) -> dict[str, Any]:
        return {
            "kind": self.kind,
            "code": self.code,
            "message": self.message,
            "details": self.details,
        }

    @staticmethod
    def from_dict(d: dict[str, Any]) -> DomainError:
        cls = _KINDS.get(str(d.get("kind")), DomainError)
        return cls(str(d["code"]), str(d["message"]), dict(d.get("details") or {}))


class InvalidInput(DomainError):
    """The request itself is wrong (400)."""

    kind = "invalid"


class NotFound(DomainError):
    """No such aggregate, or it belongs to someone else (404: never reveal others' ids)."""

    kind = "not_found"


class Conflict(DomainError):
    """The request conflicts with the aggregate's current state (409)."""

    kind = "conflict"


class Unprocessable(DomainError):
    """Well-formed but semantically wrong, e.g. a checksum that does not match (422)."""

    kind = "unprocessable"


class Gone(DomainError):
    """The aggregate existed but is no longer usable (410)."""

    kind = "gone"


class PreconditionFailed(DomainError):
    """A condition the client set on the command (If-Match, If-None-Match) is false (412)."""

    kind = "precondition"


class Unavailable(DomainError):
    """This process cannot serve the request now; the same request later can (503, with
    Retry-After)."""

    kind = "unavailable"


class NewerSchema(Unavailable):
    """A stored event of a known type has a schema version newer than this code's class:
    it was written by a newer deployment (a rolling upgrade under way, or a rollback).
    Reading its fields as the current version could misread them, so typed reading refuses
    it; a process that knows the version reads it."""

    def __init__(self, event_type: str, stored_version: int, known_version: int) -> None:
        super().__init__(
            "upgrade_in_progress",
            f"this stream holds a {event_type} event of schema version {stored_version},"
            f" newer than this version of Cairn reads ({known_version}): an upgrade is in"
            " progress; retry once it has completed",
            {
                "event_type": event_type,
                "stored_version": stored_version,
                "known_version": known_version,
            },
        )
        self.event_type = event_type
        self.stored_version = stored_version
        self.known_version = known_version
        # Which stream, and the owner recorded with the event, when known (set by the
        # decoding that met it): whoever may not see that stream is answered as for a
        # missing one, never told that it exists.
        self.stream_id: str | None = None
        self.owner: str | None = None


_KINDS: dict[str, type[DomainError]] = {
    c.kind: c
    for c in (
        InvalidInput,
        NotFound,
        Conflict,
        Unprocessable,
        Gone,
        PreconditionFailed,
        Unavailable,
    )
}
