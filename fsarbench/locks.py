"""Shared stages that any number of processes compute exactly once.

A stage (the generated synth benchmark, a pretraining, a feature store, a run's training or
its record) is computed by whichever process first takes its lock; the others wait, then find
it done and read it. The lock is ``filelock.FileLock``: ``flock(2)`` on a lock file beside the
stage. The kernel releases it when its holder ends, however it ends (a SIGKILL, a preempted
Slurm job), so a dead holder never blocks the others, and the next process that takes it
resumes the stage from what the dead one left (checkpoints, the partial feature file): those
files are only ever written by the lock's holder, so nothing half-written is read or renamed
away under another process. Every other file fsarbench writes goes to a temporary name of its
own process first and is renamed into place (``fsarbench.fileio``).

The holder records itself (host, pid, since when, what) in ``<lock>.owner`` so that a waiting
process can say what it waits for, and ``fsarbench status`` what is running. Each computed
stage is appended to the cache's stage journal (``stages.jsonl``: what, key, host, pid,
seconds), which says which process computed what.

On a shared filesystem the lock needs working ``flock``: local disks, NFSv4 (and NFSv3 with
the lock daemon; Linux maps ``flock`` to NFS byte-range locks, which the server frees when a
crashed client's lease ends, about 90 s), GPFS, and Lustre mounted with ``-o flock``.
"""

from __future__ import annotations

import contextlib
import json
import os
import socket
import time
from collections.abc import Callable, Iterator
from datetime import datetime, timezone
from pathlib import Path
from typing import TypeVar

from filelock import FileLock, Timeout

from fsarbench.console import stderr
from fsarbench.fileio import atomic_write_text
from fsarbench.paths import cache_dir

T = TypeVar("T")
OWNER_SUFFIX = ".owner"


def owner_file(lock_path: Path) -> Path:
    return lock_path.with_name(lock_path.name + OWNER_SUFFIX)


def read_owner(lock_path: Path) -> dict | None:
    """The recorded holder of a lock, or None (free, or its record not readable)."""
    try:
        return json.loads(owner_file(lock_path).read_text())
    except (OSError, ValueError):
        return None


def is_held(lock_path: Path) -> bool:
    """Whether some process holds the lock now (tries it without waiting)."""
    if not lock_path.is_file():
        return False
    lock = FileLock(str(lock_path))
    try:
        lock.acquire(timeout=0)
    except Timeout:
        return True
    lock.release()
    return False


def describe_owner(owner: dict | None) -> str:
    if not owner:
        return "held by another process"
    return f"held by {owner['host']}:{owner['pid']} since {owner['since']}"


@contextlib.contextmanager
def stage_lock(lock_path: Path, what: str) -> Iterator[None]:
    """Hold the lock of one stage for the block; wait (saying once for whom) while another
    process holds it."""
    lock_path.parent.mkdir(parents=True, exist_ok=True)
    lock = FileLock(str(lock_path))
    try:
        lock.acquire(timeout=0)
    except Timeout:
        stderr.print(f"waiting for {what}: {describe_owner(read_owner(lock_path))}")
        lock.acquire()
    try:
        atomic_write_text(
            owner_file(lock_path),
            json.dumps(
                {
                    "host": socket.gethostname(),
                    "pid": os.getpid(),
                    "since": datetime.now(timezone.utc).isoformat(timespec="seconds"),
                    "what": what,
                }
            ),
        )
        yield
    finally:
        owner_file(lock_path).unlink(missing_ok=True)
        lock.release()


def compute_once(
    lock_path: Path,
    what: str,
    find: Callable[[], T | None],
    compute: Callable[[], T],
    kind: str,
) -> T:
    """``find()`` if the stage is done, else ``compute()`` under the stage's lock, by exactly
    one process. ``find`` is asked again once the lock is held: a process that waited finds
    what the holder computed instead of computing it again."""
    found = find()
    if found is not None:
        return found
    with stage_lock(lock_path, what):
        found = find()
        if found is not None:
            return found
        started = time.perf_counter()
        result = compute()
        journal_stage(kind, what, str(lock_path), time.perf_counter() - started)
        return result


def journal_file() -> Path:
    return cache_dir() / "stages.jsonl"


def journal_stage(kind: str, what: str, key: str, seconds: float) -> None:
    """Append one line for a computed stage; one ``write`` of one short line, so lines from
    concurrent processes do not interleave (``O_APPEND``)."""
    line = json.dumps(
        {
            "kind": kind,
            "what": what,
            "key": key,
            "host": socket.gethostname(),
            "pid": os.getpid(),
            "seconds": round(seconds, 3),
            "finished": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        }
    )
    path = journal_file()
    path.parent.mkdir(parents=True, exist_ok=True)
    descriptor = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o666)
    try:
        os.write(descriptor, (line + "\n").encode())
    finally:
        os.close(descriptor)


def read_journal() -> list[dict]:
    path = journal_file()
    if not path.is_file():
        return []
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]
