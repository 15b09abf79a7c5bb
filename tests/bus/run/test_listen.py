"""bus/run/listen.py: several processes' sockets on one port, and a foreign one refused."""

from __future__ import annotations

import socket

import pytest

from bus.run import listen
from tests.ports import free_port

pytestmark = pytest.mark.skipif(not listen.AVAILABLE, reason="SO_REUSEPORT is Linux's")


def _connect_and_accept(port: int, listeners: list[socket.socket], count: int) -> list[int]:
    """Open `count` connections; how many each listener accepted."""
    for s in listeners:
        s.setblocking(False)
    clients = [socket.create_connection(("127.0.0.1", port)) for _ in range(count)]
    accepted = [0] * len(listeners)
    for i, s in enumerate(listeners):
        while True:
            try:
                conn, _ = s.accept()
            except BlockingIOError:
                break
            conn.close()
            accepted[i] += 1
    for c in clients:
        c.close()
    return accepted


def test_two_listeners_share_a_port_and_both_get_connections() -> None:
    port = free_port()
    first = listen.shared_listener("127.0.0.1", port)
    second = listen.shared_listener("127.0.0.1", port)
    try:
        # The kernel spreads connections by a hash of their addresses: with 64, the chance
        # that one listener gets none is 2 * 2**-64.
        accepted = _connect_and_accept(port, [first, second], 64)
        assert sum(accepted) == 64 and min(accepted) > 0, accepted
        # One gone (a process died): the other takes every new connection.
        first.close()
        assert _connect_and_accept(port, [second], 8) == [8]
    finally:
        first.close()
        second.close()


def test_a_port_held_by_a_socket_that_does_not_share_is_refused() -> None:
    port = free_port()
    plain = socket.socket()
    plain.bind(("127.0.0.1", port))
    plain.listen()
    try:
        with pytest.raises(OSError):
            listen.shared_listener("127.0.0.1", port)
    finally:
        plain.close()


def test_without_so_reuseport_a_shared_listener_is_refused_clearly(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # `cairn run api` started by hand with CAIRN_API_PROCESSES above 1 on a platform that
    # cannot share a port: a clear OSError, not an AttributeError for the missing constant.
    monkeypatch.setattr(listen, "AVAILABLE", False)
    with pytest.raises(OSError, match="CAIRN_API_PROCESSES=1"):
        listen.shared_listener("127.0.0.1", free_port())
