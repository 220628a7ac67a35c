"""Reading files that operators and API callers name (`ca_bundle`, the API keys file) without ever blocking.

Why: a path can name something that is not a file. `/proc/self/fd/2` is a pipe when stderr is one
(as under container runtimes), a FIFO blocks its reader until a writer appears, a device may
never end, and a directory is no bundle. Reading any of them on the event loop froze the agent
for good. So a named file must be a regular file (after symlinks), at most
`OPERATOR_FILE_MAX_BYTES`, opened non-blocking and checked again on the opened descriptor (the
path could be swapped between the check and the open); callers on the event loop read it in a
worker thread.
"""

from __future__ import annotations

import os
import stat

__all__ = ("OPERATOR_FILE_MAX_BYTES", "OperatorFileError", "read_operator_file")

#: Largest file an operator may name: a CA bundle of every public root is about 220 KB.
OPERATOR_FILE_MAX_BYTES = 1024 * 1024


class OperatorFileError(ValueError):
    """The named path is not a readable regular file within the cap; the message says why."""


def _kind(mode: int) -> str | None:
    if stat.S_ISREG(mode):
        return None
    if stat.S_ISFIFO(mode):
        return "a pipe (FIFO)"
    if stat.S_ISDIR(mode):
        return "a directory"
    if stat.S_ISCHR(mode) or stat.S_ISBLK(mode):
        return "a device"
    if stat.S_ISSOCK(mode):
        return "a socket"
    return "not a regular file"


def read_operator_file(path: str, max_bytes: int = OPERATOR_FILE_MAX_BYTES) -> bytes:
    """The whole file at `path`; `OperatorFileError` unless it is a regular file of at most `max_bytes`."""
    try:
        kind = _kind(os.stat(path).st_mode)  # stat never blocks, whatever the path names
    except OSError as exc:
        raise OperatorFileError(f"{path} cannot be read: {exc.strerror}") from None
    if kind is not None:
        raise OperatorFileError(f"{path} is {kind}, not a regular file")
    try:
        descriptor = os.open(path, os.O_RDONLY | os.O_NONBLOCK | os.O_CLOEXEC | os.O_NOCTTY)
    except OSError as exc:
        raise OperatorFileError(f"{path} cannot be read: {exc.strerror}") from None
    try:
        opened = os.fstat(descriptor)
        kind = _kind(opened.st_mode)
        if kind is not None:
            raise OperatorFileError(f"{path} is {kind}, not a regular file")
        if opened.st_size > max_bytes:
            raise OperatorFileError(f"{path} is {opened.st_size} bytes, more than the {max_bytes} allowed")
        chunks: list[bytes] = []
        size = 0
        while chunk := os.read(descriptor, 64 * 1024):
            size += len(chunk)
            if size > max_bytes:
                raise OperatorFileError(f"{path} is more than the {max_bytes} bytes allowed")
            chunks.append(chunk)
    except OSError as exc:
        raise OperatorFileError(f"{path} cannot be read: {exc.strerror}") from None
    finally:
        os.close(descriptor)
    return b"".join(chunks)
