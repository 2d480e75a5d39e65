"""The leakage guard: pretraining that has seen a benchmark's test classes."""

from __future__ import annotations

import pytest
import torch

from conftest import make_record, split_source
from fsarbench.benchmarks.prepare import prepare_benchmark, prepared_folder
from fsarbench.benchmarks.registry import get_benchmark
from fsarbench.benchmarks.splits import store_splits
from fsarbench.benchmarks.standin import make_standin_tree
from fsarbench.cli import main
from fsarbench.errors import FsarbenchError
from fsarbench.leakage import (
    label_leakage,
    leakage_for,
    parse_pretrained_on,
    read_pretraining_labels,
)
from fsarbench.registry import MODELS
from fsarbench.report import render_leaderboard
from fsarbench.results import load_records


@pytest.mark.parametrize(
    ("benchmark", "pretrained_on", "expected"),
    [
        ("k100", ("kinetics-400",), ["kinetics-400"]),
        ("k100", ("imagenet-1k", "kinetics-700"), ["kinetics-700"]),
        ("k100", ("imagenet-1k",), []),
        ("ssv2-full", ("ssv2",), ["ssv2"]),
        ("ssv2-small", ("ssv2", "kinetics-400"), ["ssv2"]),
        ("ucf101", ("kinetics-400",), []),
        ("synth", ("kinetics-400", "ssv2"), []),
    ],
)
def test_overlaps_are_declared_per_benchmark(benchmark, pretrained_on, expected):
    assert leakage_for(get_benchmark(benchmark), pretrained_on) == expected


def test_corpus_names_are_checked():
    assert parse_pretrained_on(" Kinetics-400,ssv2,kinetics-400 ") == ("kinetics-400", "ssv2")
    assert parse_pretrained_on("") == ()
    with pytest.raises(FsarbenchError, match="unknown pretraining corpus 'k400'") as error:
        parse_pretrained_on("k400")
    assert "kinetics-400" in error.value.fix


def test_the_guard_stops_a_flagged_run_before_anything_is_written(tmp_path, capsys):
    weights = tmp_path / "videomae_k400.pth"
    torch.save({}, weights)
    results = tmp_path / "results"
    argv = ["run", "--datasets", "k100", "--methods", "protonet", "--results-dir", str(results)]
    assert main([*argv, "--weights", str(weights), "--pretrained-on", "kinetics-400"]) == 2
    err = capsys.readouterr().err
    assert "pretrained on kinetics-400" in err and "k100's test classes" in err
    assert "--allow-leakage" in err and not results.exists()
    # what the weights saw means nothing without weights
    assert main([*argv, "--pretrained-on", "imagenet-1k"]) == 2
    assert "no --weights was given" in capsys.readouterr().err
    assert main([*argv, "--weights", str(weights), "--pretrained-on", "k400"]) == 2
    assert "unknown pretraining corpus" in capsys.readouterr().err


def test_the_leaderboard_marks_leaked_rows():
    clean = make_record("protonet", [0.6, 0.8, 1.0], benchmark="k100")
    leaked = make_record("trx", [0.8, 0.8, 1.0], benchmark="k100", leakage=["kinetics-400"])
    text = render_leaderboard([clean, leaked], "md")
    assert "‡" in text.split("| trx")[1].splitlines()[0]
    assert "‡" not in text.split("| protonet")[1].splitlines()[0]
    assert "pretraining has seen this benchmark's test classes" in text
    assert "\\ddagger" in render_leaderboard([clean, leaked], "latex")


def test_an_allowed_run_records_its_leakage(tmp_path):
    # a Kinetics-100 stand-in: tiny videos under real split ids, five classes per split
    benchmark = get_benchmark("k100")
    lists = store_splits(benchmark, split_source("k100")).lists
    root = tmp_path / "kinetics"
    make_standin_tree(benchmark, lists, root, classes_per_split=5, per_class=2)
    prepare_benchmark(benchmark, lists, root, prepared_folder(benchmark), progress=False)
    small = {"backbone.depth": 18, "backbone.num_stages": 1}
    torch.manual_seed(0)
    backbone = MODELS.build(dict(type="FrameResNet", depth=18, num_stages=1))
    weights = tmp_path / "k400_backbone.pth"
    torch.save(backbone.state_dict(), weights)
    results = tmp_path / "results"
    argv = ["run", "--datasets", "k100", "--methods", "protonet", "--shots", "1", "--seeds", "0"]
    argv += ["--episodes", "4", "--train", "none", "--results-dir", str(results)]
    argv += ["--weights", str(weights), "--pretrained-on", "kinetics-400,imagenet-1k"]
    argv += ["--cfg-options", *(f"{k}={v}" for k, v in small.items())]
    assert main([*argv, "--allow-leakage"]) == 0
    (record,) = load_records(results)
    assert record.pretrained_on == ["kinetics-400", "imagenet-1k"]
    assert record.leakage == ["kinetics-400"]
    assert "‡" in render_leaderboard([record], "md")


def test_vm2_label_sets_are_compared_as_readable_names(tmp_path):
    """VM-2: the weights' label set against the test classes, whatever their spelling."""
    listed = tmp_path / "labels.txt"
    listed.write_text("# the backbone's classes\nBlasting_Sand\n\nplaying bass guitar\nBusking\n")
    labels = read_pretraining_labels(listed)
    assert labels == {"blasting sand", "playing bass guitar", "busking"}
    as_json = tmp_path / "labels.json"
    as_json.write_text('["BlastingSand", "Pushing [something] from left to right"]')
    assert read_pretraining_labels(as_json) == {
        "blasting sand",
        "pushing something from left to right",
    }
    test_classes = ["blasting sand", "cutting watermelon", "busking"]
    assert label_leakage(test_classes, labels) == ["blasting sand", "busking"]
    assert label_leakage(["cutting watermelon"], labels) == []


def test_vm2_the_guard_stops_weights_trained_on_a_test_class(tmp_path, capsys):
    """A run whose --pretrained-labels name one of the benchmark's test classes stops before
    anything is written; with --allow-leakage it runs and its record names the classes."""
    benchmark = get_benchmark("k100")
    lists = store_splits(benchmark, split_source("k100")).lists
    root = tmp_path / "kinetics"
    make_standin_tree(benchmark, lists, root, classes_per_split=5, per_class=2)
    prepare_benchmark(benchmark, lists, root, prepared_folder(benchmark), progress=False)
    test_class = lists["test"].entries[0].class_name  # one the stand-in has
    torch.manual_seed(0)
    backbone = MODELS.build(dict(type="FrameResNet", depth=18, num_stages=1))
    weights = tmp_path / "backbone.pth"
    torch.save(backbone.state_dict(), weights)
    labels = tmp_path / "labels.txt"
    labels.write_text(f"abseiling\n{test_class.upper()}\n")
    results = tmp_path / "results"
    argv = ["run", "--datasets", "k100", "--methods", "protonet", "--shots", "1", "--seeds", "0"]
    argv += ["--episodes", "4", "--train", "none", "--results-dir", str(results)]
    argv += ["--weights", str(weights), "--pretrained-labels", str(labels)]
    argv += ["--cfg-options", "backbone.depth=18", "backbone.num_stages=1"]
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert (
        f"1 of k100's test classes are among the classes the backbone was trained on ({test_class})"
        in err
    )
    assert "--allow-leakage" in err and not results.exists()
    assert main([*argv, "--allow-leakage"]) == 0
    (record,) = load_records(results)
    assert record.leakage == [f"label: {test_class}"]
    assert "‡" in render_leaderboard([record], "md")
    # labels that name no test class: the run is clean
    labels.write_text("abseiling\n")
    assert main([*argv, "--force", "--results-dir", str(tmp_path / "clean")]) == 0
    (clean,) = load_records(tmp_path / "clean")
    assert clean.leakage == []
