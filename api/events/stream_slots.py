"""How many live event streams (SSE responses, WebSocket connections) an API process holds.

A live stream is a connection held open for as long as its client likes: one socket, one
task and a queue of up to CAIRN_EVENTS_QUEUE events each, about 35 KiB of the process per
idle SSE stream, measured. Without a bound, one signed-in user opening streams in a loop
took the API process to its descriptor limit (20,000), after which nobody's requests were
accepted, uploads included. So each stream takes a slot for its lifetime:

- at most CAIRN_EVENTS_MAX_STREAMS_PER_USER per user (429 `too_many_streams`, or a
  WebSocket closed with 4429): enough for many console tabs and `cairn ... --follow`
  watchers, far from the process's limits;
- at most CAIRN_EVENTS_MAX_STREAMS in the process, whoever holds them (503 `events_busy`
  with Retry-After, or close 1013), which keeps room for every other request when many
  users stream at once.

Counted per API process, like the in-flight upload limits (api/limits.py): with several
API processes a user may hold that many streams in each.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from api.errors import ApiError
from api.limits import give_back


@dataclass
class Slot:
    """One stream's place; `release` (idempotent) gives it back."""

    slots: StreamSlots
    user: str
    released: bool = False

    def release(self) -> None:
        if self.released:
            return
        self.released = True
        self.slots._give_back(self.user)


@dataclass
class StreamSlots:
    per_user: int
    total: int
    held: dict[str, int] = field(default_factory=dict)
    count: int = 0

    def take(self, user: str) -> Slot:
        """A slot for a new stream of `user`; ApiError 429 or 503 when there is none."""
        if self.held.get(user, 0) >= self.per_user:
            raise ApiError(
                429,
                "too_many_streams",
                f"at most {self.per_user} live event streams per user: close one first",
                {"limit": self.per_user, "setting": "CAIRN_EVENTS_MAX_STREAMS_PER_USER"},
                {"Retry-After": "5"},
            )
        if self.count >= self.total:
            raise ApiError(
                503,
                "events_busy",
                "the server holds as many live event streams as it may; try again soon",
                {"limit": self.total, "setting": "CAIRN_EVENTS_MAX_STREAMS"},
                {"Retry-After": "5"},
            )
        self.held[user] = self.held.get(user, 0) + 1
        self.count += 1
        return Slot(self, user)

    def _give_back(self, user: str) -> None:
        give_back(self.held, user)
        self.count -= 1
