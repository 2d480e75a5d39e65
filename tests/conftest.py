"""Shared fixtures: an isolated fsarbench home per test, the shared split lists, a tiny synth."""

from __future__ import annotations

import os
from dataclasses import MISSING, fields
from pathlib import Path

import numpy as np
import pytest

from fsarbench.benchmarks.synth import SynthConfig
from fsarbench.results import RunRecord, record_path, write_record

REPO = Path(__file__).resolve().parents[1]
# Tests and CI read the real split lists from the shared folder beside the checkout; the
# project itself never ships them (users fetch them from their pinned public sources).
SHARED_SPLITS = Path(os.environ.get("FSARBENCH_SHARED_SPLITS", REPO.parent / "shared" / "splits"))
SHARED_FOLDERS = {
    "ssv2-full": "ssv2_full",
    "ssv2-small": "ssv2_small",
    "k100": "kinetics100",
    "ucf101": "ucf101",
    "hmdb51": "hmdb51",
}
# Small enough to generate in a couple of seconds, large enough for 5-way 1-shot episodes.
TINY_SYNTH = SynthConfig(seed=3, videos_per_class=3, frames=8, size=32)
# The multi-process tests (concurrency, DDP, Slurm) train: a small synth with the 6 videos per
# class a training episode draws (1 shot + 5 queries) and more, and a short recipe.
SMALL_SYNTH = ["--synth", "seed=3,videos_per_class=8,frames=8,size=32"]


def short_recipe(meta_iters: int = 20, *extra: str) -> list[str]:
    """``--cfg-options`` of a pretraining of 20 iterations and ``meta_iters`` of episodic
    training, checkpointed and validated (20 episodes) every 10."""
    return [
        "--cfg-options",
        "schedule.pretrain.iters=20",
        "schedule.pretrain.checkpoint_interval=10",
        f"schedule.meta.iters={meta_iters}",
        "schedule.meta.val_interval=10",
        "schedule.meta.val_episodes=20",
        *extra,
    ]


@pytest.fixture(autouse=True)
def fsarbench_home(tmp_path_factory, monkeypatch) -> Path:
    home = tmp_path_factory.mktemp("home")
    monkeypatch.setenv("FSARBENCH_HOME", str(home))
    return home


@pytest.fixture(autouse=True)
def one_job_in_process(monkeypatch) -> None:
    """``fsarbench run`` called in this process runs its runs here, one after another, so the
    tests' monkeypatches reach them (worker processes would not see them). The tests that
    start `fsarbench` as a subprocess get the default (a worker per core) or say --jobs."""
    monkeypatch.setattr("fsarbench.runs.default_jobs", lambda device, threads: 1)


@pytest.fixture
def shared_splits() -> Path:
    if not SHARED_SPLITS.is_dir():
        pytest.skip(f"the shared split lists are not at {SHARED_SPLITS}")
    return SHARED_SPLITS


def split_source(benchmark: str) -> Path:
    folder = SHARED_SPLITS / SHARED_FOLDERS[benchmark]
    if not folder.is_dir():
        pytest.skip(f"the shared split lists are not at {SHARED_SPLITS}")
    return folder


@pytest.fixture(scope="session")
def tiny_synth_home(tmp_path_factory) -> Path:
    """One tiny synth, generated once per session under its own home (read-only for tests)."""
    from fsarbench.benchmarks.synth import generate_synth

    home = tmp_path_factory.mktemp("synth-home")
    previous = os.environ.get("FSARBENCH_HOME")
    os.environ["FSARBENCH_HOME"] = str(home)
    try:
        generate_synth(TINY_SYNTH, progress=False)
    finally:
        if previous is None:
            os.environ.pop("FSARBENCH_HOME", None)
        else:
            os.environ["FSARBENCH_HOME"] = previous
    return home


@pytest.fixture
def own_synth_home(tiny_synth_home, tmp_path_factory, monkeypatch) -> Path:
    """A copy of the session's tiny synth home, the test's own: to damage, or to fill with
    stored features and stages that other tests expect to compute themselves."""
    import shutil

    copy = tmp_path_factory.mktemp("own") / "home"
    shutil.copytree(tiny_synth_home, copy)
    monkeypatch.setenv("FSARBENCH_HOME", str(copy))
    return copy


@pytest.fixture(scope="session")
def standin_weights(tmp_path_factory) -> dict[str, Path]:
    """Random-init small CLIP and VideoMAE models saved as the real checkpoints are (Hugging
    Face folders), once per session: the loading path without any download."""
    from fsarbench.methods.hf_backbones import save_standin

    root = tmp_path_factory.mktemp("standin-weights")
    return {
        "clip": save_standin("clip", root / "clip"),
        "videomae": save_standin("videomae", root / "videomae"),
        "videomae-finetuned": save_standin("videomae", root / "videomae-ft", fine_tuned_labels=5),
    }


def make_record(method, accuracies, seed=0, training="pretrain+frozen", k_shot=1, **kw):
    """A record with the fields a comparison reads; the rest are placeholders."""
    required = [
        f for f in fields(RunRecord) if f.default is MISSING and f.default_factory is MISSING
    ]
    values = {f.name: None for f in required}
    accuracies = [float(a) for a in accuracies]
    values.update(
        method=method,
        backbone="resnet18_synth",
        benchmark="synth",
        training=training,
        protocol_name="synth-5way",
        protocol_version=1,
        n_way=5,
        k_shot=k_shot,
        queries_per_class=1,
        seed=seed,
        n_episodes=len(accuracies),
        acc_mean=100 * float(np.mean(accuracies)),
        acc_ci95=0.0,
        episode_accuracies=accuracies,
        episode_set_hash=f"episodes-seed{seed}-shot{k_shot}",
        breakdown={},
        notes=[],
        schema_version=1,
    )
    values.update(kw)
    return RunRecord(**values)


def write_records(records, results):
    for r in records:
        name = f"{r.protocol_name}-{r.k_shot}shot-seed{r.seed}"
        write_record(r, record_path(results, r.benchmark, r.method, r.backbone, r.training, name))


@pytest.fixture(scope="session")
def slurm_cluster(tmp_path_factory):
    """A real one-node Slurm (Debian's slurmctld, slurmd and munge) for the session; the tests
    that use it skip, with the reason, where it cannot start (not root, not installed)."""
    from slurm_cluster import slurm_or_skip

    cluster = slurm_or_skip(tmp_path_factory.mktemp("slurm"))
    yield cluster
    cluster.stop()


@pytest.fixture
def slurm_env(slurm_cluster, monkeypatch):
    """That cluster's client environment (SLURM_CONF, PATH) for one test."""
    slurm_cluster.patch_env(monkeypatch)
    return slurm_cluster
