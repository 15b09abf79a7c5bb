"""`cairn upload`'s chunk PUT (bus/client/upload.py `_put_chunk`) against scripted answers:
a 429 or a 503 is waited out (Retry-After) and the same bytes sent again; any other error
ends the upload at once. A unit test: the server's answers are scripted (httpx's mock
transport), so that a 503 can be had at will."""

from __future__ import annotations

import io
from typing import Any

import httpx
import pytest
from rich.progress import Progress

from bus.client.errors import ClientError
from bus.client.transfer import Transfer
from bus.client.upload import _put_chunk

CHUNK = 1000


class _State:
    def get(self, name: str) -> Any:
        return {"chunk_size": CHUNK}[name]


def _send(answers: list[httpx.Response]) -> tuple[int | ClientError, list[bytes]]:
    """PUT chunk 1 of a 2,500-byte file through answers given in turn; what `_put_chunk`
    returned (or raised) and the bodies the server got."""
    bodies: list[bytes] = []

    def handler(request: httpx.Request) -> httpx.Response:
        bodies.append(request.read())
        return answers[len(bodies) - 1]

    data = bytes(range(256)) * 10
    with httpx.Client(transport=httpx.MockTransport(handler), base_url="http://cairn") as c:
        progress = Progress(disable=True)
        transfer = Transfer(progress, len(data), None)
        task = transfer.add("f", len(data))
        try:
            sent: int | ClientError = _put_chunk(
                c, "u1", _State(), lambda i: CHUNK, transfer, task, io.BytesIO(data), 1
            )
        except ClientError as e:
            sent = e
    return sent, bodies


def _error(status: int, code: str, retry_after: str = "0") -> httpx.Response:
    return httpx.Response(
        status,
        headers={"Retry-After": retry_after},
        json={"error": {"code": code, "message": code, "details": {}}},
    )


@pytest.mark.parametrize(
    ("status", "code"), [(429, "too_many_requests"), (503, "blob_store_unavailable")]
)
def test_a_passing_refusal_is_waited_out_and_the_same_bytes_sent_again(
    status: int, code: str
) -> None:
    sent, bodies = _send([_error(status, code), _error(status, code), httpx.Response(200)])
    assert sent == CHUNK
    expected = (bytes(range(256)) * 10)[CHUNK : 2 * CHUNK]
    assert bodies == [expected] * 3


def test_any_other_error_ends_the_upload_at_once() -> None:
    sent, bodies = _send([_error(409, "chunk_conflict"), httpx.Response(200)])
    assert isinstance(sent, ClientError) and sent.code == "chunk_conflict"
    assert len(bodies) == 1
