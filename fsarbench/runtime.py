"""Where and how the arithmetic runs: device selection, CPU threads, mixed precision, embedding
batch size.

None of these decide a run's identity except mixed precision, which the run config and the
record keep. The CPU thread count decides the bits a training on CPU produces (its reductions
are split by thread), so it is part of every training stage's key and of the record, though not
of the run's identity: like another GPU, another count gives an equally valid training, not
another experiment. Everything here works on a CPU-only machine: ``auto`` picks CUDA when there is
one, ``bf16`` autocasts on CPU as on CUDA, and only ``fp16`` (which needs loss scaling when
training) asks for CUDA.
"""

from __future__ import annotations

import contextlib
from typing import TYPE_CHECKING

from fsarbench.errors import FsarbenchError

if TYPE_CHECKING:
    import torch

# torch is imported by each function that needs it: the command line reads this module's
# defaults (``--threads``) without paying for torch's import.
AMP_DTYPES = {"bf16": "bfloat16", "fp16": "float16"}  # --amp: torch dtype names
# The share of free GPU memory one embedding batch may take: activations are measured on one
# video, and the allocator, the decode workers' pinned buffers and fragmentation need the rest.
EMBED_MEMORY_SHARE = 0.5
MAX_EMBED_BATCH = 512


def resolve_device(name: str) -> str:
    """``auto`` -> ``cuda`` when a CUDA device is visible, else ``cpu``; others are checked."""
    import torch

    if name == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    if name.startswith("cuda"):
        if not torch.cuda.is_available():
            raise FsarbenchError(
                f"--device {name}: no CUDA device here", "use --device cpu (or auto)"
            )
        index = name.partition(":")[2]
        if index and (not index.isdigit() or int(index) >= torch.cuda.device_count()):
            raise FsarbenchError(
                f"--device {name}: there are {torch.cuda.device_count()} CUDA devices",
                "use cuda:0 .. cuda:N-1, or auto",
            )
        return name
    if name != "cpu":
        raise FsarbenchError(f"unknown device {name!r}", "use auto, cpu or cuda[:N]")
    return name


# torch's default is one thread per core: a record would then depend on the machine's core
# count, and on a loaded machine a small head's loop runs many times slower than on one thread.
DEFAULT_THREADS = 1


def use_threads(threads: int) -> None:
    """Set torch's intra-op CPU threads for this process (``--threads``): before a run or a
    stage computes anything, so every training on CPU in it uses the same count."""
    import torch

    if torch.get_num_threads() != threads:
        torch.set_num_threads(threads)


def training_threads(device: torch.device | str, threads: int | None = None) -> int | None:
    """What a training stage's key holds of the arithmetic: on CPU, the thread count (another
    count gives other weights): ``threads``, what a process will use (a plan, before it sets
    it), else this process's; on CUDA, None (CPU threads do not do its sums)."""
    import torch

    if torch.device(device).type != "cpu":
        return None
    return torch.get_num_threads() if threads is None else threads


def check_amp(amp: str | None, device: str) -> None:
    if amp is None:
        return
    if amp not in AMP_DTYPES:
        raise FsarbenchError(f"unknown --amp {amp!r}", f"use {' or '.join(AMP_DTYPES)}")
    if amp == "fp16" and not device.startswith("cuda"):
        raise FsarbenchError(
            "--amp fp16 needs a CUDA device (float16 autocast and loss scaling)",
            "use --amp bf16 on CPU, or --device cuda",
        )


def autocast(device: torch.device | str, amp: str | None):
    """``torch.autocast`` for the backbone's forward, or nothing when ``amp`` is None."""
    import torch

    if amp is None:
        return contextlib.nullcontext()
    device_type = torch.device(device).type
    return torch.autocast(device_type=device_type, dtype=getattr(torch, AMP_DTYPES[amp]))


def embed_batch_videos(probe, configured: int, device: torch.device | str) -> int:
    """Videos per embedding batch: ``configured`` on CPU; on CUDA, as many as fit in
    ``EMBED_MEMORY_SHARE`` of the free memory, from the peak memory of ``probe()`` (one video
    embedded), never fewer than one nor more than ``MAX_EMBED_BATCH``."""
    import torch

    device = torch.device(device)
    if device.type != "cuda":
        return configured
    torch.cuda.synchronize(device)
    baseline = torch.cuda.memory_allocated(device)
    torch.cuda.reset_peak_memory_stats(device)
    probe()
    torch.cuda.synchronize(device)
    per_video = max(1, torch.cuda.max_memory_allocated(device) - baseline)
    free, _ = torch.cuda.mem_get_info(device)
    return max(1, min(MAX_EMBED_BATCH, int(free * EMBED_MEMORY_SHARE // per_video)))
