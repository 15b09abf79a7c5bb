"""Uploads one file with tuspy in a process of its own, driven by tests/api/tus/test_controller.py.

One argument: a JSON object {endpoint, token, file, chunk_size, storage, pause_after_chunks}.
With `storage` (a tuspy FileStorage path) the upload URL is stored under the file's
fingerprint, so a fresh process resumes the upload. With `pause_after_chunks` the process
stops after that many chunks and waits to be killed. Reports JSON lines on stdout.
"""

from __future__ import annotations

import json
import signal
import sys

from tusclient import client
from tusclient.storage import filestorage


def emit(**obj: object) -> None:
    print(json.dumps(obj), flush=True)


def main() -> None:
    opts = json.loads(sys.argv[1])
    tus = client.TusClient(opts["endpoint"], headers={"Authorization": f"Bearer {opts['token']}"})
    storage = filestorage.FileStorage(opts["storage"])
    uploader = tus.uploader(
        opts["file"],
        chunk_size=opts["chunk_size"],
        metadata={"filename": "resumed.bin"},
        store_url=True,
        url_storage=storage,
        upload_checksum=True,
    )
    emit(event="start", url=uploader.url, offset=uploader.offset)
    chunks = 0
    while uploader.offset < uploader.get_file_size():
        uploader.upload_chunk()
        chunks += 1
        emit(event="chunk", url=uploader.url, offset=uploader.offset)
        if chunks == opts.get("pause_after_chunks"):
            emit(event="paused", url=uploader.url, offset=uploader.offset)
            signal.pause()  # until the test kills this process
    emit(event="success", url=uploader.url, offset=uploader.offset)


if __name__ == "__main__":
    main()
