"""Several fsarbench processes on one cache and one results folder: every shared stage is
computed exactly once, nobody fails, the records equal a serial run's, and a process killed
while it holds a stage's lock does not block the next one."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path

import pytest

from conftest import SMALL_SYNTH, short_recipe
from fsarbench.status import plan_status

pytestmark = pytest.mark.slow

COMMON = [
    "--shots",
    "1",
    "--seeds",
    "0",
    "--episodes",
    "100",
    *SMALL_SYNTH,
    *short_recipe(20),
]
# four overlapping suites over three runs
SUITES = ["protonet,trx", "trx,otam", "otam,protonet", "protonet,trx,otam"]


def start(home: Path, results: Path, methods: str, *extra: str) -> subprocess.Popen:
    env = {**os.environ, "FSARBENCH_HOME": str(home)}
    command = [sys.executable, "-m", "fsarbench", "run", "--methods", methods, *COMMON]
    return subprocess.Popen(
        [*command, "--results-dir", str(results), *extra],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        start_new_session=True,  # its own process group: a kill reaches its workers too
    )


def finish(process: subprocess.Popen) -> str:
    output, _ = process.communicate(timeout=600)
    assert process.returncode == 0, output[-4000:]
    return output


def journal(home: Path) -> list[dict]:
    path = home / "cache" / "stages.jsonl"
    return [json.loads(line) for line in path.read_text().splitlines()]


def records(results: Path) -> dict[str, dict]:
    found = {}
    for path in (results / "runs").rglob("*.json"):
        record = json.loads(path.read_text())
        found[record["method"]] = record
    return found


def test_four_processes_compute_each_stage_once_and_match_a_serial_run(tmp_path):
    serial_home, serial_results = tmp_path / "serial-home", tmp_path / "serial"
    finish(start(serial_home, serial_results, "protonet,trx,otam", "--jobs", "1"))
    expected = records(serial_results)

    home, results = tmp_path / "home", tmp_path / "results"
    processes = [start(home, results, suite, "--jobs", "1") for suite in SUITES]
    outputs = [finish(process) for process in processes]

    computed = Counter(entry["kind"] for entry in journal(home))
    # one synth, one pretraining, its train/val/test stores, and each of the three runs once
    assert computed == {"data": 1, "pretrain": 1, "features": 3, "run": 3}, computed
    assert any("waiting for" in output for output in outputs)  # they did meet
    assert_same_records(records(results), expected)

    # one suite whose runs are spread over worker processes (`--jobs`): the same again
    jobs_home, jobs_results = tmp_path / "jobs-home", tmp_path / "jobs"
    output = finish(start(jobs_home, jobs_results, "protonet,trx,otam", "--jobs", "3"))
    assert "3 worker processes of 1 thread" in output
    computed = Counter(entry["kind"] for entry in journal(jobs_home))
    assert computed == {"data": 1, "pretrain": 1, "features": 3, "run": 3}, computed
    assert_same_records(records(jobs_results), expected)


def assert_same_records(got: dict[str, dict], expected: dict[str, dict]) -> None:
    assert sorted(got) == sorted(expected) == ["otam", "protonet", "trx"]
    for method, record in got.items():
        assert record["episode_accuracies"] == expected[method]["episode_accuracies"], method
        assert record["checkpoint_hash"] == expected[method]["checkpoint_hash"], method


def test_a_holder_killed_with_sigkill_does_not_block_the_next_process(tmp_path):
    home, results = tmp_path / "home", tmp_path / "results"
    first = start(home, results, "trx")
    work = home / "cache" / "work"
    deadline = time.monotonic() + 300
    while not list(work.glob("*/pretrain/*/.*.lock.owner")):  # it holds the pretraining's lock
        assert first.poll() is None, first.communicate()[0][-3000:]
        assert time.monotonic() < deadline, "the first process never started pretraining"
        time.sleep(0.05)
    (plan_file,) = (results / ".plans").glob("*.json")
    assert [status.state for status in plan_status(plan_file)[1]] == ["running"]  # its lock
    os.killpg(first.pid, signal.SIGKILL)
    first.wait()
    # the lock went with the process: nothing runs, nothing finished (its data-loader
    # workers, killed with it, may take a moment longer to close the lock they inherited)
    deadline = time.monotonic() + 10
    while [status.state for status in plan_status(plan_file)[1]] != ["waiting"]:
        assert time.monotonic() < deadline, plan_status(plan_file)[1]
        time.sleep(0.1)

    second = start(home, results, "trx")
    output = finish(second)  # not blocked: the kernel released the dead holder's lock
    assert "trx" in records(results)
    kinds = [entry["kind"] for entry in journal(home)]
    assert kinds.count("pretrain") == 1  # the dead process finished none; the second did
    assert {entry["pid"] for entry in journal(home) if entry["kind"] == "pretrain"} == {second.pid}
    assert "Traceback" not in output
