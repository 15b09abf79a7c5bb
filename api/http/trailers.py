"""uvicorn's httptools protocol, plus request trailers for the application.

ASGI has no message for request trailers, and uvicorn appends trailer fields to the request's
header list (indistinguishable from headers). tus's checksum-trailer extension needs them:
this subclass collects fields parsed after the header block into the scope extension
`cairn.request_trailers`. They are complete before the final `http.request` message
(`more_body: False`) reaches the application, because the parser reports them before the
message is complete.
"""

from __future__ import annotations

from typing import Any

from api.http.bodyhandoff import BodyHandoffHttpToolsProtocol

TRAILERS_EXTENSION = "cairn.request_trailers"


class TrailerAwareHttpToolsProtocol(BodyHandoffHttpToolsProtocol):
    def on_message_begin(self) -> None:
        super().on_message_begin()
        self._in_trailers = False
        self._trailers: list[tuple[bytes, bytes]] = []
        extensions: dict[str, Any] = dict(self.scope.get("extensions") or {})
        extensions[TRAILERS_EXTENSION] = self._trailers
        self.scope["extensions"] = extensions

    def on_headers_complete(self) -> None:
        self._in_trailers = True
        super().on_headers_complete()

    def on_header(self, name: bytes, value: bytes) -> None:
        if self._in_trailers:
            self._trailers.append((name.lower(), value))
            return
        super().on_header(name, value)
