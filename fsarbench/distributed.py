"""Several processes training one run: the ranks of a DDP training (torchrun or srun).

``fsarbench run ... --launcher pytorch`` under ``torchrun --nproc-per-node N`` (or
``--launcher slurm`` under ``srun``) makes each process one rank. The shared stages (data,
pretraining, feature stores) are computed before the process group exists, by whichever rank
takes their lock first; the others wait on the lock and read them. Then the ranks train each
run together through MMEngine's Runner and its DDP wrapper, each taking its own deterministic
share of every optimizer step's tasks, and rank 0 alone tests it and writes the record.

The process group is initialised here rather than by MMEngine, whose ``init_dist`` sets a CUDA
device even for gloo on a CPU-only torch.
"""

from __future__ import annotations

import datetime
import os
import subprocess

import torch

from fsarbench.errors import FsarbenchError

# Rank 0 may test a run for a long time while the others wait at the next collective.
PROCESS_GROUP_TIMEOUT = datetime.timedelta(hours=12)


def _slurm_environment() -> None:
    """torchrun's variables from srun's: the ranks are the job's tasks; the first node is the
    rendezvous, on a port derived from the job id (two jobs on one node do not clash)."""
    nodes = subprocess.run(
        ["scontrol", "show", "hostnames", os.environ["SLURM_JOB_NODELIST"]],
        capture_output=True,
        text=True,
        check=True,
    ).stdout.split()
    os.environ.setdefault("MASTER_ADDR", nodes[0])
    os.environ.setdefault("MASTER_PORT", str(20000 + int(os.environ["SLURM_JOB_ID"]) % 20000))
    os.environ["RANK"] = os.environ["SLURM_PROCID"]
    os.environ["WORLD_SIZE"] = os.environ["SLURM_NTASKS"]
    os.environ["LOCAL_RANK"] = os.environ["SLURM_LOCALID"]


def init_distributed(launcher: str, device: str = "auto") -> None:
    """Join the process group of the ranks started by ``launcher`` (pytorch, slurm)."""
    import torch.distributed as dist

    if dist.is_available() and dist.is_initialized():
        return
    if launcher == "slurm":
        if "SLURM_PROCID" not in os.environ:
            raise FsarbenchError(
                "--launcher slurm: this process was not started by srun (no SLURM_PROCID)",
                "start it with srun, or use --launcher pytorch under torchrun",
            )
        _slurm_environment()
    elif launcher == "pytorch":
        if "RANK" not in os.environ or "WORLD_SIZE" not in os.environ:
            raise FsarbenchError(
                "--launcher pytorch: this process was not started by torchrun (no RANK)",
                "start it with torchrun --nproc-per-node N -m fsarbench run ...",
            )
    else:
        raise FsarbenchError(f"unknown launcher {launcher!r}", "use none, pytorch or slurm")
    cuda = device != "cpu" and torch.cuda.is_available()
    if cuda:
        torch.cuda.set_device(int(os.environ.get("LOCAL_RANK", 0)))
    dist.init_process_group("nccl" if cuda else "gloo", timeout=PROCESS_GROUP_TIMEOUT)


def world_size() -> int:
    import torch.distributed as dist

    return dist.get_world_size() if dist.is_available() and dist.is_initialized() else 1


def rank() -> int:
    """This process's rank; before the process group exists, the one its launcher gave it."""
    import torch.distributed as dist

    if dist.is_available() and dist.is_initialized():
        return dist.get_rank()
    return int(os.environ.get("RANK", 0))


def is_main_process() -> bool:
    return rank() == 0


def broadcast_from_main(value):
    """Rank 0's ``value`` on every rank (the value itself without a process group)."""
    if world_size() == 1:
        return value
    import torch.distributed as dist

    box = [value]
    dist.broadcast_object_list(box, src=0)
    return box[0]


def local_device(device: str) -> str:
    """A rank's device: its own GPU (LOCAL_RANK) under a launcher on CUDA, else ``device``."""
    if world_size() > 1 and device.startswith("cuda"):
        return f"cuda:{os.environ.get('LOCAL_RANK', 0)}"
    return device
