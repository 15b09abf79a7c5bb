"""api/app.py: the name this API process holds idempotency claims under."""

from __future__ import annotations

import socket

from api.app import idempotency_holder
from bus.config.settings import Settings


def test_each_api_process_on_a_port_has_its_own_holder_name() -> None:
    host = socket.gethostname()
    one = Settings(port=8123)
    assert idempotency_holder(one) == f"{host}:8123"  # one process: as before
    names = {
        idempotency_holder(Settings(port=8123, api_processes=3, api_instance=i)) for i in (1, 2, 3)
    }
    # A restarted process frees its own predecessor's claims only, never a live sibling's.
    assert names == {f"{host}:8123", f"{host}:8123#2", f"{host}:8123#3"}
    assert (
        Settings.from_env({"CAIRN_API_PROCESSES": "3", "CAIRN_API_INSTANCE": "2"}).api_instance == 2
    )
