"""Crash-safe file writes: a crash leaves the old file or the new one, never half of one."""

from __future__ import annotations

import os
from pathlib import Path


def write_atomic(path: str | os.PathLike, data: bytes, *, mode: int = 0o644, private: bool = False,
                 sync_folder: bool = True) -> Path:
    """Write ``data`` to ``path`` through a temporary file, fsync, rename, and fsync the folder.

    Parameters
    ----------
    path : path-like
        The file to (re)place; missing parent folders are created.
    data : bytes
        The whole content.
    mode : int
        Permissions of the new file.
    private : bool
        Owner-only: the file gets 0600 and new parent folders 0700 (keystores, a node's saved updates).
    sync_folder : bool
        False leaves the folder's fsync to a later write in the same folder (or to none, when losing the rename to a
        power cut is harmless): the file is still whole, old or new, either way. A process crash loses no rename.
    """
    path = Path(path)
    if private:
        mode = 0o600
    path.parent.mkdir(mode=0o700 if private else 0o777, parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, mode)
    try:
        with os.fdopen(fd, "wb") as handle:
            handle.write(data)
            handle.flush()
            os.fsync(handle.fileno())
        os.chmod(tmp, mode)  # in case the temporary file existed with other permissions
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    if sync_folder:
        _fsync_dir(path.parent)
    return path


def _fsync_dir(directory: Path) -> None:
    # Makes the rename itself durable; some file systems refuse to open a folder, which is fine.
    try:
        fd = os.open(directory, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)
