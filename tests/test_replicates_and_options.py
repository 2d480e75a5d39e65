"""Training replicates (the gate's noise model), numeric options in range and --cfg-options
keys that exist: each bad value one message, exit 2, nothing run or written."""

from __future__ import annotations

import pytest
import torch

from conftest import TINY_SYNTH
from fsarbench.cli import main
from fsarbench.replicates import RELATIVE_SCALE
from fsarbench.runs import RunRequest, SuiteOptions, build_model, resolve_run
from fsarbench.training import initial_backbone


@pytest.fixture
def home(tiny_synth_home, monkeypatch):
    monkeypatch.setenv("FSARBENCH_HOME", str(tiny_synth_home))
    return tiny_synth_home


def model_of(replicate: int, tmp_path):
    options = SuiteOptions(
        results_dir=tmp_path, progress=False, synth=TINY_SYNTH, replicate=replicate
    )
    run = resolve_run(RunRequest("trx", "synth", None, 1, 0, 20), options)
    return run, build_model(run, options, "cpu")


def test_a_replicate_perturbs_the_initial_weights_at_rounding_scale(home, tmp_path):
    _, plain = model_of(0, tmp_path)
    run, replicate = model_of(1, tmp_path)
    _, again = model_of(1, tmp_path)
    ratios = []
    for (name, a), (_, b), (_, c) in zip(
        plain.state_dict().items(),
        replicate.state_dict().items(),
        again.state_dict().items(),
        strict=True,
    ):
        assert torch.equal(b, c), name  # a function of (seed, replicate)
        if a.is_floating_point() and a.abs().sum() > 0 and "running" not in name:
            ratios.append(((b - a).abs().max() / a.abs().max()).item())
    # every weight moved, by about 1e-6 of its size, no more (head and backbone alike)
    assert min(ratios) > 0 and max(ratios) < 10 * RELATIVE_SCALE
    # the backbone a pretraining stage hashes is the model's own backbone
    alone = initial_backbone(run.config, 0)
    for (name, a), (_, b) in zip(
        alone.state_dict().items(), replicate.backbone.state_dict().items(), strict=True
    ):
        assert torch.equal(a, b), name
    assert run.path.name.endswith("-seed0-rep1.json")
    assert run.config.schedule["replicate"] == 1
    plain_run, _ = model_of(0, tmp_path)
    assert "replicate" not in plain_run.config.schedule  # replicate 0: a plain run's identity


BAD_COUNTS = [
    (["--shots", "0"], "--shots 0 is out of range"),
    (["--ways", "0"], "--ways 0 is out of range"),
    (["--ways", "1"], "--ways 1 is out of range"),
    (["--queries", "0"], "--queries 0 is out of range"),
    (["--episodes", "0"], "--episodes 0 is out of range"),
    (["--episodes", "-5"], "--episodes -5 is out of range"),
    (["--seeds", "-1"], "--seeds -1 is out of range"),
    (["--seeds", "0,4294967296"], "--seeds 4294967296 is out of range"),
    (["--replicate", "-1"], "--replicate -1 is out of range"),
]


@pytest.mark.parametrize(("argv", "message"), BAD_COUNTS)
def test_numeric_options_out_of_range_are_refused_before_anything_runs(
    home, tmp_path, capsys, argv, message
):
    results = tmp_path / "results"
    code = main(["run", "--methods", "protonet", "--results-dir", str(results), *argv])
    err = capsys.readouterr().err
    assert code == 2 and message in err and "fix:" in err and "Traceback" not in err
    assert not results.exists()


BAD_CFG_OPTIONS = [
    (
        ["schedule.meta.iterz=5"],
        "schedule.meta.iterz: the protonet run config has no such",
        "did you mean schedule.meta.iters",
    ),
    (
        ["method.temperatur=5"],
        "method.temperatur: the protonet run config has no such",
        "method.temperature",
    ),
    (
        ["schedule.meta.iters", "2000"],
        "'schedule.meta.iters' is not KEY=VALUE",
        "schedule.meta.iters=2000",
    ),
    (["=5"], "'=5' is not KEY=VALUE", "one word"),
    (
        ["evaluation.feature_dtype=float64"],
        "'float64' is not a dtype the feature store keeps",
        "float16, float32",
    ),
]


@pytest.mark.parametrize(("items", "problem", "fix"), BAD_CFG_OPTIONS)
def test_a_bad_cfg_option_gets_one_message_and_runs_nothing(
    home, tmp_path, capsys, items, problem, fix
):
    results = tmp_path / "results"
    argv = ["run", "--methods", "protonet", "--shots", "1", "--seeds", "0", "--episodes", "20"]
    argv += ["--synth", "seed=3,videos_per_class=3,frames=8,size=32"]
    code = main([*argv, "--results-dir", str(results), "--cfg-options", *items])
    err = capsys.readouterr().err
    assert code == 2 and problem in err and fix in err and "Traceback" not in err
    assert not results.exists()


def test_settings_a_recipe_may_leave_out_are_accepted(home, tmp_path, capsys):
    argv = ["run", "--methods", "protonet", "--dry-run", "--results-dir", str(tmp_path)]
    argv += ["--synth", "seed=3,videos_per_class=3,frames=8,size=32", "--cfg-options"]
    for item in (
        "schedule.meta.tasks_per_batch=4",
        "schedule.pretrain.seed=3",
        "method.temperature=5.0",
    ):
        assert main([*argv, item]) == 0, capsys.readouterr().err


def test_an_internal_error_is_not_a_regression_or_bad_input(monkeypatch, tmp_path, capsys):
    import fsarbench.cli.check as check

    def broken(*args, **kwargs):
        raise ZeroDivisionError("planted")

    monkeypatch.setattr(check, "load_records", broken)
    code = main(["check", "--baseline", str(tmp_path / "b.json"), "--results-dir", str(tmp_path)])
    err = capsys.readouterr().err
    assert code == 3 and "internal error: ZeroDivisionError: planted" in err


def test_a_full_disk_is_one_message(monkeypatch, tmp_path, capsys):
    import errno

    import fsarbench.cli.check as check

    def full(*args, **kwargs):
        raise OSError(errno.ENOSPC, "No space left on device", str(tmp_path / "b.json"))

    monkeypatch.setattr(check, "write_baseline", full)
    from conftest import make_record, write_records

    write_records([make_record("protonet", [1.0, 0.0])], tmp_path / "r")
    code = main(
        [
            "check",
            "--write-baseline",
            str(tmp_path / "b.json"),
            "--results-dir",
            str(tmp_path / "r"),
        ]
    )
    err = capsys.readouterr().err
    assert code == 2 and "No space left on device" in err and "fix:" in err
    assert "Traceback" not in err
