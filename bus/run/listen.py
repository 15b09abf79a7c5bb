"""One API port for several API processes (SO_REUSEPORT).

A Python process serves HTTP on one core: its event loop, and the GIL around everything
the loop runs. On a machine with more cores `cairn up` can run several API processes
(CAIRN_API_PROCESSES) on the one port: each binds its own listening socket with
SO_REUSEPORT, and the kernel spreads new connections over the sockets (by a hash of the
connection's addresses, so one keep-alive connection stays with one process). The
processes share nothing but PostgreSQL and Kafka, exactly as API instances on several
hosts do. A process that dies takes its socket with it, and the others take its new
connections meanwhile.

Linux (3.9+) has it; elsewhere (and where the constant is missing) only one API process
is allowed. SO_REUSEPORT lets only sockets of the same user share a port, and a socket
bound without it (another program) still makes the bind fail, as a plain bind would.
"""

from __future__ import annotations

import errno
import socket
import sys

AVAILABLE = hasattr(socket, "SO_REUSEPORT") and sys.platform.startswith("linux")
# uvicorn's default backlog.
BACKLOG = 2048


def family_of(host: str) -> socket.AddressFamily:
    """IPv6 for an address with colons, else IPv4."""
    return socket.AF_INET6 if ":" in host else socket.AF_INET


def shared_listener(host: str, port: int) -> socket.socket:
    """A listening TCP socket on host:port that other processes of this user may bind
    too. Raises OSError when the port is taken by a socket that does not share, or where
    sockets cannot share a port (`cairn up` refuses several API processes there first;
    this is for `cairn run api` started by hand with CAIRN_API_PROCESSES above 1)."""
    if not AVAILABLE:
        raise OSError(
            errno.EOPNOTSUPP,
            "several API processes on one port need SO_REUSEPORT (Linux):"
            " set CAIRN_API_PROCESSES=1 here",
        )
    sock = socket.socket(family_of(host), socket.SOCK_STREAM)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
        sock.bind((host, port))
        sock.listen(BACKLOG)
        sock.set_inheritable(False)
    except BaseException:
        sock.close()
        raise
    return sock
