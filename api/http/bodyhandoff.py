"""uvicorn's httptools protocol, handing each body read to the application as it is.

uvicorn gathers the body bytes the parser reports into a `bytearray` (`cycle.body +=
body`) and hands the application `bytes(cycle.body)`: two copies of every byte of every
request body, on the event loop, on top of the two that the socket read and the parser
make. With a body of gigabytes (a tus PATCH, a chunk PUT) that was most of the API's
`memmove` time (8 % of its CPU during a 1 GiB tus upload, with fresh pages to fault in for
each copy: issue 13).

Usually the parser reports one piece of body per socket read, and uvicorn pauses reading
once its buffer holds more than `HIGH_WATER_LIMIT` bytes, so the application takes each
piece before the next arrives. An empty buffer is therefore made an empty `bytes` before uvicorn's
own `on_body` runs: `b"" + body` is `body` itself, and so is `bytes(body)`: no copy, and
every check and step stays uvicorn's. Only when a second piece comes before the
application took the first is the buffer a `bytearray` again, gathering as uvicorn does
(`receive` resets it to an empty `bytearray` after each message either way).
"""

from __future__ import annotations

from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol


class BodyHandoffHttpToolsProtocol(HttpToolsProtocol):
    def on_body(self, body: bytes) -> None:
        cycle = self.cycle
        held: bytes | bytearray = cycle.body
        if not held:
            cycle.body = b""  # type: ignore[assignment]  # uvicorn's `+=` then keeps `body`
        elif type(held) is bytes:
            # A second piece before the application took the first: gather as uvicorn does.
            cycle.body = bytearray(held)
        super().on_body(body)
