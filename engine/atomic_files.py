"""Writing files so that a crash never leaves half of one: atomic replace, temporary names, fsync, modes.

Below everything else in the engine (the standard library only): the store, run folders,
exports and imports all write through it.
"""

from __future__ import annotations

import errno
import os
import tempfile
from pathlib import Path

# Temporary names are `.<name>.tmp-<pid>-<random>`: unique, made with O_EXCL (so a
# symlink planted at a predictable name is never followed), and the pid tells a later
# run whether the writer is still alive or the file is a leftover of a killed one.
TEMP_MARK = ".tmp-"
_NAME_BYTES_IN_TEMP = 100  # leaves room for the mark, pid and random part under 255 bytes


def temp_name_prefix(name: str) -> str:
    """``.<name>.tmp-``, the name cut to 100 bytes: how every temporary file or folder made for ``name`` starts."""
    short = name.encode("utf-8", "surrogateescape")[:_NAME_BYTES_IN_TEMP].decode("utf-8", "ignore")
    return f".{short}{TEMP_MARK}"


def _own_temp_prefix(name: str) -> str:
    return f"{temp_name_prefix(name)}{os.getpid()}-"


def _umask() -> int:
    try:  # Linux: read it without changing it (changing it races with other threads)
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("Umask:"):
                return int(line.split()[1], 8)
    except (OSError, ValueError, IndexError):
        pass
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


def default_mode(folder: bool = False) -> int:
    """The permissions ``open``/``mkdir`` would give a new file (or folder) under the current umask."""
    return (0o777 if folder else 0o666) & ~_umask()


def fsync_folder(folder: Path) -> None:
    """Make a rename or new file in ``folder`` survive a power cut (a no-op where folders cannot be synced)."""
    if os.name == "nt":
        return
    fd = os.open(folder, os.O_RDONLY)
    try:
        os.fsync(fd)
    except OSError as exc:
        if exc.errno not in (errno.EINVAL, errno.ENOTSUP):  # file systems that do not sync folders
            raise
    finally:
        os.close(fd)


def write_temp_beside(path: Path, data: bytes) -> Path:
    """``data`` in a new, uniquely named, synced file in ``path``'s folder, with ``path``'s permissions (if it
    exists) or the default ones; the caller renames it into place or removes it. Removed again on failure."""
    path = Path(path)
    fd, name = tempfile.mkstemp(prefix=_own_temp_prefix(path.name), dir=path.parent)
    tmp = Path(name)
    try:
        with os.fdopen(fd, "wb") as handle:
            handle.write(data)
            handle.flush()
            try:
                mode = os.stat(path).st_mode & 0o7777
            except OSError:
                mode = default_mode()
            os.chmod(tmp, mode)  # mkstemp makes it 0600
            os.fsync(handle.fileno())
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    return tmp


def atomic_write_bytes(path: Path, data: bytes) -> None:
    """Write a file so that a reader sees the old or the new content, never half of it.

    The data goes to a unique temporary file in the same folder (see
    :func:`write_temp_beside`), is synced, renamed over ``path``, and the folder
    is synced so the rename is durable. On any failure the temporary file is removed.
    """
    path = Path(path)
    tmp = write_temp_beside(path, data)
    try:
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    fsync_folder(path.parent)
