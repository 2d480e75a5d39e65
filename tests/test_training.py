"""Meta-training through MMEngine's Runner on a tiny synth: stages, selection, resume."""

from __future__ import annotations

import hashlib
import json
import os
import pickle
import shutil
import signal
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest
import torch

from conftest import TINY_SYNTH
from fsarbench.benchmarks.prepare import require_prepared
from fsarbench.benchmarks.registry import get_benchmark
from fsarbench.cli import main
from fsarbench.data.episodes import EpisodeDrawer, split_videos
from fsarbench.errors import FsarbenchError
from fsarbench.runs import SuiteOptions, run_one
from fsarbench.training import (
    EpisodicTrainData,
    IndexedTrainLoop,
    _load_local_checkpoint,
    work_root,
)

SYNTH = get_benchmark("synth")
TINY_SCHEDULE = {
    "protocol.queries_per_class_train": 2,
    "schedule.meta.iters": 6,
    "schedule.meta.val_interval": 2,
    "schedule.meta.val_episodes": 10,
    "schedule.meta.log_interval": 2,
    "schedule.pretrain.iters": 4,
    "schedule.pretrain.checkpoint_interval": 2,
    "schedule.pretrain.batch_videos": 4,
    "schedule.pretrain.log_interval": 2,
    "evaluation.num_workers": 0,
}


@pytest.fixture
def home(tiny_synth_home, monkeypatch, tmp_path):
    # Training writes work folders: a fresh home that shares the tiny synth's videos.
    home = tmp_path / "home"
    (home / "cache").mkdir(parents=True)
    (home / "cache" / "synth").symlink_to(tiny_synth_home / "cache" / "synth")
    monkeypatch.setenv("FSARBENCH_HOME", str(home))
    return home


def run(method, results, training, pretrain=False, seed=0, cfg_options=None, **kw):
    options = SuiteOptions(
        results_dir=results,
        progress=False,
        synth=TINY_SYNTH,
        training=training,
        pretrain=pretrain,
        cfg_options={**TINY_SCHEDULE, **(cfg_options or {})},
        **kw,
    )
    return run_one(method, SYNTH, None, 1, seed, 20, None, options)


def test_training_episode_i_is_a_function_of_seed_and_i(home):
    prepared, folder = require_prepared(SYNTH, TINY_SYNTH)
    from fsarbench.data.pipelines import build_pipeline
    from fsarbench.registry import DATASETS

    clips = DATASETS.build(
        dict(
            type="FewShotClipDataset",
            benchmark="synth",
            split="train",
            test_mode=False,
            synth={k: getattr(TINY_SYNTH, k) for k in TINY_SYNTH.__dataclass_fields__},
            pipeline=build_pipeline(
                dict(num_frames=8, resize_short=32, crop=24, hflip=True), train=True
            ),
        )
    )
    drawer = EpisodeDrawer(split_videos(prepared, folder, "train"), 5, 1, 2)
    first, second = (EpisodicTrainData(drawer, 7, 10, clips=clips) for _ in range(2))
    np.random.seed(123)  # global state must not matter
    a = first[3]
    np.random.seed(999)
    b = second[3]
    assert torch.equal(a["support"], b["support"]) and torch.equal(a["query"], b["query"])
    assert torch.equal(a["support_labels"], b["support_labels"])
    assert not torch.equal(first[4]["support"], a["support"])
    assert a["support"].shape == (5, 8, 3, 24, 24) and a["query"].shape == (10, 8, 3, 24, 24)


def test_finetune_selects_on_val_and_records_it(home, tmp_path):
    outcome = run("protonet", tmp_path / "results", "finetune")
    record = outcome.record
    assert record.training == "finetune" and record.train_iterations == 6
    assert record.best_val_acc is not None and 0 <= record.best_val_acc <= 100
    work = list((work_root()).rglob("done.json"))
    assert len(work) == 1
    assert (work[0].parent / "scalars.json").exists() or list(work[0].parent.rglob("scalars.json"))
    # The tested weights are the selected ones, not the initial ones.
    untrained = run("protonet", tmp_path / "results", "none").record
    assert record.backbone_weights_hash != untrained.backbone_weights_hash


def test_a_finished_run_is_not_trained_again(home, tmp_path, monkeypatch):
    first = run("protonet", tmp_path / "results", "finetune").record

    def refuse(*args, **kwargs):
        raise AssertionError("trained again")

    monkeypatch.setattr(IndexedTrainLoop, "run_iter", refuse)
    again = run("protonet", tmp_path / "results", "finetune", force=True).record
    assert again.episode_accuracies == first.episode_accuracies


def test_interrupted_training_resumes_to_the_same_result(home, tmp_path, monkeypatch):
    reference = run("protonet", tmp_path / "reference", "finetune", seed=1).record
    for done in list(work_root().rglob("done.json")):  # start over in the same home
        shutil.rmtree(done.parent)

    original = IndexedTrainLoop.run_iter

    def interrupted(self, data_batch):
        if self._iter == 3:
            raise KeyboardInterrupt
        original(self, data_batch)

    monkeypatch.setattr(IndexedTrainLoop, "run_iter", interrupted)
    with pytest.raises(KeyboardInterrupt):
        run("protonet", tmp_path / "resumed", "finetune", seed=1)
    assert not (tmp_path / "resumed" / "runs").exists()  # no record from a broken run
    monkeypatch.setattr(IndexedTrainLoop, "run_iter", original)
    resumed = run("protonet", tmp_path / "resumed", "finetune", seed=1).record
    assert resumed.episode_accuracies == reference.episode_accuracies
    assert resumed.checkpoint_hash == reference.checkpoint_hash


KILL_AT_ITERATION = """
import os, signal, sys
from pathlib import Path
sys.path.insert(0, {tests!r})
from test_training import run
from fsarbench.training import IndexedTrainLoop

original = IndexedTrainLoop.run_iter

def killed(self, data_batch):
    if self._iter == 3:
        os.kill(os.getpid(), signal.SIGKILL)  # no clean-up, no exception handlers
    original(self, data_batch)

IndexedTrainLoop.run_iter = killed
run("protonet", Path({results!r}), "finetune", pretrain={pretrain}, seed=1)
"""


@pytest.mark.slow
@pytest.mark.parametrize("pretrain", [False, True], ids=["killed-in-meta", "killed-in-pretrain"])
def test_a_killed_run_resumes_to_the_same_result(home, tmp_path, pretrain):
    """SIGKILL mid-training (after the checkpoint at iteration 2), then start again: the same
    test accuracies and weights as a run that was never interrupted."""
    reference = run("protonet", tmp_path / "reference", "finetune", pretrain=pretrain, seed=1)
    shutil.rmtree(work_root())  # start over in the same home, training included
    script = KILL_AT_ITERATION.format(
        tests=str(Path(__file__).parent), results=str(tmp_path / "resumed"), pretrain=pretrain
    )
    killed = subprocess.run(
        [sys.executable, "-c", textwrap.dedent(script)],
        env={**os.environ, "FSARBENCH_HOME": str(home)},
        capture_output=True,
        text=True,
    )
    assert killed.returncode == -signal.SIGKILL, killed.stderr[-2000:]
    assert not (tmp_path / "resumed" / "runs").exists()  # no record from a killed run
    assert list(work_root().rglob("last_checkpoint"))  # it got as far as a checkpoint
    resumed = run("protonet", tmp_path / "resumed", "finetune", pretrain=pretrain, seed=1)
    assert resumed.record.episode_accuracies == reference.record.episode_accuracies
    assert resumed.record.checkpoint_hash == reference.record.checkpoint_hash


def test_a_truncated_checkpoint_is_skipped_on_resume(tmp_path, home):
    from fsarbench.training import repair_resume_point

    work = work_root() / "run"
    work.mkdir(parents=True)
    torch.save({"state_dict": {}}, work / "iter_2.pth")
    (work / "iter_4.pth").write_bytes((work / "iter_2.pth").read_bytes()[:20])  # cut short
    (work / "last_checkpoint").write_text(str(work / "iter_4.pth"))
    assert repair_resume_point(work) == work / "iter_2.pth"
    assert (work / "last_checkpoint").read_text() == str(work / "iter_2.pth")
    assert not (work / "iter_4.pth").exists()
    (work / "last_checkpoint").write_text("")  # killed while MMEngine rewrote the pointer
    assert repair_resume_point(work) == work / "iter_2.pth"


def test_pretrain_then_frozen_head_training(home, tmp_path):
    record = run("protonet_tsn_ln_dot", tmp_path / "results", "frozen", pretrain=True).record
    assert record.training == "pretrain+frozen" and record.train_iterations == 6
    # ProtoNet's Euclidean metric has nothing to train on a frozen backbone: pretraining only.
    plain = run("protonet", tmp_path / "results", "frozen", pretrain=True).record
    assert plain.train_iterations == 0 and plain.training == "pretrain+frozen"
    # Both used the same pretrained backbone (one pretraining stage, shared).
    assert plain.backbone_weights_hash == record.backbone_weights_hash
    assert len(list(work_root().rglob("backbone.pth"))) == 1


def test_a_fixed_pretraining_seed_gives_one_stage_for_every_run_seed(home, tmp_path):
    fixed = {"schedule.pretrain.seed": 5}
    first = run("protonet", tmp_path, "frozen", pretrain=True, seed=1, cfg_options=fixed).record
    second = run("protonet", tmp_path, "frozen", pretrain=True, seed=2, cfg_options=fixed).record
    assert len(list(work_root().rglob("backbone.pth"))) == 1
    assert first.backbone_weights_hash == second.backbone_weights_hash
    # Without a fixed seed each run seed pretrains its own backbone from its own init.
    third = run("protonet", tmp_path, "frozen", pretrain=True, seed=3).record
    assert third.backbone_weights_hash != first.backbone_weights_hash
    assert len(list(work_root().rglob("backbone.pth"))) == 2


def test_the_thread_count_is_part_of_every_training_stage(home, tmp_path, capsys):
    """A training on CPU gives its bits at one thread count: another count trains its own
    stages (never reuses the other's), records its count, and is still the same run."""
    threads_before = torch.get_num_threads()
    try:
        one = run("protonet_tsn_ln_dot", tmp_path / "one", "frozen", pretrain=True, threads=1)
        # the plan finds the stages that count trained, and none for another count
        cli = ["run", "--methods", "protonet_tsn_ln_dot", "--shots", "1", "--seeds", "0"]
        cli += ["--episodes", "20", "--synth", "seed=3,videos_per_class=3,frames=8,size=32"]
        cli += ["--train", "frozen", "--pretrain", "--results-dir", str(tmp_path / "plan")]
        cli += ["--cfg-options", *(f"{k}={v}" for k, v in TINY_SCHEDULE.items()), "--dry-run"]
        assert main([*cli, "--threads", "1"]) == 0
        assert "[done] pretrain" in capsys.readouterr().out
        assert main([*cli, "--threads", "2"]) == 0
        assert "[to do] pretrain" in capsys.readouterr().out
        two = run("protonet_tsn_ln_dot", tmp_path / "two", "frozen", pretrain=True, threads=2)
    finally:
        torch.set_num_threads(threads_before)
    assert (one.record.threads, two.record.threads) == (1, 2)
    assert one.record.config_hash == two.record.config_hash  # not another experiment
    assert len(list(work_root().rglob("backbone.pth"))) == 2  # a pretraining per count
    episodic = sorted(p.name.rpartition("-")[2] for p in work_root().rglob("*shot-seed0-*"))
    assert episodic == ["threads1", "threads2"]  # and an episodic training per count


def test_changed_data_is_never_served_stale_weights_or_records(
    tiny_synth_home, tmp_path, monkeypatch
):
    # a home of its own: the train list is rewritten below, as a regenerated benchmark would be
    home = tmp_path / "home"
    shutil.copytree(tiny_synth_home, home)
    monkeypatch.setenv("FSARBENCH_HOME", str(home))
    fixed = {"schedule.pretrain.seed": 5}
    first = run("protonet", tmp_path, "frozen", pretrain=True, cfg_options=fixed)
    assert run("protonet", tmp_path, "frozen", pretrain=True, cfg_options=fixed).skipped
    (train_list,) = home.rglob("prepared/train.txt")
    lines = train_list.read_text().splitlines(keepends=True)
    train_list.write_text("".join(reversed(lines)))  # the same videos, other bytes
    # ... as a new `prepare` writes them: the manifest holds the new list's sha256 (an edit
    # that it does not hold is corruption, and synth is generated again)
    manifest = train_list.with_name("prepared.json")
    prepared = json.loads(manifest.read_text())
    prepared["splits"]["train"]["sha256"] = hashlib.sha256(train_list.read_bytes()).hexdigest()
    manifest.write_text(json.dumps(prepared))
    again = run("protonet", tmp_path, "frozen", pretrain=True, cfg_options=fixed)
    assert not again.skipped and "data changed" in again.record.notes[0]
    assert again.record.config_hash != first.record.config_hash
    assert len(list(work_root().rglob("backbone.pth"))) == 2  # pretrained again


def test_checkpoint_loader_trusts_only_fsarbench_files(home, tmp_path):
    payload = {"state_dict": {"w": torch.zeros(2)}, "meta": np.float64(1.0)}
    inside = work_root() / "x" / "run.pth"
    inside.parent.mkdir(parents=True)
    torch.save(payload, inside)
    assert _load_local_checkpoint(str(inside))["meta"] == 1.0
    outside = tmp_path / "foreign.pth"
    torch.save(payload, outside)
    with pytest.raises(pickle.UnpicklingError):
        _load_local_checkpoint(str(outside))


def test_unknown_training_mode(home, tmp_path):
    with pytest.raises(FsarbenchError, match="unknown training mode"):
        run("protonet", tmp_path, "sometimes")
