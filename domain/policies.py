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
