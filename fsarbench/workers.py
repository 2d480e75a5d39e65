"""Worker processes (DataLoader workers, the synth generator's process pool) end with the
process that started them, however it ends.

A parent killed with SIGKILL has no chance to stop its workers: they would go on decoding or
writing videos into a staging folder nobody will install. On Linux each worker asks the kernel
for a signal when its parent dies (``prctl(PR_SET_PDEATHSIG)``); elsewhere this does nothing.
"""

from __future__ import annotations

import ctypes
import multiprocessing
import os
import signal
import sys

PR_SET_PDEATHSIG = 1  # <linux/prctl.h>


def end_with_parent(*_ignored) -> None:
    """Initializer of a worker process (a DataLoader's ``worker_init_fn`` passes the worker
    id, ignored): SIGKILL this worker when its parent exits."""
    if not sys.platform.startswith("linux"):
        return
    libc = ctypes.CDLL(None, use_errno=True)
    libc.prctl(PR_SET_PDEATHSIG, signal.SIGKILL)
    parent = multiprocessing.parent_process()
    # the parent may have died before the request took effect: then end now
    if parent is not None and parent.pid != os.getppid():
        os._exit(1)
