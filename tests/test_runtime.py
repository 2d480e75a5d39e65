"""Device selection and mixed precision: what works on a CPU-only machine, and clear errors for
what needs CUDA."""

from __future__ import annotations

import shutil

import pytest
import torch

from fsarbench.cli import main
from fsarbench.errors import FsarbenchError
from fsarbench.registry import MODELS
from fsarbench.results import load_record
from fsarbench.runtime import autocast, check_amp, embed_batch_videos, resolve_device


def test_auto_picks_what_is_there_and_cuda_is_checked():
    assert resolve_device("auto") == ("cuda" if torch.cuda.is_available() else "cpu")
    assert resolve_device("cpu") == "cpu"
    with pytest.raises(FsarbenchError, match="unknown device"):
        resolve_device("tpu")
    if not torch.cuda.is_available():
        with pytest.raises(FsarbenchError, match="no CUDA device here"):
            resolve_device("cuda:0")


def test_fp16_needs_cuda_and_bf16_runs_on_cpu():
    with pytest.raises(FsarbenchError, match="fp16 needs a CUDA device"):
        check_amp("fp16", "cpu")
    with pytest.raises(FsarbenchError, match="unknown --amp"):
        check_amp("int8", "cpu")
    check_amp("bf16", "cpu")
    model = MODELS.build(
        dict(type="protonet", backbone=dict(type="FrameResNet", depth=18, num_stages=1))
    )
    clips = torch.randint(0, 255, (2, 2, 3, 32, 32), dtype=torch.uint8)
    full = model.embed(clips)
    model.amp = "bf16"
    half = model.embed(clips)
    assert half.dtype == torch.float32  # heads always get float32
    assert not torch.equal(half, full) and torch.allclose(half, full, atol=0.1, rtol=0.05)
    with autocast("cpu", None):
        assert torch.get_autocast_dtype("cpu") is not None  # a no-op context


def test_the_embedding_batch_is_the_configured_one_on_cpu():
    calls = []
    assert embed_batch_videos(lambda: calls.append(1), 16, "cpu") == 16
    assert calls == []  # nothing probed on CPU


def test_a_bf16_run_is_recorded_apart(tiny_synth_home, tmp_path, monkeypatch, capsys):
    home = tmp_path / "home"
    shutil.copytree(tiny_synth_home, home)
    monkeypatch.setenv("FSARBENCH_HOME", str(home))
    results = tmp_path / "results"
    argv = [
        "run",
        "--methods",
        "protonet",
        "--datasets",
        "synth",
        "--synth",
        "seed=3,videos_per_class=3,frames=8,size=32",
        "--train",
        "none",
        "--seeds",
        "0",
        "--shots",
        "1",
        "--episodes",
        "20",
        "--results-dir",
        str(results),
    ]
    assert main(argv) == 0
    assert main([*argv, "--amp", "bf16"]) == 0
    out = capsys.readouterr().out
    assert "skipped" not in out  # another identity: run again, not served the float32 record
    paths = sorted(results.glob("runs/**/*.json"))
    assert len(paths) == 2  # both kept: the float32 record is not overwritten
    record = load_record(next(p for p in paths if "@bf16" in str(p)))
    assert record.amp == "bf16" and record.device == "cpu"
    assert record.backbone == "resnet18_synth@bf16"
    assert main([*argv, "--amp", "fp16", "--device", "cpu"]) == 2
