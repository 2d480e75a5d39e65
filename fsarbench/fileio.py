"""Writes that never leave a half-written file or folder behind."""

from __future__ import annotations

import glob
import os
import shutil
import socket
import tempfile
from pathlib import Path


def install_folder(staging: Path, final: Path) -> None:
    """Swap a completely written ``staging`` folder into ``final``, replacing what was there."""
    final.parent.mkdir(parents=True, exist_ok=True)
    if final.exists():
        trash = final.with_name(final.name + ".old")
        shutil.rmtree(trash, ignore_errors=True)
        os.replace(final, trash)
        os.replace(staging, final)
        shutil.rmtree(trash, ignore_errors=True)
    else:
        os.replace(staging, final)


def staging_folder(final: Path) -> Path:
    """A fresh hidden folder beside ``final`` (same file system, so the final rename is atomic),
    named for its host and process; staging folders of ``final`` that a dead process of this
    host left (killed before it could clean up) are removed first."""
    final.parent.mkdir(parents=True, exist_ok=True)
    remove_abandoned_staging(final)
    owner = f"{socket.gethostname()}.{os.getpid()}"
    return Path(tempfile.mkdtemp(prefix=f".{final.name}-{owner}-", dir=final.parent))


def remove_abandoned_staging(final: Path) -> list[Path]:
    """Remove the staging folders of ``final`` whose process, on this host, is gone; another
    host's (a shared file system) are left to it. Returns what was removed."""
    host = socket.gethostname()
    removed = []
    for folder in final.parent.glob(f".{glob.escape(final.name)}-{glob.escape(host)}.*-*"):
        pid = folder.name[len(f".{final.name}-{host}.") :].split("-", 1)[0]
        if folder.is_dir() and pid.isdigit() and not _alive(int(pid)):
            shutil.rmtree(folder, ignore_errors=True)
            removed.append(folder)
    return removed


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # another user's process: alive
        return True
    return True


def atomic_write_text(path: Path, text: str) -> None:
    atomic_write_bytes(path, text.encode())


def atomic_write_bytes(path: Path, data: bytes) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    handle, temporary = tempfile.mkstemp(prefix=f".{path.name}-", dir=path.parent)
    try:
        with os.fdopen(handle, "wb") as stream:
            stream.write(data)
        # mkstemp makes the file private (0600); give it the mode a plain open() would
        umask = os.umask(0)
        os.umask(umask)
        os.chmod(temporary, 0o666 & ~umask)
        os.replace(temporary, path)
    except BaseException:
        Path(temporary).unlink(missing_ok=True)
        raise


def check_writable_folder(folder: Path, option: str) -> None:
    """Refuse, before any compute, an output folder (``option`` names it in the message) that
    cannot take files: a file in its place or along its path, no write permission, a
    read-only or full file system. Creates nothing that was not there: the probe goes to the
    nearest existing folder and is removed."""
    from fsarbench.errors import FsarbenchError

    folder = folder.expanduser()
    existing = folder
    while not existing.exists() and existing != existing.parent:
        existing = existing.parent
    if not existing.is_dir():
        raise FsarbenchError(
            f"{option} {folder}: {existing} is a file, not a folder",
            f"name a folder for {option} (it is created when absent), or move the file",
        )
    try:
        with tempfile.NamedTemporaryFile(prefix=".fsarbench-probe-", dir=existing) as probe:
            probe.write(b"\0" * 4096)
            probe.flush()
            os.fsync(probe.fileno())
    except OSError as error:
        raise FsarbenchError(
            f"{option} {folder}: cannot write in {existing} ({error.strerror or error})",
            f"make it writable or free space there, or point {option} elsewhere",
        ) from None
