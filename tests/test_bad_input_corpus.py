"""The bad-input corpus: every case through the command line, as a user would meet it.

Each case asserts the exit code (2: bad input), that the message names the problem and says
the fix, that no traceback is printed, and that nothing half-written is left: the files under
the test's folder and the fsarbench home are as they were (locks and the stage journal aside).
"""

from __future__ import annotations

import errno
import json
import math
import os
from pathlib import Path

import pytest
import torch

from conftest import split_source
from fsarbench.cli import main
from fsarbench.registry import MODELS

TINY = "seed=3,videos_per_class=3,frames=8,size=32"
RUN = ["run", "--methods", "protonet", "--shots", "1", "--seeds", "0", "--episodes", "20"]
RUN += ["--train", "none", "--synth", TINY]
# bookkeeping that any command may leave: locks, their owners, the stage journal
IGNORED = (".lock", ".owner", "stages.jsonl")


@pytest.fixture
def home(own_synth_home):
    return own_synth_home


def snapshot(*roots: Path) -> dict[str, tuple[int, int]]:
    files = {}
    for root in roots:
        for path in root.rglob("*"):
            if path.is_file() and not path.name.endswith(IGNORED):
                files[str(path)] = (path.stat().st_size, path.stat().st_mtime_ns)
    return files


def results(tmp: Path) -> list[str]:
    return ["--results-dir", str(tmp / "results")]


def a_backbone(path: Path, num_stages: int = 3) -> Path:
    torch.manual_seed(0)
    torch.save(
        MODELS.build(dict(type="FrameResNet", depth=18, num_stages=num_stages)).state_dict(), path
    )
    return path


def write(path: Path, text: str | bytes) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    (path.write_bytes if isinstance(text, bytes) else path.write_text)(text)
    return path


def a_record(tmp: Path, **changes) -> Path:
    """A valid record of a tiny run, written by fsarbench itself, then changed."""
    folder = tmp / "good"
    assert main([*RUN, "--results-dir", str(folder)]) == 0
    (path,) = (folder / "runs").rglob("*.json")
    data = json.loads(path.read_text())
    data.update(changes)
    path.write_text(json.dumps(data))
    return folder


def a_baseline(tmp: Path, runs=None, nan: bool = False) -> tuple[Path, Path]:
    folder = a_record(tmp)
    baseline = tmp / "baseline.json"
    assert main(["check", "--write-baseline", str(baseline), "--results-dir", str(folder)]) == 0
    payload = json.loads(baseline.read_text())
    if runs is not None:
        payload["runs"] = runs
    if nan:
        payload["runs"][0]["episode_accuracies"][3] = math.nan
    baseline.write_text(json.dumps(payload))
    return baseline, folder


# (id, argv from the test folder, a fragment of the problem, a fragment of the fix)
CASES = [
    (
        "unknown method",
        lambda t: [*RUN, "--methods", "otam9", *results(t)],
        "unknown method 'otam9'",
        "fsarbench ls methods",
    ),
    (
        "unknown benchmark",
        lambda t: [*RUN, "--datasets", "ssv9", *results(t)],
        "unknown benchmark 'ssv9'",
        "fsarbench ls benchmarks",
    ),
    (
        "zero shots",
        lambda t: [*RUN, "--shots", "0", *results(t)],
        "--shots 0 is out of range",
        "from 1 to",
    ),
    (
        "zero ways",
        lambda t: [*RUN, "--ways", "0", *results(t)],
        "--ways 0 is out of range",
        "from 2 to",
    ),
    (
        "one way",
        lambda t: [*RUN, "--ways", "1", *results(t)],
        "--ways 1 is out of range",
        "from 2 to",
    ),
    (
        "zero queries",
        lambda t: [*RUN, "--queries", "0", *results(t)],
        "--queries 0 is out of range",
        "from 1 to",
    ),
    (
        "one episode",
        lambda t: [*RUN, "--episodes", "1", *results(t)],
        "--episodes 1 is out of range",
        "from 2 to",
    ),
    (
        "huge episodes",
        lambda t: [*RUN, "--episodes", "100000000", *results(t)],
        "--episodes 100000000 is out of range",
        "from 2 to",
    ),
    (
        "negative seed",
        lambda t: [*RUN, "--seeds", "-1", *results(t)],
        "--seeds -1 is out of range",
        "from 0 to",
    ),
    (
        "negative replicate",
        lambda t: [*RUN, "--replicate", "-1", *results(t)],
        "--replicate -1 is out of range",
        "from 0 to",
    ),
    (
        "zero threads",
        lambda t: [*RUN, "--threads", "0", *results(t)],
        "--threads 0 is out of range",
        "from 1 to",
    ),
    (
        "zero jobs",
        lambda t: [*RUN, "--jobs", "0", *results(t)],
        "--jobs 0 is out of range",
        "from 1 to",
    ),
    (
        "jobs with a DDP launcher",
        lambda t: [*RUN, *results(t), "--jobs", "2", "--launcher", "pytorch"],
        "--launcher makes this process one rank",
        "drop --jobs",
    ),
    (
        "jobs with the Slurm executor",
        lambda t: [*RUN, *results(t), "--jobs", "2", "--executor", "slurm"],
        "--executor slurm runs each run as a job",
        "drop --jobs",
    ),
    (
        "shots not a number",
        lambda t: [*RUN, "--shots", "one", *results(t)],
        "--shots",
        "--help` lists the options",
    ),
    (
        "unknown training mode",
        lambda t: [*RUN, "--train", "bogus", *results(t)],
        "invalid choice: 'bogus'",
        "--help` lists the options",
    ),
    (
        "unknown cfg key",
        lambda t: [*RUN, *results(t), "--cfg-options", "schedule.meta.iterz=5"],
        "schedule.meta.iterz",
        "did you mean schedule.meta.iters",
    ),
    (
        "cfg option without =",
        lambda t: [*RUN, *results(t), "--cfg-options", "schedule.meta.iters", "2000"],
        "schedule.meta.iters",
        "KEY=VALUE",
    ),
    (
        "unknown feature dtype",
        lambda t: [*RUN, *results(t), "--cfg-options", "evaluation.feature_dtype=float64"],
        "'float64' is not a dtype",
        "float16, float32",
    ),
    (
        "tag with a space",
        lambda t: [*RUN, *results(t), "--tag", "a b"],
        "is not a tag",
        "--tag temp5",
    ),
    (
        "weights missing",
        lambda t: [*RUN, *results(t), "--weights", str(t / "none.pth")],
        "none.pth: no such file",
        "give the path",
    ),
    (
        "weights not a checkpoint",
        lambda t: [
            *RUN,
            *results(t),
            "--weights",
            str(write(t / "garbage.pth", b"not a checkpoint")),
        ],
        "cannot be read as a state dict",
        "torch.save(model.state_dict()",
    ),
    (
        "weights of the wrong shape",
        lambda t: [*RUN, *results(t), "--weights", str(a_backbone(t / "full.pth", 4))],
        "does not fit the backbone",
        "same backbone config",
    ),
    (
        "pretrained-on without weights",
        lambda t: [*RUN, *results(t), "--pretrained-on", "kinetics-400"],
        "no --weights was given",
        "pass --weights FILE",
    ),
    (
        "pretrained-labels without weights",
        lambda t: [*RUN, *results(t), "--pretrained-labels", str(write(t / "l.txt", "a\n"))],
        "no --weights was given",
        "pass --weights FILE",
    ),
    (
        "pretrained-labels file missing",
        lambda t: [*RUN, *results(t), "--pretrained-labels", str(t / "none.txt")],
        "none.txt: no such file",
        "one class name per line",
    ),
    (
        "pretrained-labels file empty",
        lambda t: [*RUN, *results(t), "--pretrained-labels", str(write(t / "e.txt", "# x\n\n"))],
        "lists no class names",
        "one class name per line",
    ),
    (
        "pretrained-labels file of broken JSON",
        lambda t: [*RUN, *results(t), "--pretrained-labels", str(write(t / "l.json", '["a", '))],
        "starts like JSON but is not",
        "a JSON list of names",
    ),
    (
        "bad synth settings",
        lambda t: ["run", "--synth", "frames=2", *results(t)],
        "frames must be at least 8",
        "--synth",
    ),
    (
        "synth settings for a real benchmark",
        lambda t: [*RUN, "--datasets", "ucf101", *results(t)],
        "synth is not among the benchmarks",
        "add synth to --datasets",
    ),
    (
        "benchmark not prepared",
        lambda t: ["run", "--datasets", "ucf101", "--methods", "protonet", *results(t)],
        "ucf101 is not prepared",
        "fsarbench data splits ucf101",
    ),
    (
        "too few videos for the shots",
        lambda t: [*RUN, "--shots", "5", *results(t)],
        "only 0 classes have at least 6",
        "fix:",
    ),
    (
        "results dir is a file",
        lambda t: [*RUN, "--results-dir", str(write(t / "results", "x"))],
        "is a file, not a folder",
        "name a folder for --results-dir",
    ),
    (
        "results dir under a file",
        lambda t: [*RUN, "--results-dir", str(write(t / "afile", "x") / "sub")],
        "is a file, not a folder",
        "name a folder for --results-dir",
    ),
    (
        "slurm with a launcher",
        lambda t: [*RUN, *results(t), "--executor", "slurm", "--launcher", "pytorch"],
        "--launcher is for a process started by torchrun",
        "drop --launcher",
    ),
    (
        "fp16 on a CPU",
        lambda t: [*RUN, *results(t), "--amp", "fp16", "--device", "cpu"],
        "fp16",
        "bf16",
    ),
    (
        "CUDA without a GPU",
        lambda t: [*RUN, *results(t), "--device", "cuda"],
        "cuda",
        "--device cpu",
    ),
    (
        "report without records",
        lambda t: ["report", "--results-dir", str(t / "nothing")],
        "no result records",
        "run `fsarbench run` first",
    ),
    (
        "report plots into a file",
        lambda t: [
            "report",
            *["--results-dir", str(a_record(t))],
            "--plots",
            str(write(t / "plots.png", "x")),
        ],
        "is a file, not a folder",
        "name a folder for --plots",
    ),
    (
        "record not JSON",
        lambda t: [
            "report",
            "--results-dir",
            str(write(t / "r" / "runs" / "synth" / "x.json", "{oops").parents[2]),
        ],
        "is not a readable result record",
        "fix:",
    ),
    (
        "record with NaN accuracies",
        lambda t: [
            "check",
            "--baseline",
            str(a_baseline(t)[0]),
            "--results-dir",
            str(a_record(t / "nan", episode_accuracies=[math.nan] * 20)),
        ],
        "not numbers in [0, 1]",
        "fix:",
    ),
    (
        "baseline missing",
        lambda t: ["check", "--baseline", str(t / "none.json"), "--results-dir", str(t)],
        "does not exist",
        "--write-baseline",
    ),
    (
        "baseline not JSON",
        lambda t: ["check", "--baseline", str(write(t / "b.json", "{")), "--results-dir", str(t)],
        "is not readable JSON",
        "fix:",
    ),
    (
        "baseline without runs",
        lambda t: [
            "check",
            "--baseline",
            str(a_baseline(t, runs=[])[0]),
            "--results-dir",
            str(t / "good"),
        ],
        "holds no runs",
        "--write-baseline",
    ),
    (
        "baseline with a NaN accuracy",
        lambda t: [
            "check",
            "--baseline",
            str(a_baseline(t, nan=True)[0]),
            "--results-dir",
            str(t / "good"),
        ],
        "not numbers in [0, 1]",
        "--write-baseline",
    ),
    (
        "alpha out of range",
        lambda t: [
            "check",
            "--baseline",
            str(a_baseline(t)[0]),
            "--alpha",
            "2",
            "--results-dir",
            str(t / "good"),
        ],
        "alpha must be in (0, 1)",
        "fix:",
    ),
    (
        "baseline and write-baseline",
        lambda t: ["check", "--baseline", "a.json", "--write-baseline", "b.json"],
        "not allowed with argument",
        "--help` lists the options",
    ),
    (
        "compare on a benchmark without records",
        lambda t: [
            "compare",
            "protonet",
            "otam",
            "--datasets",
            "ucf101",
            "--results-dir",
            str(a_record(t)),
        ],
        "no result records on ucf101",
        "run the methods there first",
    ),
    (
        "prepare with videos and frames",
        lambda t: ["data", "prepare", "ucf101", "--videos", "a", "--frames", "b"],
        "not allowed with argument",
        "--help` lists the options",
    ),
    (
        "prepare before the splits",
        lambda t: ["data", "prepare", "ucf101", "--videos", str(t)],
        "ucf101",
        "fsarbench data splits ucf101",
    ),
    (
        "split list escaping its folder",
        lambda t: [
            "data",
            "splits",
            "ucf101",
            "--from",
            str(split_folder(t, "../../etc/passwd\n")),
        ],
        "outside the videos folder",
        "restore the file",
    ),
    (
        "split list with a repeated id",
        lambda t: [
            "data",
            "splits",
            "ucf101",
            "--from",
            str(split_folder(t, "Archery/v_Archery_g01_c01\nArchery/v_Archery_g01_c01\n")),
        ],
        "repeats video id",
        "restore the file",
    ),
    (
        "split list not ASCII",
        lambda t: ["data", "splits", "ucf101", "--from", str(split_folder(t, b"Archery/v_\xff\n"))],
        "testlist03.txt",
        "fix:",
    ),
    (
        "generate with bad settings",
        lambda t: ["data", "generate", "synth", "--tempo-warp", "2"],
        "tempo_warp must be in [0, 1]",
        "fix:",
    ),
]


def split_folder(tmp: Path, test_list: str | bytes) -> Path:
    source = tmp / "lists"
    source.mkdir(exist_ok=True)
    for name in ("trainlist03.txt", "vallist03.txt", "testlist03.txt"):
        (source / name).write_bytes((split_source("ucf101") / name).read_bytes())
    write(source / "testlist03.txt", test_list)
    return source


@pytest.mark.parametrize(
    ("argv_of", "problem", "fix"), [c[1:] for c in CASES], ids=[c[0] for c in CASES]
)
def test_bad_input_gets_one_clear_message(home, tmp_path, capsys, argv_of, problem, fix):
    argv = argv_of(tmp_path)
    capsys.readouterr()  # what a setup printed
    before = snapshot(tmp_path, home)
    code = main(argv)
    out, err = capsys.readouterr()
    assert code == 2, (out, err)
    assert "Traceback" not in err and "Traceback" not in out
    assert problem in err and fix in err, err
    assert "error:" in err and "fix:" in err, err
    assert snapshot(tmp_path, home) == before  # nothing written, half or whole


def test_the_corpus_is_at_least_forty_cases():
    assert len(CASES) + len(STORAGE_CASES) >= 40


# What the file system refuses, met while probing the output folders before any compute.
STORAGE_CASES = [
    ("full disk", errno.ENOSPC, "No space left on device"),
    ("read-only file system", errno.EROFS, "Read-only file system"),
    ("no permission", errno.EACCES, "Permission denied"),
]


@pytest.mark.parametrize(
    ("code", "reason"), [c[1:] for c in STORAGE_CASES], ids=[c[0] for c in STORAGE_CASES]
)
def test_an_unwritable_results_folder_is_found_before_the_compute(
    home, tmp_path, capsys, monkeypatch, code, reason
):
    # as root, permissions and a read-only mount cannot be made here: the probe's fsync fails
    def refuse(fd):
        raise OSError(code, os.strerror(code))

    monkeypatch.setattr(os, "fsync", refuse)
    before = snapshot(tmp_path, home)
    assert main([*RUN, *results(tmp_path)]) == 2
    err = capsys.readouterr().err
    assert f"--results-dir {tmp_path / 'results'}" in err and reason in err
    assert "point --results-dir elsewhere" in err and "Traceback" not in err
    assert snapshot(tmp_path, home) == before and not (tmp_path / "results").exists()
