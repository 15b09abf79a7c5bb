"""What every static-files router of the API (the console, api/console/mount.py; the
docs' assets, api/routes/docs.py) shares: the file system they read through.

Litestar's static files hand the request's (decoded) path to the file system and answer
404 only for FileNotFoundError; any other OSError was a 500, and so was the ValueError of
a NUL. Ordinary requests met them: a path through a file (`/console/index.html/x`,
NotADirectoryError), a name over 255 bytes (ENAMETOOLONG), a NUL (`index.html%00.js`). No
file can be at such a path, so each is the 404 of any missing file."""

from __future__ import annotations

import errno
from typing import Any

from litestar.file_system import BaseLocalFileSystem
from litestar.types import PathType
from litestar.types.file_types import FileInfo

# What stat says of a path no file can be at (the directory itself, or a permission
# problem, are not among them: they keep Litestar's answers).
_NO_SUCH_PATH = frozenset({errno.ENOTDIR, errno.ENAMETOOLONG, errno.ELOOP})


class StaticFileSystem(BaseLocalFileSystem):
    """The local file system, with every impossible path answered as a missing file."""

    async def info(self, path: PathType, **kwargs: Any) -> FileInfo:
        try:
            return await super().info(path, **kwargs)
        except ValueError as e:  # a NUL in the path
            raise FileNotFoundError(errno.ENOENT, "no such file") from e
        except OSError as e:
            if e.errno in _NO_SUCH_PATH:
                raise FileNotFoundError(errno.ENOENT, "no such file") from e
            raise
