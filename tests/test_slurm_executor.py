"""A suite submitted to a real one-node Slurm with ``--executor slurm``: stage jobs, run arrays
waiting for them, a run cancelled mid-training and submitted again, a run preempted (USR2) and
requeued by submitit; every record equals the one a local run of the same suite writes."""

from __future__ import annotations

import json
import time
from pathlib import Path

import pytest

from conftest import SMALL_SYNTH, short_recipe
from fsarbench.cli import main
from fsarbench.locks import read_journal
from fsarbench.status import plan_status

pytestmark = pytest.mark.slow

# Three runs on a small synth with short recipes; TRX trains long enough (checkpoints every 10
# of 300 iterations) to be interrupted mid-training.
SUITE = [
    "--shots",
    "1",
    "--episodes",
    "200",
    *SMALL_SYNTH,
    *short_recipe(300),
]
RUNS = [("protonet", "0"), ("trx", "0,1")]
SLURM = ["--executor", "slurm", "--gpus", "0", "--cpus", "1", "--time", "30"]


def submission(method: str, seeds: str, results: Path) -> list[str]:
    return [
        "run",
        "--methods",
        method,
        "--seeds",
        seeds,
        "--results-dir",
        str(results),
        *SUITE,
        *SLURM,
    ]


def records(results: Path) -> dict[str, dict]:
    found = {}
    for path in sorted((results / "runs").rglob("*.json")):
        record = json.loads(path.read_text())
        found[f"{record['method']}-seed{record['seed']}"] = record
    return found


def wait_until(condition, timeout: float, what: str, cluster) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}\n{cluster.diagnostics()}")
        time.sleep(0.2)


def states(results: Path) -> dict[str, str]:
    merged = {}
    for plan_file in sorted((results / ".plans").glob("*.json")):
        _, statuses = plan_status(plan_file)
        merged.update({status.label: status.state for status in statuses})
    return merged


def job_of(results: Path, label: str) -> str:
    for plan_file in sorted((results / ".plans").glob("*.json"), reverse=True):
        plan = json.loads(plan_file.read_text())
        for run in plan["runs"]:
            if run["label"] == label and run.get("job_id"):
                return run["job_id"]
    raise AssertionError(f"no job for {label}")


def local_reference(tmp_path_factory, monkeypatch) -> dict[str, dict]:
    home, results = tmp_path_factory.mktemp("local-home"), tmp_path_factory.mktemp("local")
    monkeypatch.setenv("FSARBENCH_HOME", str(home))
    codes = [
        main(["run", "--methods", m, "--seeds", s, "--results-dir", str(results), *SUITE])
        for m, s in RUNS
    ]
    assert codes == [0, 0]
    return records(results)


def test_a_submitted_suite_survives_cancel_and_preemption_with_the_local_records(
    slurm_env, tmp_path, tmp_path_factory, monkeypatch, capsys
):
    expected = local_reference(tmp_path_factory, monkeypatch)
    assert sorted(expected) == ["protonet-seed0", "trx-seed0", "trx-seed1"]

    home, results = tmp_path / "home", tmp_path / "results"
    monkeypatch.setenv("FSARBENCH_HOME", str(home))
    started = time.monotonic()
    for method, seeds in RUNS:
        code = main(submission(method, seeds, results))
        assert code == 0
    submitted = time.monotonic() - started
    out = capsys.readouterr().out
    assert "submitted" in out and "runs already done" in out

    # TRX seed 0: cancelled once its first checkpoint is written; seed 1: preempted (USR2)
    trx0, trx1 = "trx synth 1-shot seed 0", "trx synth 1-shot seed 1"
    work = home / "cache" / "work"

    def checkpointed(seed: int) -> bool:
        return any(work.glob(f"*/trx/*/*seed{seed}-*/iter_*.pth"))

    wait_until(lambda: checkpointed(0), 240, "TRX seed 0's first checkpoint", slurm_env)
    slurm_env.run("scancel", job_of(results, trx0))
    wait_until(lambda: checkpointed(1), 240, "TRX seed 1's first checkpoint", slurm_env)
    slurm_env.run("scancel", "--signal=USR2", job_of(results, trx1))

    def settled() -> bool:
        now = states(results)
        return now.get(trx0) == "ended without a record" and now.get(trx1) == "done"

    wait_until(settled, 240, "the cancelled run to end and the preempted one to finish", slurm_env)
    assert "trx-seed0" not in records(results)
    status = states(results)
    assert status["protonet synth 1-shot seed 0"] == "done"
    main(["status", "--results-dir", str(results)])
    assert "ended without a record" in capsys.readouterr().out

    # submitted again: only the cancelled run is left, and it resumes from its checkpoint
    code = main(submission("trx", "0,1", results))
    assert code == 0
    out = capsys.readouterr().out
    assert "and 1 runs" in out and "1 runs already done" in out
    wait_until(lambda: states(results).get(trx0) == "done", 240, "the resubmitted run", slurm_env)
    elapsed = time.monotonic() - started

    got = records(results)
    assert sorted(got) == sorted(expected)
    for name, record in got.items():
        reference = expected[name]
        assert record["episode_accuracies"] == reference["episode_accuracies"], name
        assert record["checkpoint_hash"] == reference["checkpoint_hash"], name
    # the preempted job was requeued by submitit, not resubmitted by us
    preempted_log = Path(_log_of(results, trx1)).with_suffix(".err").read_text()
    assert "preempted" in preempted_log or "timed-out" in preempted_log
    computed = [entry["kind"] for entry in read_journal()]  # each shared stage once
    assert computed.count("data") == 1 and computed.count("pretrain") == 1
    assert computed.count("features") == 3  # train, val, test of the one pretrained backbone
    print(f"submission {submitted:.2f} s for 3 runs; the suite on Slurm {elapsed:.1f} s")


def _log_of(results: Path, label: str) -> str:
    for plan_file in sorted((results / ".plans").glob("*.json")):
        for run in json.loads(plan_file.read_text())["runs"]:
            if run["label"] == label and run.get("log"):
                return run["log"]
    raise AssertionError(f"no log for {label}")
