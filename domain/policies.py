"""Process-manager rules: pure decisions about what follows from an event.

The handlers (and, for an immediate answer, the API) apply these; keeping them here means
a rule such as "a completed upload becomes a file, under this id" is written once.
"""

from __future__ import annotations

import uuid

# Namespace of the file ids of completions done here (see completion_file_id).
_FILE_IDS = uuid.UUID("6f9b7a52-2b1e-4c51-9a36-0d4c1f3e8a71")


def file_command_id(upload_id: str) -> str:
    return f"file-from-upload-{upload_id}"


def complete_command_id(upload_id: str) -> str:
    return f"complete-upload-{upload_id}"


def completion_file_id(upload_id: str) -> str:
    """The file id of a completion done here: derived from the upload id, so a redelivered
    event produces the very same command."""
    return str(uuid.uuid5(_FILE_IDS, upload_id))


# Namespaces of fetch ids and of the files fetches become (see fetch_id, fetch_file_id).
_FETCH_IDS = uuid.UUID("2c7d0f0e-5a43-4f8e-9d0b-3a9f1c7e6b15")
_FETCH_FILE_IDS = uuid.UUID("b1e4a0c2-8d7f-4e61-a3c9-5f2e7d9b0a48")


def fetch_id(owner: str, url: str, generation: int) -> str:
    """The fetch of `url` (normalised) for `owner`: derived, so concurrent identical
    requests address one aggregate and make one writer. A new generation (refresh, or the
    previous one failed, was cancelled or expired) is a new fetch."""
    return str(uuid.uuid5(_FETCH_IDS, f"{owner}\n{generation}\n{url}"))


def fetch_file_id(fetch_id: str) -> str:
    """The file a completed fetch becomes: derived from the fetch, so it is created once."""
    return str(uuid.uuid5(_FETCH_FILE_IDS, fetch_id))


def fetch_file_command_id(fetch_id: str) -> str:
    return f"file-from-fetch-{fetch_id}"
