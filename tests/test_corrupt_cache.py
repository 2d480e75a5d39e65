"""What fsarbench reads back is verified: corrupt cached files are computed again (synth,
episode sets, feature stores, finished stages) or refused with one message (a prepared list
that is not what `prepare` wrote, an unreadable video); killed processes leave no workers and
no staging folder behind."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from conftest import TINY_SYNTH, split_source
from fsarbench.benchmarks.prepare import SplitCoverage, read_annotation
from fsarbench.benchmarks.registry import get_benchmark
from fsarbench.benchmarks.splits import store_splits
from fsarbench.benchmarks.standin import make_standin_tree
from fsarbench.benchmarks.synth import ensure_synth, synth_root
from fsarbench.cli import EXIT_INTERRUPTED, main
from fsarbench.errors import FsarbenchError
from fsarbench.fileio import remove_abandoned_staging, staging_folder
from fsarbench.results import load_records
from fsarbench.training import TrainingResult, read_done, write_done

TINY = "seed=3,videos_per_class=3,frames=8,size=32"
RUN = ["run", "--methods", "protonet", "--shots", "1", "--seeds", "0", "--episodes", "20"]
RUN += ["--train", "none", "--synth", TINY]


@pytest.fixture
def home(own_synth_home):
    return own_synth_home


def accuracies(results: Path) -> list[float]:
    (record,) = load_records(results)
    return record.episode_accuracies


def test_a_corrupt_synth_is_generated_again(home, tmp_path, capsys):
    prepared = synth_root(TINY_SYNTH) / "prepared"
    assert main([*RUN, "--results-dir", str(tmp_path / "a")]) == 0
    listed = prepared / "test.txt"
    listed.write_text(listed.read_text() + listed.read_text())  # every line twice
    assert main([*RUN, "--results-dir", str(tmp_path / "b"), "--force"]) == 0
    assert "not the one `prepare` wrote" in capsys.readouterr().err
    assert accuracies(tmp_path / "b") == accuracies(tmp_path / "a")
    (prepared / "prepared.json").write_text("{not json")
    ensure_synth(TINY_SYNTH, progress=False)
    assert "is not a prepared-benchmark manifest" in capsys.readouterr().err
    assert json.loads((prepared / "prepared.json").read_text())["benchmark"] == "synth"


@pytest.mark.parametrize(
    ("text", "problem"),
    [
        ("a/v1.mp4\t0\na/v1.mp4\t0\n", "repeats a/v1.mp4"),
        ("../../etc/passwd\t0\n", "would read outside the data folder"),
        ("a/v1.mp4\t7\n", "has label 7, but the split has 2 classes"),
        ("a/v1.mp4 0\n", "is not of the form path<TAB>label"),
        (b"a/\xff.mp4\t0\n", "is not UTF-8"),
    ],
)
def test_a_bad_prepared_list_is_refused(tmp_path, text, problem):
    path = tmp_path / "test.txt"
    (path.write_bytes if isinstance(text, bytes) else path.write_text)(text)
    coverage = SplitCoverage("test", ["a", "b"], expected=2)
    with pytest.raises(FsarbenchError) as error:
        read_annotation(path, "video", coverage)
    assert problem in error.value.problem and "prepare the benchmark again" in error.value.fix


def test_damaged_episode_sets_and_feature_stores_are_computed_again(home, tmp_path, capsys):
    assert main([*RUN, "--results-dir", str(tmp_path / "a")]) == 0
    (episodes,) = (home / "data" / "episodes").rglob("*.npz")
    episodes.write_bytes(episodes.read_bytes()[:100])  # truncated
    (features,) = [p for p in (home / "cache" / "features").rglob("features.npy")]
    features.write_bytes(features.read_bytes()[:-64])
    assert main([*RUN, "--results-dir", str(tmp_path / "b")]) == 0
    err = capsys.readouterr().err
    assert "is unreadable" in err and "sampling it again" in err
    assert "is corrupt" in err and "embedding it again" in err
    assert accuracies(tmp_path / "b") == accuracies(tmp_path / "a")
    (record,) = load_records(tmp_path / "b")
    assert record.embed_frame_forwards > 0  # embedded again, not read from the damaged file


def test_a_corrupt_finished_stage_is_not_reused(tmp_path, capsys):
    checkpoint = tmp_path / "backbone.pth"
    torch.save({"w": torch.arange(1000.0)}, checkpoint)
    write_done(TrainingResult(checkpoint, 300, None, tmp_path))
    assert read_done(tmp_path).checkpoint == checkpoint
    checkpoint.write_bytes(checkpoint.read_bytes()[:200])  # truncated
    assert read_done(tmp_path, repair=False) is None and (tmp_path / "done.json").is_file()
    assert read_done(tmp_path) is None
    assert "is corrupt" in capsys.readouterr().err
    assert not (tmp_path / "done.json").exists() and not checkpoint.exists()
    (tmp_path / "done.json").write_text("{garbage")
    assert read_done(tmp_path) is None and not (tmp_path / "done.json").exists()


def test_an_unreadable_video_is_one_message_and_leaves_no_features(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("FSARBENCH_HOME", str(tmp_path / "home"))
    benchmark = get_benchmark("ucf101")
    lists = store_splits(benchmark, split_source("ucf101")).lists
    videos = tmp_path / "videos"
    chosen = make_standin_tree(benchmark, lists, videos, classes_per_split=5, per_class=2)
    entry = chosen["test"][0]
    (broken,) = videos.rglob(f"{entry.video_id}.*")
    broken.unlink()
    broken.write_bytes(b"")  # zero bytes, and not probed
    assert main(["data", "prepare", "ucf101", "--videos", str(videos), "--no-probe"]) == 0
    argv = ["run", "--datasets", "ucf101", "--methods", "protonet", "--train", "none"]
    argv += ["--backbone", "resnet18_synth", "--shots", "1", "--queries", "1", "--episodes", "4"]
    argv += ["--results-dir", str(tmp_path / "results")]
    capsys.readouterr()
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert f"video {broken} cannot be decoded" in err and "without --no-probe" in err
    assert "Traceback" not in err
    features = tmp_path / "home" / "cache" / "features"
    assert not [p for p in features.rglob("*") if p.suffix in (".npy", ".json")]
    assert not load_records(tmp_path / "results")


def children_of(pid: int) -> list[int]:
    found = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
            except OSError:
                continue
            if int(fields[1]) == pid and fields[0] != "Z":
                found.append(int(entry.name))
    return found


def alive(pid: int) -> bool:
    try:
        state = (Path("/proc") / str(pid) / "stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return False
    return state != "Z"


def all_ended(pids: list[int], within: float) -> bool:
    """Whether every process of ``pids`` has ended within ``within`` seconds."""
    deadline = time.time() + within
    while time.time() < deadline and any(alive(pid) for pid in pids):
        time.sleep(0.1)
    return not any(alive(pid) for pid in pids)


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="PR_SET_PDEATHSIG is Linux's")
def test_sigkill_during_generation_leaves_no_worker_and_no_staging(tmp_path, monkeypatch):
    monkeypatch.setenv("FSARBENCH_HOME", str(tmp_path / "home"))
    settings = ["--seed", "11", "--videos-per-class", "12", "--frames", "8", "--size", "48"]
    command = [sys.executable, "-m", "fsarbench", "data", "generate", "synth", *settings]
    process = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.time() + 120
    workers = []
    while time.time() < deadline and not workers:  # until the pool is at work
        time.sleep(0.2)
        workers = children_of(process.pid)
        assert process.poll() is None, "generation ended before it could be killed"
    assert workers
    time.sleep(1.0)
    process.send_signal(signal.SIGKILL)
    process.wait()
    assert all_ended(workers, within=10), "pool workers outlived their parent"
    cache = tmp_path / "home" / "cache" / "synth"
    staging = [p for p in cache.iterdir() if p.name.startswith(".seed11-") and p.is_dir()]
    assert staging  # the killed process could not clean up ...
    assert main(["data", "generate", "synth", *settings]) == 0  # ... the next start does
    assert not [p for p in cache.iterdir() if p.name.startswith(".seed11-") and p.is_dir()]


def as_a_foreground_job() -> None:
    """In the child before exec: SIGINT at its default action and not blocked, as a terminal's
    foreground job has it. Both are inherited through fork and exec: a shell starts background
    jobs with SIGINT ignored, and a thread mask with SIGINT blocked would keep it pending; in
    either case the run would never see the Ctrl-C this test sends (twice in CI the run and its
    workers went on for 60 s after it, with no KeyboardInterrupt anywhere in its stderr)."""
    signal.signal(signal.SIGINT, signal.SIG_DFL)
    signal.pthread_sigmask(signal.SIG_UNBLOCK, {signal.SIGINT})


def sigint_state() -> str:
    """This process's SIGINT disposition and whether its thread blocks it (for messages)."""
    blocked = signal.SIGINT in signal.pthread_sigmask(signal.SIG_BLOCK, set())
    return f"SIGINT handler {signal.getsignal(signal.SIGINT)!r}, blocked: {blocked}"


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="PR_SET_PDEATHSIG is Linux's")
@pytest.mark.parametrize("ending", ["SIGKILL", "Ctrl-C"])
def test_an_ended_run_leaves_no_data_loader_worker(tmp_path, monkeypatch, ending):
    monkeypatch.setenv("FSARBENCH_HOME", str(tmp_path / "home"))
    synth = "seed=12,videos_per_class=6,frames=8,size=32"
    assert main(["data", "generate", "synth", "--seed", "12", "--videos-per-class", "6",
                 "--frames", "8", "--size", "32"]) == 0  # fmt: skip
    # per-episode embedding: the data-loader workers decode for as long as the run lasts
    command = [sys.executable, "-X", "faulthandler", "-m", "fsarbench", "run"]
    command += [
        "--methods",
        "protonet",
        "--train",
        "none",
        "--no-feature-cache",
        "--shots",
        "1",
        "--seeds",
        "0",
    ]
    command += ["--episodes", "5000", "--synth", synth, "--results-dir", str(tmp_path / "r")]
    state_at_start = sigint_state()  # the test process's, which the child would inherit
    process = subprocess.Popen(
        command,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        start_new_session=True,
        preexec_fn=as_a_foreground_job,
    )
    deadline = time.time() + 180
    workers = []
    while time.time() < deadline and len(workers) < 2:  # until both workers are up
        time.sleep(0.2)
        workers = children_of(process.pid)
        assert process.poll() is None, "the run ended before it could be killed"
    assert len(workers) == 2, workers
    time.sleep(1.0)  # past the data loader's start-up: the steady state of a long run
    if ending == "Ctrl-C":  # the terminal sends SIGINT to the whole foreground group
        os.killpg(process.pid, signal.SIGINT)
        try:
            err = process.communicate(timeout=60)[1].decode()
        except subprocess.TimeoutExpired:  # where it hangs: faulthandler prints every thread
            process.send_signal(signal.SIGABRT)
            err = process.communicate(timeout=30)[1].decode()
            # the head too: a KeyboardInterrupt swallowed in a finaliser ("Exception ignored
            # in ...") is printed long before faulthandler's dump of every thread at the end
            raise AssertionError(
                f"the run did not end after Ctrl-C (the test process: {state_at_start}):\n"
                f"{err[:3000]}\n...\n{err[-6000:]}"
            ) from None
        assert process.returncode == EXIT_INTERRUPTED, err
        assert "the same command resumes" in err and "Traceback" not in err
        assert len(err.strip().splitlines()) <= 2, err  # the run's line, then one line
    else:
        process.send_signal(signal.SIGKILL)
        process.wait()
    # torch's own watchdog ends an orphaned worker only at its next 5-second status check
    # (and never while a decode hangs); the kernel's parent-death signal ends it at once
    assert all_ended(workers, within=2.5), "data-loader workers outlived their run"
    assert not (tmp_path / "r" / "runs").exists() or not load_records(tmp_path / "r")


def test_staging_of_a_live_process_or_another_host_is_left_alone(tmp_path):
    final = tmp_path / "thing"
    mine = staging_folder(final)  # this process: alive
    other_host = tmp_path / ".thing-elsewhere.example.1-abc"
    other_host.mkdir()
    dead = tmp_path / f".thing-{socket.gethostname()}.999999999-abc"
    dead.mkdir()
    removed = remove_abandoned_staging(final)
    assert removed == [dead] and mine.is_dir() and other_host.is_dir()
