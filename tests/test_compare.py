"""Paired comparisons on shared episodes (fsarbench.compare, `fsarbench compare`)."""

from __future__ import annotations

import numpy as np
import pytest
from scipy import stats

from conftest import make_record, write_records
from fsarbench.cli import main
from fsarbench.compare import MethodSpec, compare_methods, paired_difference
from fsarbench.errors import FsarbenchError


def test_paired_difference_matches_scipy_and_hand_values():
    a = np.array([1.0, 0.8, 0.6, 1.0, 0.4, 0.8])
    b = np.array([0.8, 0.8, 0.4, 0.6, 0.4, 0.6])
    result = paired_difference(a, b)
    d = a - b  # [0.2, 0, 0.2, 0.4, 0, 0.2]: mean 1/6
    assert result.difference == pytest.approx(100 / 6)
    assert (result.mean_a, result.mean_b) == pytest.approx((100 * 4.6 / 6, 100 * 3.6 / 6))
    assert result.p_value == pytest.approx(stats.ttest_rel(a, b).pvalue)
    half = stats.t.ppf(0.975, 5) * d.std(ddof=1) / np.sqrt(6)
    assert result.ci95 == pytest.approx(100 * half)
    assert result.n_pairs == 6


def test_identical_and_constant_shift_have_defined_p_values():
    same = paired_difference([1.0, 0.2, 0.6], [1.0, 0.2, 0.6])
    assert (same.difference, same.ci95, same.p_value) == (0.0, 0.0, 1.0)
    shifted = paired_difference([1.0, 0.4, 0.6], [0.8, 0.2, 0.4])
    assert shifted.difference == pytest.approx(20.0) and shifted.p_value == 0.0


def test_methods_are_compared_per_shot_with_seeds_pooled():
    rng = np.random.default_rng(0)
    records = []
    for seed in (0, 1):
        for shot in (1, 5):
            base = rng.integers(0, 6, 500) / 5
            better = np.minimum(base + 0.2 * (rng.uniform(size=500) < 0.5), 1.0)
            records += [
                make_record("weak", base, seed=seed, k_shot=shot),
                make_record("strong", better, seed=seed, k_shot=shot),
            ]
    rows = compare_methods(records, MethodSpec.parse("strong"), MethodSpec.parse("weak"))
    assert [(r.k_shot, r.seeds, r.result.n_pairs) for r in rows] == [
        (1, (0, 1), 1000),
        (5, (0, 1), 1000),
    ]
    assert all(r.result.difference > 5 and r.result.p_value < 1e-6 for r in rows)


def test_trainings_can_be_named_on_both_sides():
    records = [
        make_record("protonet", [0.2, 0.4, 0.2], training="none"),
        make_record("protonet", [0.8, 0.6, 1.0], training="pretrain+frozen"),
    ]
    (row,) = compare_methods(
        records, MethodSpec.parse("protonet:none"), MethodSpec.parse("protonet:pretrain+frozen")
    )
    assert (row.training_a, row.training_b) == ("none", "pretrain+frozen")
    assert row.result.difference == pytest.approx(-160 / 3)


def test_different_episode_sets_are_refused():
    records = [
        make_record("a", [0.2, 0.4]),
        make_record("b", [0.8, 0.6], episode_set_hash="another sampler"),
    ]
    with pytest.raises(FsarbenchError, match="different episode sets"):
        compare_methods(records, MethodSpec("a"), MethodSpec("b"))


def test_unknown_method_and_nothing_shared_are_clear_errors():
    records = [make_record("a", [0.2, 0.4]), make_record("b", [0.8, 0.6], seed=1)]
    with pytest.raises(FsarbenchError, match="no result records for c") as error:
        compare_methods(records, MethodSpec("a"), MethodSpec("c"))
    assert "a:pretrain+frozen" in error.value.fix
    with pytest.raises(FsarbenchError, match="share no episode sets"):
        compare_methods(records, MethodSpec("a"), MethodSpec("b"))


def test_compare_command_prints_a_paired_table(tmp_path, capsys):
    write_records(
        [make_record("protonet", [0.2, 0.4, 0.6, 0.4]), make_record("otam", [0.4, 0.4, 0.8, 0.8])],
        tmp_path,
    )
    assert (
        main(["compare", "protonet", "otam", "--datasets", "synth", "--results-dir", str(tmp_path)])
        == 0
    )
    out = capsys.readouterr().out
    assert "-20.00 ±" in out and "paired t-test" in out and "| synth" in out
    assert main(["compare", "protonet", "trx", "--results-dir", str(tmp_path)]) == 2
    assert "no result records for trx" in capsys.readouterr().err
    assert (
        main(
            ["compare", "protonet", "otam", "--datasets", "ucf101", "--results-dir", str(tmp_path)]
        )
        == 2
    )
    assert "no result records on ucf101" in capsys.readouterr().err
    assert (
        main(["compare", "protonet", "otam", "--datasets", "nope", "--results-dir", str(tmp_path)])
        == 2
    )
