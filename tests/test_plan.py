"""The suite as a plan (--dry-run), failed runs as rows, fsarbench status, the stage locks,
the DDP split of a recipe, and the bad input of the scale options."""

from __future__ import annotations

import json
from dataclasses import fields
from pathlib import Path

import pytest

from conftest import REPO, TINY_SYNTH
from fsarbench.cli import main
from fsarbench.errors import FsarbenchError
from fsarbench.locks import compute_once, is_held, read_journal, stage_lock
from fsarbench.results import RunFailure, load_failures
from fsarbench.training import IndexSampler, local_recipe

TINY = "seed=3,videos_per_class=3,frames=8,size=32"
QUICK = ["--train", "none", "--shots", "1", "--seeds", "0", "--episodes", "20", "--synth", TINY]


@pytest.fixture(scope="module")
def generated(tmp_path_factory):
    """A tiny synth of this module's own: its runs store features that the session's shared
    tiny synth must not get (other tests count the frames they embed there)."""
    from fsarbench.benchmarks.synth import generate_synth

    home = tmp_path_factory.mktemp("plan-home")
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("FSARBENCH_HOME", str(home))
        generate_synth(TINY_SYNTH, progress=False)
    return home


@pytest.fixture
def home(generated, monkeypatch):
    monkeypatch.setenv("FSARBENCH_HOME", str(generated))
    return generated


def test_a_dry_run_prints_the_plan_and_computes_nothing(home, tmp_path, capsys):
    results = tmp_path / "results"
    journal_before = len(read_journal())
    assert main(["run", "--methods", "protonet,otam", *QUICK, "--results-dir", str(results),
                 "--dry-run"]) == 0  # fmt: skip
    out = capsys.readouterr().out
    assert "[done] data" in out  # the tiny synth is generated already
    assert "[to do] features: pooled features of the backbone as given, test split" in out
    assert out.count("[to do] protonet") + out.count("[to do] otam") == 2
    assert "nothing was run" in out
    assert not results.exists() and len(read_journal()) == journal_before
    # then run it: the same plan shows everything done
    assert main(["run", "--methods", "protonet,otam", *QUICK, "--results-dir", str(results)]) == 0
    capsys.readouterr()
    assert main(["run", "--methods", "protonet,otam", *QUICK, "--results-dir", str(results),
                 "--dry-run"]) == 0  # fmt: skip
    out = capsys.readouterr().out
    assert "[to do]" not in out and "runs (2, 2 done)" in out


def test_a_dry_run_without_data_generates_nothing(tmp_path, capsys):
    # a fresh home: synth is absent, so the stages after it are pending
    assert main(["run", "--methods", "trx", "--shots", "1", "--seeds", "0", "--dry-run",
                 "--results-dir", str(tmp_path / "r")]) == 0  # fmt: skip
    out = capsys.readouterr().out
    assert "[to do] data: synth: generate and prepare" in out
    assert "[pending] pretrain" in out and "[pending] features" in out
    assert not list((tmp_path).rglob("prepared.json"))


def test_a_run_that_raises_is_a_row_and_the_suite_goes_on(home, tmp_path, capsys, monkeypatch):
    import fsarbench.runs as runs

    compute = runs._compute_run

    def flaky(run, *args, **kwargs):
        if run.request.method == "otam":
            raise RuntimeError("out of memory (injected)")
        return compute(run, *args, **kwargs)

    monkeypatch.setattr(runs, "_compute_run", flaky)
    results = tmp_path / "results"
    argv = ["run", "--methods", "protonet,otam", *QUICK, "--results-dir", str(results)]
    assert main(argv) == 1  # some runs failed
    out = capsys.readouterr()
    assert "FAILED  RuntimeError: out of memory (injected)" in out.out
    assert "1 of 2 runs failed" in out.err
    (failure,) = load_failures(results)
    assert failure.method == "otam" and "injected" in failure.error
    assert "Traceback" in failure.traceback and failure.host

    assert main(["report", "--results-dir", str(results), "--no-reported"]) == 0
    report = capsys.readouterr().out
    assert "FAILED: seed 0" in report and "protonet" in report
    baseline = tmp_path / "baseline.json"
    assert main(["check", "--write-baseline", str(baseline), "--results-dir", str(results)]) == 2
    assert "a baseline needs every run" in capsys.readouterr().err
    assert main(["status", "--results-dir", str(results)]) == 0
    status = capsys.readouterr().out
    assert "| failed" in status and "out of memory (injected)" in status and "1 done" in status

    monkeypatch.setattr(runs, "_compute_run", compute)  # fixed: the run succeeds, the row goes
    assert main(argv) == 0
    capsys.readouterr()
    assert load_failures(results) == []
    assert main(["check", "--write-baseline", str(baseline), "--results-dir", str(results)]) == 0


def test_check_fails_on_a_failed_run(home, tmp_path, capsys, monkeypatch):
    import fsarbench.runs as runs

    results = tmp_path / "results"
    argv = ["run", "--methods", "protonet", *QUICK, "--results-dir", str(results)]
    assert main(argv) == 0
    baseline = tmp_path / "baseline.json"
    assert main(["check", "--write-baseline", str(baseline), "--results-dir", str(results)]) == 0
    second = tmp_path / "second"

    def broken(run, *args, **kwargs):
        raise ValueError("a broken head (injected)")

    monkeypatch.setattr(runs, "_compute_run", broken)
    assert main(["run", "--methods", "protonet", *QUICK, "--results-dir", str(second)]) == 1
    capsys.readouterr()
    assert main(["check", "--baseline", str(baseline), "--results-dir", str(second)]) == 1
    out = capsys.readouterr().out
    assert "FAILED" in out and "seed 0 raised" in out and "MISSING" in out


def test_every_failure_field_is_documented():
    documented = (REPO / "results" / "README.md").read_text().split("## The failure record")[1]
    for field in fields(RunFailure):
        assert f"`{field.name}`" in documented, field.name


@pytest.mark.parametrize(
    "argv, message",
    [
        (["--executor", "slurm", "--launcher", "pytorch"], "--executor slurm starts the ranks"),
        (["--launcher", "pytorch"], "not started by torchrun"),
        (["--launcher", "slurm"], "not started by srun"),
        (["--executor", "slurm", "--gpus", "-1"], "gpus_per_job = -1 is too small"),
        (["--executor", "slurm", "--time", "0"], "time_min = 0 is too small"),
    ],
)
def test_bad_scale_options_get_one_message(home, tmp_path, capsys, monkeypatch, argv, message):
    for variable in ("RANK", "WORLD_SIZE", "SLURM_PROCID"):
        monkeypatch.delenv(variable, raising=False)
    results = tmp_path / "results"
    code = main(["run", "--methods", "protonet", *QUICK, "--results-dir", str(results), *argv])
    err = capsys.readouterr().err
    assert code == 2 and message in err and "Traceback" not in err, err
    assert not (results / "runs").exists()


def test_slurm_without_sbatch_or_with_a_bad_profile(home, tmp_path, capsys, monkeypatch):
    results = tmp_path / "results"
    base = ["run", "--methods", "protonet", *QUICK, "--results-dir", str(results)]
    monkeypatch.setenv("PATH", str(tmp_path / "empty"))  # no sbatch anywhere
    assert main([*base, "--executor", "slurm", "--gpus", "0"]) == 2
    assert "no sbatch on this machine's PATH" in capsys.readouterr().err
    profile = tmp_path / "cluster.toml"
    profile.write_text("[slurm]\npartition = 'gpu'\ngpus = 2\n")
    assert main([*base, "--executor", "slurm", "--slurm-profile", str(profile)]) == 2
    assert "unknown settings gpus" in capsys.readouterr().err
    profile.write_text("[slurm\n")
    assert main([*base, "--executor", "slurm", "--slurm-profile", str(profile)]) == 2
    assert "cannot be read as TOML" in capsys.readouterr().err
    assert not (results / "runs").exists() and not (results / ".slurm").exists()


def test_status_without_a_plan_says_how_to_get_one(tmp_path, capsys):
    assert main(["status", "--results-dir", str(tmp_path)]) == 2
    assert "no plan under" in capsys.readouterr().err


def test_a_stage_is_computed_once_and_found_by_the_next(tmp_path):
    lock, calls = tmp_path / "stage.lock", []

    def compute():
        calls.append(1)
        (tmp_path / "out").write_text("done")
        return "computed"

    def find():
        return "found" if (tmp_path / "out").is_file() else None

    assert compute_once(lock, "a stage", find, compute, kind="test") == "computed"
    assert compute_once(lock, "a stage", find, compute, kind="test") == "found"
    assert calls == [1] and [e["kind"] for e in read_journal()] == ["test"]
    with stage_lock(lock, "a stage"):
        assert is_held(lock)
        owner = json.loads(Path(str(lock) + ".owner").read_text())
        assert owner["what"] == "a stage" and owner["pid"]
    assert not is_held(lock) and not Path(str(lock) + ".owner").exists()


@pytest.mark.parametrize("world, tasks", [(2, 2), (2, 8), (4, 8), (3, 6)])
def test_ranks_share_exactly_the_tasks_of_one_process(world, tasks):
    iters = 4 * tasks  # four optimizer steps
    one = list(IndexSampler(iters))
    shares = [list(IndexSampler(iters // world, rank, world, tasks)) for rank in range(world)]
    assert sorted(i for share in shares for i in share) == one
    share = tasks // world
    for step in range(4):  # each optimizer step covers the same tasks as in one process
        together = {i for s in shares for i in s[step * share : (step + 1) * share]}
        assert together == set(one[step * tasks : (step + 1) * tasks])


def test_a_recipe_is_split_between_ranks_or_refused():
    recipe = dict(
        iters=300,
        tasks_per_batch=4,
        val_interval=100,
        log_interval=50,
        param_scheduler=[dict(type="MultiStepLR", milestones=[200], by_epoch=False)],
    )
    local = local_recipe(recipe, 2)
    assert (local["iters"], local["tasks_per_batch"], local["val_interval"]) == (150, 2, 50)
    assert local["param_scheduler"][0]["milestones"] == [100]
    assert local_recipe(recipe, 1) is recipe
    with pytest.raises(FsarbenchError, match="tasks_per_batch = 4 cannot be split between 3"):
        local_recipe(recipe, 3)
    assert TINY_SYNTH.videos_per_class == 3  # the tiny synth the other tests read
