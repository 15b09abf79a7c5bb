"""uvicorn's httptools protocol, handing each body read to the application as it is.

uvicorn gathers the body bytes the parser reports into a `bytearray` (`cycle.body +=
body`) and hands the application `bytes(cycle.body)`: two copies of every byte of every
request body, on the event loop, on top of the two that the socket read and the parser
make. With a body of gigabytes (a tus PATCH, a chunk PUT) that was most of the API's
`memmove` time (8 % of its CPU during a 1 GiB tus upload, with fresh pages to fault in for
each copy: issue 13).

Usually the parser reports one piece of body per socket read, and uvicorn pauses reading
once its buffer holds more than `HIGH_WATER_LIMIT` bytes, so the application takes each
piece before the next arrives. Such a piece (the buffer empty when it comes) becomes the
buffer itself, a `bytes`, and `bytes(...)` of a `bytes` is that very object: no copy. Only
when a second piece comes before the application took the first are they gathered into a
`bytearray`, exactly as uvicorn does (`receive` resets the buffer to an empty
`bytearray` after each message either way).
"""

from __future__ import annotations

from uvicorn.protocols.http.flow_control import HIGH_WATER_LIMIT
from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol


class BodyHandoffHttpToolsProtocol(HttpToolsProtocol):
    def on_body(self, body: bytes) -> None:
        cycle = self.cycle
        if (
            not cycle.body
            and type(body) is bytes
            and not cycle.response_complete
            and not (self.parser.should_upgrade() and self._should_upgrade())
        ):
            # The same checks and steps as uvicorn's on_body, without the copy.
            cycle.body = body  # type: ignore[assignment]  # read only via bytes(...)
            if len(body) > HIGH_WATER_LIMIT:
                self.flow.pause_reading()
            cycle.message_event.set()
            return
        held: bytes | bytearray = cycle.body
        if type(held) is bytes:
            # A second piece before the application took the first: gather as uvicorn does.
            cycle.body = bytearray(held)
        super().on_body(body)
